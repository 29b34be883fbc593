"""A synthetic cat face as data: what it shows (`Expression`, sampled per mood), who the cat is
(`Appearance`) and where it sits in the picture (`Pose`). `draw.py` turns these into pixels.

Each mood changes the cues people read on real cats — ears, eyes, pupils, brows, mouth, whiskers — while
everything else (fur colour and pattern, eye colour, pose, scale, background, lighting, noise, occluders)
varies at random and is shared by all moods, so a model has to learn the cues and nothing else. Cue ranges
of neighbouring moods overlap a little: learnable, not trivial.

The pieces are separate so a video can keep one cat (`Appearance`) and move (`Pose`) while its expression
changes smoothly (`Expression.lerp`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ...errors import DatasetError


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


def mood_ranges(mood: str) -> dict[str, tuple[float, float]]:
    """The cue ranges of `mood`; an unknown mood is a DatasetError naming the choices."""
    try:
        return MOODS[mood]
    except KeyError:
        raise DatasetError(f"unknown synthetic mood {mood!r}; choose from {', '.join(DEFAULT_MOODS)}") from None


def sample_expression(rng: np.random.Generator, mood: str) -> Expression:
    return Expression(**{name: float(rng.uniform(lo, hi)) for name, (lo, hi) in mood_ranges(mood).items()})


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
