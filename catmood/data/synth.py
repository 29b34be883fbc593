"""Synthetic cat faces drawn with OpenCV, for tests and the offline demo.

Each mood changes the cues people read on real cats — ears, eyes, pupils, brows, mouth, whiskers — while
everything else (fur colour and pattern, eye colour, pose, scale, background, lighting, noise, occluders)
varies at random and is shared by all moods, so a model has to learn the cues and nothing else. Cue ranges
of neighbouring moods overlap a little: learnable, not trivial.

The pieces are separate so a video can keep one cat (`Appearance`) and move (`Pose`) while its expression
changes smoothly (`Expression.lerp`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError
from ..fileio import atomic_write_bytes, atomic_write_json

SYNTH_VERSION = 1
MARKER = "synth.json"


@dataclass(frozen=True)
class Expression:
    """The mood cues, each in [0, 1] unless said otherwise."""

    ear_lift: float        # 0 ears flattened sideways, 1 ears upright and tall
    eye_open: float        # 0 closed (drawn as happy arcs), 1 wide open
    pupil: float           # 0 slit, 1 dilated round
    slant: float           # 0 level eyes, 1 inner corners pulled down under angry brows
    mouth_open: float      # 0 closed, 1 wide open with fangs
    mouth_curve: float     # -1 corners down, +1 smile
    whiskers: float        # -1 pulled back, +1 pushed forward and fanned

    def lerp(self, other: "Expression", t: float) -> "Expression":
        return Expression(**{f.name: (1 - t) * getattr(self, f.name) + t * getattr(other, f.name)
                             for f in fields(self)})


# Ranges per mood (low, high) for each Expression field. Neighbours overlap slightly on some cues.
MOODS: dict[str, dict[str, tuple[float, float]]] = {
    "alarmed": dict(ear_lift=(0.8, 1.0), eye_open=(0.8, 1.0), pupil=(0.7, 1.0), slant=(0.0, 0.15),
                    mouth_open=(0.2, 0.45), mouth_curve=(-0.3, 0.1), whiskers=(0.4, 1.0)),
    "angry": dict(ear_lift=(0.0, 0.3), eye_open=(0.45, 0.75), pupil=(0.0, 0.3), slant=(0.55, 1.0),
                  mouth_open=(0.5, 0.95), mouth_curve=(-0.9, -0.3), whiskers=(-1.0, -0.4)),
    "calm": dict(ear_lift=(0.45, 0.75), eye_open=(0.22, 0.5), pupil=(0.25, 0.6), slant=(0.0, 0.2),
                 mouth_open=(0.0, 0.1), mouth_curve=(-0.15, 0.3), whiskers=(-0.3, 0.3)),
    "pleased": dict(ear_lift=(0.5, 0.85), eye_open=(0.0, 0.14), pupil=(0.3, 0.6), slant=(0.0, 0.1),
                    mouth_open=(0.0, 0.15), mouth_curve=(0.45, 1.0), whiskers=(0.0, 0.6)),
}
DEFAULT_MOODS = tuple(sorted(MOODS))


def sample_expression(rng: np.random.Generator, mood: str) -> Expression:
    try:
        ranges = MOODS[mood]
    except KeyError:
        raise DatasetError(f"unknown synthetic mood {mood!r}; choose from {', '.join(DEFAULT_MOODS)}") from None
    return Expression(**{name: float(rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()})


def typical_expression(mood: str) -> Expression:
    """The middle of a mood's ranges: a clear, prototypical face (for scripted videos)."""
    return Expression(**{name: (lo + hi) / 2 for name, (lo, hi) in MOODS[mood].items()})


FUR_COLOURS = [(40, 110, 215), (60, 140, 235), (90, 90, 95), (150, 150, 155), (35, 35, 40), (225, 225, 230),
               (70, 95, 140), (170, 200, 230), (120, 130, 160)]  # BGR: ginger, cream, grey, black, brown...
IRIS_COLOURS = [(60, 180, 120), (40, 200, 220), (200, 150, 60), (40, 140, 200), (90, 200, 170)]


@dataclass(frozen=True)
class Appearance:
    """Who the cat is: constant over a video."""

    fur: tuple[int, int, int]
    fur_dark: tuple[int, int, int]
    iris: tuple[int, int, int]
    pattern: str                      # solid, tabby, spots, bicolour
    spots: tuple[tuple[float, float, float], ...]
    ear_size: float


def sample_appearance(rng: np.random.Generator) -> Appearance:
    base = np.array(FUR_COLOURS[rng.integers(len(FUR_COLOURS))], dtype=float)
    fur = np.clip(base + rng.normal(0, 12, 3), 0, 255)
    dark = np.clip(fur * rng.uniform(0.35, 0.65), 0, 255)
    iris = np.clip(np.array(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], float) + rng.normal(0, 15, 3), 0, 255)
    pattern = str(rng.choice(["solid", "tabby", "spots", "bicolour"]))
    spots = tuple((float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.6, 0.2)), float(rng.uniform(0.07, 0.17)))
                  for _ in range(int(rng.integers(3, 7))))
    return Appearance(tuple(int(v) for v in fur), tuple(int(v) for v in dark), tuple(int(v) for v in iris),
                      pattern, spots, float(rng.uniform(0.9, 1.15)))


@dataclass(frozen=True)
class Pose:
    """Where the face is in the picture: centre and radius in pixels, roll in degrees, width stretch."""

    cx: float
    cy: float
    radius: float
    angle: float
    stretch: float

    def lerp(self, other: "Pose", t: float) -> "Pose":
        return Pose(**{f.name: (1 - t) * getattr(self, f.name) + t * getattr(other, f.name) for f in fields(self)})


def sample_pose(rng: np.random.Generator, width: int, height: int) -> Pose:
    side = min(width, height)
    radius = float(rng.uniform(0.24, 0.36)) * side
    margin = radius * 0.9
    return Pose(cx=float(rng.uniform(margin, width - margin)), cy=float(rng.uniform(margin * 1.2, height - margin)),
                radius=radius, angle=float(rng.uniform(-22, 22)), stretch=float(rng.uniform(0.88, 1.1)))


class _Canvas:
    """Draws in face coordinates (face radius 1, y down) onto a BGR image, anti-aliased, sub-pixel."""

    SHIFT = 4

    def __init__(self, image: np.ndarray, pose: Pose):
        self.image = image
        a = math.radians(pose.angle)
        r = pose.radius
        self.m = np.array([[r * pose.stretch * math.cos(a), -r * math.sin(a)],
                           [r * pose.stretch * math.sin(a), r * math.cos(a)]])
        self.t = np.array([pose.cx, pose.cy])
        self.px = r  # one face unit in pixels, for line widths

    def _pts(self, pts) -> np.ndarray:
        xy = np.asarray(pts, float) @ self.m.T + self.t
        return np.round(xy * (1 << self.SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def fill(self, pts, colour) -> None:
        cv2.fillPoly(self.image, [self._pts(pts)], colour, cv2.LINE_AA, self.SHIFT)

    def line(self, pts, colour, width: float, closed: bool = False) -> None:
        thickness = max(1, int(round(width * self.px)))
        cv2.polylines(self.image, [self._pts(pts)], closed, colour, thickness, cv2.LINE_AA, self.SHIFT)


def _ellipse(cx, cy, rx, ry, tilt_deg=0.0, start=0.0, stop=360.0, n=48) -> np.ndarray:
    t = np.radians(np.linspace(start, stop, n))
    x, y = rx * np.cos(t), ry * np.sin(t)
    a = math.radians(tilt_deg)
    return np.stack([cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a)], axis=1)


def draw_face(image: np.ndarray, appearance: Appearance, pose: Pose, expr: Expression) -> None:
    """Draw one cat face onto `image` (BGR uint8, modified in place)."""
    c = _Canvas(image, pose)
    fur, dark, outline = appearance.fur, appearance.fur_dark, (25, 25, 30)
    pink = (150, 140, 235)

    # Ears: base on the head's upper rim; the tip swings from sideways (flat) to upright with ear_lift.
    for side in (-1, 1):
        base_a, base_b = np.array([side * 0.78, -0.42]), np.array([side * 0.22, -0.82])
        mid = (base_a + base_b) / 2
        direction = math.radians(-100 - 68 * (1 - expr.ear_lift))  # -100 deg: up and out; -168: sideways
        length = appearance.ear_size * (0.55 + 0.35 * expr.ear_lift)
        tip = mid + length * np.array([side * -math.cos(direction), math.sin(direction)])
        c.fill([base_a, tip, base_b], fur)
        c.line([base_a, tip, base_b], outline, 0.025)
        inner = [mid + 0.62 * (p - mid) + 0.1 * (tip - mid) for p in (base_a, tip, base_b)]
        c.fill(inner, pink)

    head = _ellipse(0, 0, 1.0, 0.86)
    c.fill(head, fur)
    if appearance.pattern == "tabby":
        for x in (-0.18, 0.0, 0.18):
            c.line([(x, -0.8), (x * 0.7, -0.5)], dark, 0.06)
        for side in (-1, 1):
            for y in (0.05, 0.22):
                c.line([(side * 0.97, y), (side * 0.72, y - 0.04)], dark, 0.05)
    elif appearance.pattern == "spots":
        for x, y, r in appearance.spots:
            c.fill(_ellipse(x, y, r, r * 0.8), dark)
    elif appearance.pattern == "bicolour":
        c.fill(_ellipse(0, 0.38, 0.5, 0.42), (235, 235, 240))
    c.line(head, outline, 0.03, closed=True)

    # Eyes.
    for side in (-1, 1):
        ex, ey = side * 0.38, -0.1
        if expr.eye_open < 0.16:
            # Closed, contented eyes: an upward arc, flatter as the eye opens.
            arc = _ellipse(ex, ey + 0.06, 0.17, 0.05 + 0.6 * (0.16 - expr.eye_open), start=200, stop=340, n=24)
            c.line(arc, outline, 0.045)
            continue
        rx, ry = 0.19, 0.04 + 0.16 * expr.eye_open
        tilt = -side * 24 * expr.slant
        eye = _ellipse(ex, ey, rx, ry, tilt)
        c.fill(eye, appearance.iris)
        pupil_rx = 0.025 + 0.11 * expr.pupil
        c.fill(_ellipse(ex, ey, min(pupil_rx, rx * 0.8), ry * 0.92, tilt), (15, 15, 15))
        c.fill(_ellipse(ex + 0.05, ey - ry * 0.4, 0.03, 0.03), (250, 250, 250))
        c.line(eye, outline, 0.03, closed=True)
        if expr.eye_open < 0.55:  # heavy upper lid of a relaxed or narrowed eye
            c.line(_ellipse(ex, ey, rx * 1.05, ry * 1.05, tilt, start=190, stop=350, n=20), outline, 0.05)
        if expr.slant > 0.35:  # brows pulled down towards the nose
            inner = (side * 0.13, ey - ry - 0.02)
            outer = (side * 0.6, ey - ry - 0.12 - 0.12 * expr.slant)
            c.line([outer, inner], outline, 0.05 + 0.03 * expr.slant)

    # Nose and mouth.
    c.fill([(-0.08, 0.2), (0.08, 0.2), (0, 0.29)], pink)
    corner_y = 0.43 - 0.12 * expr.mouth_curve
    if expr.mouth_open > 0.18:
        h = 0.05 + 0.22 * expr.mouth_open
        w = 0.1 + 0.12 * expr.mouth_open
        mouth = _ellipse(0, 0.4 + h * 0.55, w, h)
        c.fill(mouth, (40, 30, 120))
        c.fill(_ellipse(0, 0.4 + h * 0.95, w * 0.6, h * 0.35), (130, 120, 230))
        if expr.mouth_open > 0.5:
            for side in (-1, 1):
                fx = side * w * 0.55
                c.fill([(fx - 0.03, 0.38 + h * 0.1), (fx + 0.03, 0.38 + h * 0.1), (fx, 0.4 + h * 0.55)],
                       (245, 245, 245))
        c.line(mouth, outline, 0.025, closed=True)
    c.line([(0, 0.29), (0, 0.37)], outline, 0.025)
    for side in (-1, 1):
        mid_x = side * 0.11
        c.line([(0, 0.37), (mid_x, 0.43 + 0.03 * expr.mouth_curve), (side * 0.22, corner_y)], outline, 0.025)

    # Whiskers: fanned forward and up when alert, swept back and down when angry.
    for side in (-1, 1):
        for k in (-1, 0, 1):
            angle = math.radians(8 * k - 14 * expr.whiskers + 6)
            start = np.array([side * 0.3, 0.32 + 0.045 * k])
            length = 0.75 + 0.1 * expr.whiskers
            end = start + length * np.array([side * math.cos(angle), math.sin(angle) * (1 + 0.4 * k)])
            c.line([start, end], (235, 235, 235) if sum(fur) < 300 else (40, 40, 45), 0.012)


def render_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height if rng.random() < 0.5 else width, dtype=np.float32)
    ramp = ramp[:, None, None] if len(ramp) == height else ramp[None, :, None]
    image = np.broadcast_to(a * (1 - ramp) + b * ramp, (height, width, 3)).astype(np.uint8).copy()
    kind = rng.random()
    if kind < 0.4:  # clutter
        for _ in range(int(rng.integers(3, 12))):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            p = rng.integers(0, [width, height], size=(2, 2))
            shape = rng.random()
            if shape < 0.4:
                cv2.rectangle(image, tuple(map(int, p[0])), tuple(map(int, p[1])), colour, -1)
            elif shape < 0.7:
                cv2.circle(image, tuple(map(int, p[0])), int(rng.integers(3, max(4, width // 5))), colour, -1)
            else:
                cv2.line(image, tuple(map(int, p[0])), tuple(map(int, p[1])), colour, int(rng.integers(1, 6)))
    elif kind < 0.7:  # blotchy texture
        small = rng.integers(0, 256, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.uint8)
        texture = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        image = cv2.addWeighted(image, 0.5, texture, 0.5, 0)
    return image


def finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera-ish degradation: occluder, blur, lighting, sensor noise."""
    h, w = image.shape[:2]
    if rng.random() < 0.12:
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(image, centre, (int(w * rng.uniform(0.05, 0.15)), int(h * rng.uniform(0.05, 0.15))),
                    float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    sigma = rng.uniform(0, 1.3)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    gain, bias = rng.uniform(0.7, 1.25), rng.uniform(-30, 30)
    noise = rng.normal(0, rng.uniform(0, 9), image.shape)
    return np.clip(image.astype(np.float32) * gain + bias + noise, 0, 255).astype(np.uint8)


def render_cat(rng: np.random.Generator, mood: str, size: int = 224) -> np.ndarray:
    """One random BGR image of a cat face showing `mood`."""
    image = render_background(rng, size, size)
    draw_face(image, sample_appearance(rng), sample_pose(rng, size, size), sample_expression(rng, mood))
    return finish(rng, image)


def _image_rng(seed: int, mood: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(mood.encode()), index])


def synthesize_dataset(out: str | Path, *, per_class: int = 100, size: int = 224, seed: int = 0,
                       moods: tuple[str, ...] = DEFAULT_MOODS, fractions=(0.7, 0.15, 0.15),
                       force: bool = False, progress: bool = False) -> dict:
    """Write a synthetic dataset in the Roboflow folder layout (OUT/{train,valid,test}/<mood>/*.jpg).

    `per_class` images per mood in all, split by `fractions`. Deterministic for a seed. A folder already
    holding the same synthetic dataset is left as it is; anything else already in `out` is never deleted
    (another synthetic dataset is replaced only with `force`). Returns the parameters written to synth.json.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if per_class < 3:
        raise DatasetError(f"--per-class must be at least 3 (one image per split), got {per_class}")
    if size < 32:
        raise DatasetError(f"--size must be at least 32 pixels, got {size}")
    for mood in moods:
        if mood not in MOODS:
            raise DatasetError(f"unknown synthetic mood {mood!r}; choose from {', '.join(DEFAULT_MOODS)}")
    if len(set(moods)) < 2:
        raise DatasetError("a synthetic dataset needs at least 2 different moods")
    params = dict(generator="catmood.synth", version=SYNTH_VERSION, per_class=per_class, size=size, seed=seed,
                  moods=sorted(moods), fractions=list(fractions))
    marker = out / MARKER
    if out.exists() and any(out.iterdir()):
        try:
            existing = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise DatasetError(f"{out}: folder is not empty and holds no catmood synthetic dataset; "
                               "choose a new folder") from None
        if existing == params:
            return params
        if not force:
            raise DatasetError(f"{out}: holds a synthetic dataset made with other settings; "
                               "pass --force to replace it, or choose a new folder")
        for split in ("train", "valid", "test"):
            shutil.rmtree(out / split, ignore_errors=True)
        marker.unlink()

    n_valid = int(round(per_class * fractions[1]))
    n_test = int(round(per_class * fractions[2]))
    n_valid, n_test = max(1, n_valid), max(1, n_test)
    jobs = []
    for mood in sorted(moods):
        for i in range(per_class):
            split = "valid" if i < n_valid else "test" if i < n_valid + n_test else "train"
            jobs.append((mood, i, out / split / mood / f"{mood}_{i:05d}.jpg"))

    def write(job) -> None:
        mood, i, path = job
        rng = _image_rng(seed, mood, i)
        image = render_cat(rng, mood, size)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
        if not ok:
            raise DatasetError(f"{path}: JPEG encoding failed")
        atomic_write_bytes(path, data.tobytes())

    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in tqdm(pool.map(write, jobs), total=len(jobs), unit="img", desc="drawing cats",
                      disable=not progress or None):
            pass
    atomic_write_json(marker, params)  # written last: its presence means the dataset is complete
    return params



DEFAULT_SCRIPT = (("calm", 3.0), ("pleased", 3.0), ("alarmed", 3.0), ("angry", 3.0), ("calm", 2.0))


def render_mood_video(path: str | Path, script=DEFAULT_SCRIPT, *, fps: float = 15.0, size=(640, 480),
                      seed: int = 0, transition_s: float = 0.4) -> list[str]:
    """A video of one cat whose mood follows `script` ((mood, seconds), ...): the expression blends into
    the next mood over `transition_s`, the head drifts gently, the camera adds a little noise. The face sits
    where a whole-frame model looks (the centre crop) at the scale of the training images.

    Writes `path` (mp4v) and `path`.script.json; returns the scripted mood of every frame.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    appearance = sample_appearance(rng)
    background = render_background(rng, width, height)
    side = min(width, height)
    base = Pose(cx=width / 2, cy=height / 2 + 0.04 * side, radius=0.3 * side, angle=0.0, stretch=1.0)
    total = sum(seconds for _, seconds in script)
    n_frames = int(round(total * fps))
    starts = np.cumsum([0.0] + [seconds for _, seconds in script])
    labels = []
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DatasetError(f"{path}: cannot write an mp4v video there")
    for i in range(n_frames):
        t = i / fps
        k = min(int(np.searchsorted(starts, t, side="right")) - 1, len(script) - 1)
        mood = script[k][0]
        expression = typical_expression(mood)
        into = t - starts[k]
        if k > 0 and into < transition_s:  # blend from the previous mood
            expression = typical_expression(script[k - 1][0]).lerp(expression, into / transition_s)
        pose = Pose(cx=base.cx + 0.04 * side * math.sin(0.7 * t), cy=base.cy + 0.02 * side * math.sin(1.1 * t),
                    radius=base.radius * (1 + 0.04 * math.sin(0.5 * t)), angle=6 * math.sin(0.9 * t), stretch=1.0)
        image = background.copy()
        draw_face(image, appearance, pose, expression)
        noise = rng.normal(0, 3, image.shape)
        writer.write(np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8))
        labels.append(mood)
    writer.release()
    os.replace(tmp, path)
    atomic_write_json(Path(str(path) + ".script.json"), {"fps": fps, "script": [list(s) for s in script],
                                                          "frame_moods": labels})
    return labels


def script_agreement(labels: list[str], scripted: list[str], fps: float, settle_s: float = 1.0) -> dict:
    """How well runtime labels follow the script: over all frames, and over steady frames (at least
    `settle_s` after each mood change, which leaves the smoothing and hold time room to follow)."""
    n = min(len(labels), len(scripted))
    changes = [i for i in range(1, n) if scripted[i] != scripted[i - 1]]
    settle = int(round(settle_s * fps))
    steady = [i for i in range(n) if not any(c <= i < c + settle for c in changes)]
    agree = [labels[i] == scripted[i] for i in range(n)]
    return dict(frames=n, all=float(np.mean(agree)) if n else 0.0,
                steady=float(np.mean([agree[i] for i in steady])) if steady else 0.0, steady_frames=len(steady))
