"""How the runtime classifies and what it writes: one dataclass, validated here (light to import, so the
CLI takes its defaults from it)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import CatmoodError

# Field -> the `catmood run` flag that sets it, so a bad value is named as the user typed it.
FLAGS = {"alpha": "--smooth", "hold_s": "--hold", "threshold": "--threshold", "detect_every": "--detect-every",
         "max_frames": "--max-frames", "pad": "pad", "max_faces": "max_faces", "serve_fps": "--serve-fps",
         "top_k": "--top-k", "detector_class": "--detector-class", "give_up_s": "--give-up",
         "batch_timeout_ms": "--batch-timeout"}
LOOPBACK = "127.0.0.1"  # where --serve listens unless a host is given
TOKEN_ENV = "CATMOOD_SERVE_TOKEN"  # the live view's token when serve_token is None


@dataclass
class RuntimeOptions:
    faces: bool = False            # classify cat-face crops instead of the whole frame
    detector: str | None = None    # a user's ONNX object detector finds the cats (implies faces); None: Haar
    detector_class: int = 15       # the detector's class to take: COCO's cat (15 of 80; 17 in the 91-id list)
    alpha: float = 0.4             # EMA weight of the newest frame's probabilities (1: no smoothing)
    hold_s: float = 0.5            # a new label must lead this long before it is shown
    threshold: float = 0.5         # below this smoothed confidence the label is 'uncertain'
    pad: float = 0.25              # face crops grow by this share of the box on every side
    detect_every: int = 1          # run the face detector every N frames (tracks carry boxes between)
    max_faces: int = 8
    realtime: bool = False         # files: pace at native fps and drop late frames
    show: bool = False             # a window (q quits) when a display exists
    out: str | None = None         # annotated video (mp4v); images: a folder of annotated copies
    events: str | None = None      # JSON lines, one per frame (per image, with its file)
    csv: str | None = None         # CSV, one row per frame or image and face
    top_k: int = 3                 # classes per printed line of an image
    max_frames: int | None = None  # stop each source after this many frames (None: the whole source)
    give_up_s: float = 30.0        # a camera or stream with no frame for this long is given up
    batch_timeout_ms: float | None = None  # longest wait for other cameras' frames (None: from their fps)
    serve: str | None = None       # "[HOST:]PORT": live view in a browser (HOST: LOOPBACK; PORT 0: any free one)
    serve_token: str | None = None  # viewers must present it (None: the TOKEN_ENV variable, if set)
    serve_fps: float = 10.0        # the live view's JPEG and update rate, at most
    serve_hosts: tuple[str, ...] = ()  # more names the live view answers to (a reverse proxy's), besides addresses

    def __post_init__(self):
        checks = (("alpha", 0 < self.alpha <= 1, "in (0, 1]"), ("hold_s", self.hold_s >= 0, ">= 0"),
                  ("threshold", 0 <= self.threshold <= 1, "in [0, 1]"), ("pad", self.pad >= 0, ">= 0"),
                  ("detect_every", _whole(self.detect_every) and self.detect_every >= 1, "a whole number >= 1"),
                  ("max_faces", _whole(self.max_faces) and self.max_faces >= 1, "a whole number >= 1"),
                  ("top_k", _whole(self.top_k) and self.top_k >= 1, "a whole number >= 1"),
                  ("detector_class", _whole(self.detector_class) and self.detector_class >= 0, "a whole number >= 0"),
                  ("max_frames", self.max_frames is None or (_whole(self.max_frames) and self.max_frames >= 1),
                   "a whole number >= 1"),
                  ("serve_fps", 0 < self.serve_fps <= 240, "in (0, 240]"),
                  ("give_up_s", _number(self.give_up_s) and 0 < self.give_up_s <= 7 * 86400, "in (0, 604800] seconds"),
                  ("batch_timeout_ms", self.batch_timeout_ms is None or (_number(self.batch_timeout_ms)
                                                                         and 0 <= self.batch_timeout_ms <= 1000),
                   "in [0, 1000] ms"))
        if self.serve_token is not None and not self.serve_token.strip():
            raise CatmoodError("--serve-token is empty, which would serve the live view to anyone: give a token "
                               f"(or leave --serve-token out, and {TOKEN_ENV} unset, to serve without one)")
        if self.serve is not None:
            serve_address(self.serve)
        elif self.serve_token:
            raise CatmoodError("--serve-token protects the live view: give --serve [HOST:]PORT too")
        for name, ok, rule in checks:
            if not ok:
                raise CatmoodError(f"{FLAGS[name]} must be {rule}, got {getattr(self, name)!r}")
        if self.detector:
            self.faces = True

    @classmethod
    def default(cls, name: str):
        """A field's default (the CLI shows and uses it)."""
        return next(f.default for f in fields(cls) if f.name == name)


def serve_address(text: str) -> tuple[str, int]:
    """(host, port) of "[HOST:]PORT" ("8080", "0.0.0.0:8080", "[::1]:8080"); the host defaults to loopback."""
    host, _, port = str(text).strip().rpartition(":")
    host = host.strip("[]") or LOOPBACK
    if not (port.isdigit() and int(port) <= 65535):
        raise CatmoodError(f"--serve must be [HOST:]PORT with PORT a number 0-65535, got {text!r}")
    return host, int(port)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
