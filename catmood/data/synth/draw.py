"""Painting a synthetic cat face (see `face.py`) with OpenCV, anti-aliased and sub-pixel, in face
coordinates; the picture around it (a random background) and camera-ish degradation."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .face import Appearance, Expression, Pose, sample_appearance, sample_expression, sample_pose


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


OUTLINE = (25, 25, 30)
PINK = (150, 140, 235)  # inner ears and nose
EYE_X, EYE_Y = 0.38, -0.1  # eye centre; x is mirrored for the other side


def draw_face(image: np.ndarray, appearance: Appearance, pose: Pose, expr: Expression) -> None:
    """Draw one cat face onto `image` (BGR uint8, modified in place), back to front."""
    c = _Canvas(image, pose)
    for side in (-1, 1):
        _draw_ear(c, appearance, expr, side)
    _draw_head(c, appearance)
    for side in (-1, 1):
        if expr.eye_open < 0.16:
            _draw_closed_eye(c, expr, side)
        else:
            _draw_open_eye(c, appearance, expr, side)
    _draw_nose_and_mouth(c, expr)
    for side in (-1, 1):
        _draw_whiskers(c, appearance, expr, side)


def _draw_ear(c: _Canvas, appearance: Appearance, expr: Expression, side: int) -> None:
    """Base on the head's upper rim; the tip swings from sideways (flat) to upright with ear_lift."""
    base_a, base_b = np.array([side * 0.78, -0.42]), np.array([side * 0.22, -0.82])
    mid = (base_a + base_b) / 2
    direction = math.radians(-100 - 68 * (1 - expr.ear_lift))  # -100 deg: up and out; -168: sideways
    length = appearance.ear_size * (0.55 + 0.35 * expr.ear_lift)
    tip = mid + length * np.array([side * -math.cos(direction), math.sin(direction)])
    c.fill([base_a, tip, base_b], appearance.fur)
    c.line([base_a, tip, base_b], OUTLINE, 0.025)
    inner = [mid + 0.62 * (p - mid) + 0.1 * (tip - mid) for p in (base_a, tip, base_b)]
    c.fill(inner, PINK)


def _draw_head(c: _Canvas, appearance: Appearance) -> None:
    """The head, its fur pattern, then its outline over the pattern's edges."""
    head = _ellipse(0, 0, 1.0, 0.86)
    c.fill(head, appearance.fur)
    dark = appearance.fur_dark
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
    c.line(head, OUTLINE, 0.03, closed=True)


def _draw_closed_eye(c: _Canvas, expr: Expression, side: int) -> None:
    """Closed, contented eyes: an upward arc, flatter as the eye opens."""
    ex, ey = side * EYE_X, EYE_Y
    arc = _ellipse(ex, ey + 0.06, 0.17, 0.05 + 0.6 * (0.16 - expr.eye_open), start=200, stop=340, n=24)
    c.line(arc, OUTLINE, 0.045)


def _draw_open_eye(c: _Canvas, appearance: Appearance, expr: Expression, side: int) -> None:
    ex, ey = side * EYE_X, EYE_Y
    rx, ry = 0.19, 0.04 + 0.16 * expr.eye_open
    tilt = -side * 24 * expr.slant
    eye = _ellipse(ex, ey, rx, ry, tilt)
    c.fill(eye, appearance.iris)
    pupil_rx = 0.025 + 0.11 * expr.pupil
    c.fill(_ellipse(ex, ey, min(pupil_rx, rx * 0.8), ry * 0.92, tilt), (15, 15, 15))
    c.fill(_ellipse(ex + 0.05, ey - ry * 0.4, 0.03, 0.03), (250, 250, 250))
    c.line(eye, OUTLINE, 0.03, closed=True)
    if expr.eye_open < 0.55:  # heavy upper lid of a relaxed or narrowed eye
        c.line(_ellipse(ex, ey, rx * 1.05, ry * 1.05, tilt, start=190, stop=350, n=20), OUTLINE, 0.05)
    if expr.slant > 0.35:  # brows pulled down towards the nose
        inner = (side * 0.13, ey - ry - 0.02)
        outer = (side * 0.6, ey - ry - 0.12 - 0.12 * expr.slant)
        c.line([outer, inner], OUTLINE, 0.05 + 0.03 * expr.slant)


def _draw_nose_and_mouth(c: _Canvas, expr: Expression) -> None:
    c.fill([(-0.08, 0.2), (0.08, 0.2), (0, 0.29)], PINK)
    corner_y = 0.43 - 0.12 * expr.mouth_curve
    if expr.mouth_open > 0.18:
        _draw_open_mouth(c, expr)
    c.line([(0, 0.29), (0, 0.37)], OUTLINE, 0.025)
    for side in (-1, 1):
        mid_x = side * 0.11
        c.line([(0, 0.37), (mid_x, 0.43 + 0.03 * expr.mouth_curve), (side * 0.22, corner_y)], OUTLINE, 0.025)


def _draw_open_mouth(c: _Canvas, expr: Expression) -> None:
    """Dark mouth and tongue, with fangs once it is wide open."""
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
    c.line(mouth, OUTLINE, 0.025, closed=True)


def _draw_whiskers(c: _Canvas, appearance: Appearance, expr: Expression, side: int) -> None:
    """Fanned forward and up when alert, swept back and down when angry; light on dark fur."""
    colour = (235, 235, 235) if sum(appearance.fur) < 300 else (40, 40, 45)
    for k in (-1, 0, 1):
        angle = math.radians(8 * k - 14 * expr.whiskers + 6)
        start = np.array([side * 0.3, 0.32 + 0.045 * k])
        length = 0.75 + 0.1 * expr.whiskers
        end = start + length * np.array([side * math.cos(angle), math.sin(angle) * (1 + 0.4 * k)])
        c.line([start, end], colour, 0.012)


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
