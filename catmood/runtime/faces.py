"""Cat faces: a detector behind a small interface, and a tracker that keeps each face's identity.

The default detector is OpenCV's cat-face Haar cascades from `cv2.data`. Settings chosen by measurement
(opencv-python-headless 4.14): on scikit-image's real `chelsea.png`, only the plain cascade fires, at
scaleFactor 1.05 / minNeighbors 3 (1.1 finds nothing; the extended cascade fires only at 1.02, with false
boxes); on drawn cartoon faces both fire on about 1 image in 13. The cascades find a face only while it is
small in the frame (under about a quarter of its width): a face that fills the frame gets a false box
beside the nose. So the detector also searches small copies of the frame set in a grey border, where such a
face is small again, and maps those boxes back (`benchmarks/cat_faces.py` measures both). Anything with
`detect(frame) -> boxes` can replace it: `onnx_detector.OnnxCatDetector` runs a user's COCO detector.
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


def covered(inner: Box, outer: Box) -> float:
    """The share of `inner`'s area that lies inside `outer`."""
    w = max(0, min(inner[0] + inner[2], outer[0] + outer[2]) - max(inner[0], outer[0]))
    h = max(0, min(inner[1] + inner[3], outer[1] + outer[3]) - max(inner[1], outer[1]))
    return w * h / (inner[2] * inner[3]) if inner[2] * inner[3] else 0.0


def merge_boxes(boxes: list[Box], threshold: float = 0.3, inside: float = 1.01) -> list[Box]:
    """Non-maximum suppression by area: of overlapping boxes keep the larger; a box lying at least
    `inside` within a larger kept one is dropped too (a false box on a face's nose or eye)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(iou(box, k) < threshold and covered(box, k) < inside for k in kept):
            kept.append(box)
    return kept


def clip_box(box: Box, frame_shape) -> Box | None:
    """`box` cut to the frame; None when nothing of it is inside."""
    fh, fw = frame_shape[:2]
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(fw, box[0] + box[2]), min(fh, box[1] + box[3])
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


class HaarCatFaceDetector:
    """`copies`: (longer side in pixels, grey border as a share of that side) of each small copy searched
    besides the frame itself; () searches the frame alone. The three default copies found the face of
    chelsea.png at 34 of 36 sizes and places, the frame alone at 3 (benchmarks/RESULTS.md)."""

    def __init__(self, cascades=CASCADES, scale_factor: float = 1.05, min_neighbors: int = 3,
                 min_size: float = 0.06, detect_width: int = 640,
                 copies: tuple[tuple[int, float], ...] = ((96, 0.5), (144, 0.5), (240, 0.25))):
        self.classifiers = []
        for name in cascades:
            classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)
            if classifier.empty():
                raise CatmoodError(f"OpenCV has no {name} (opencv-python-headless<5 ships the cat-face cascades)")
            self.classifiers.append(classifier)
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.detect_width = min_size, detect_width
        self.copies = tuple(copies)
        self.inside = 0.6  # a small box mostly inside a face found on a shrunk copy is a false one

    def detect(self, frame: np.ndarray) -> list[Box]:
        h, w = frame.shape[:2]
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self.detect_width / w)  # big frames: detect on a smaller copy, far faster
        boxes = self._search(gray, scale, 0)
        for side, border in self.copies:
            shrink = side / max(h, w)
            if shrink < scale:  # a copy smaller than the frame searched above: a face filling it fits here
                boxes += self._search(gray, shrink, int(border * side))
        clipped = (clip_box(b, frame.shape) for b in boxes)
        return merge_boxes([b for b in clipped if b is not None], inside=self.inside)

    def _search(self, gray: np.ndarray, scale: float, border: int) -> list[Box]:
        """Boxes found on `gray` resized by `scale` inside a grey `border`, in frame pixels."""
        if scale < 1.0:
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        if border:
            gray = cv2.copyMakeBorder(gray, border, border, border, border, cv2.BORDER_CONSTANT, value=128)
        side = max(16, int(self.min_size * min(gray.shape)))
        boxes: list[Box] = []
        for classifier in self.classifiers:
            found = classifier.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                                minSize=(side, side))
            boxes += [(int(round((x - border) / scale)), int(round((y - border) / scale)), int(round(bw / scale)),
                       int(round(bh / scale))) for x, y, bw, bh in np.asarray(found).reshape(-1, 4)]
        return boxes


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
