"""Local MJPEG-over-HTTP cameras for the multi-camera benchmark, built on the tests' `MjpegCamera`.

`ClipCamera` serves a clip's frames as JPEGs encoded once up front (shared by every camera), so serving
16 cameras costs the benchmark process a socket write per frame, not a JPEG encode: the CPU left to the
runtime is the same in every configuration. `reader_frames` counts the frames a camera offered to the
runtime's reader (the probe connection `catmood run` opens first also gets a frame; it is not counted).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mjpeg import MjpegCamera  # noqa: E402  (tests/mjpeg.py: a real MJPEG server on 127.0.0.1)


def encode_clip(video: Path, quality: int = 90) -> list[bytes]:
    """Every frame of `video` as JPEG bytes, in order."""
    capture = cv2.VideoCapture(str(video))
    jpegs = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        jpegs.append(buf.tobytes())
    capture.release()
    if not jpegs:
        raise RuntimeError(f"{video}: no frame could be decoded")
    return jpegs


class ClipCamera(MjpegCamera):
    """A steady MJPEG camera serving pre-encoded `jpegs` (frame i of a connection: jpegs[i % len]) at fps;
    the stream ends after max_frames served in all (probe frames included)."""

    def __init__(self, jpegs: list[bytes], fps: float, max_frames: int):
        first = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR)
        super().__init__(frames=first, fps=fps, max_frames=max_frames)
        self.jpegs = jpegs

    def _jpeg(self, i: int) -> bytes:
        return self.jpegs[i % len(self.jpegs)]

    @property
    def finished(self) -> bool:
        """Every frame served and every connection closed."""
        return self.ended and self.open_connections == 0


def reader_frames(camera: MjpegCamera) -> int:
    """Frames served on the connections FFmpeg opened (its requests carry a User-Agent; catmood's probe sends
    only Host); every connection's most if no request says so."""
    with camera._cond:
        readers = {r["connection"] for r in camera.requests if "user-agent" in r["headers"]}
        counts = list(camera.served_per_connection)
    if not readers:
        return max(counts, default=0)
    return sum(counts[c] for c in readers)


def silent_camera() -> MjpegCamera:
    """A camera that accepts connections and never sends a byte."""
    return MjpegCamera(mode="silent").start()


def refusing_url() -> str:
    """The URL of a port where nothing listens (connections are refused at once): a cheap placeholder."""
    return MjpegCamera(mode="closed").start().url
