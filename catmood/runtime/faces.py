"""Cat faces: a detector behind a small interface, and a tracker that keeps each face's identity.

The detector is OpenCV's cat-face Haar cascades from `cv2.data`. Settings chosen by measurement
(opencv-python-headless 4.14): on scikit-image's real `chelsea.png`, only the plain cascade fires, at
scaleFactor 1.05 / minNeighbors 3 (1.1 finds nothing; the extended cascade fires only at 1.02, with false
boxes); on drawn cartoon faces both fire on about 1 image in 13. Haar cascades are weak detectors: anything
with `detect(frame) -> boxes` can replace this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from ..errors import CatmoodError

Box = tuple[int, int, int, int]  # x, y, width, height in frame pixels

CASCADES = ("haarcascade_frontalcatface.xml", "haarcascade_frontalcatface_extended.xml")


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray) -> list[Box]: ...


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def merge_boxes(boxes: list[Box], threshold: float = 0.3) -> list[Box]:
    """Non-maximum suppression by area: of overlapping boxes keep the larger."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(iou(box, k) < threshold for k in kept):
            kept.append(box)
    return kept


class HaarCatFaceDetector:
    def __init__(self, cascades=CASCADES, scale_factor: float = 1.05, min_neighbors: int = 3,
                 min_size: float = 0.06, detect_width: int = 640):
        self.classifiers = []
        for name in cascades:
            classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)
            if classifier.empty():
                raise CatmoodError(f"OpenCV has no {name} (opencv-python-headless<5 ships the cat-face cascades)")
            self.classifiers.append(classifier)
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.detect_width = min_size, detect_width

    def detect(self, frame: np.ndarray) -> list[Box]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / w)  # big frames: detect on a smaller copy, far faster
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        side = max(16, int(self.min_size * min(gray.shape)))
        boxes: list[Box] = []
        for classifier in self.classifiers:
            found = classifier.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                                minSize=(side, side))
            boxes += [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
        return merge_boxes(boxes)


def padded_box(box: Box, frame_shape, pad: float = 0.25) -> Box:
    """The box grown by `pad` of its size on every side (ears, chin), clipped to the frame."""
    x, y, w, h = box
    fh, fw = frame_shape[:2]
    x0, y0 = max(0, int(x - pad * w)), max(0, int(y - pad * h))
    x1, y1 = min(fw, int(x + w + pad * w)), min(fh, int(y + h + pad * h))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


@dataclass
class Track:
    id: int
    box: Box
    missing: int = 0
    state: dict = field(default_factory=dict)  # the smoother's per-face memory


class FaceTracker:
    """Greedy IoU matching: a face keeps its id (and smoothed mood) while it overlaps its last box."""

    def __init__(self, min_iou: float = 0.3, max_missing: int = 10):
        self.min_iou, self.max_missing = min_iou, max_missing
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box]) -> list[Track]:
        """Tracks for this frame's boxes, in the order of `boxes`."""
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        assigned: dict[int, Track] = {}
        used = set()
        for score, ti, bi in pairs:
            if score < self.min_iou or ti in used or bi in assigned:
                continue
            used.add(ti)
            track = self.tracks[ti]
            track.box, track.missing = boxes[bi], 0
            assigned[bi] = track
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.missing += 1
        for bi, box in enumerate(boxes):
            if bi not in assigned:
                assigned[bi] = Track(self._next_id, box)
                self._next_id += 1
                self.tracks.append(assigned[bi])
        self.tracks = [t for t in self.tracks if t.missing <= self.max_missing]
        return [assigned[i] for i in range(len(boxes))]
