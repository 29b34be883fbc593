"""Frames in, results out: crop (cat faces or the whole frame) -> preprocess -> infer -> decide.

`classify_frames(classifier, source, options)` yields one `FrameResult` per frame and writes nothing; the
runtime's outputs (overlay, video, events, summary) consume it in `pipeline.run_pipeline`, and the demo,
bench and tests can consume it directly. The model's spec gives preprocessing and labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..backends import Classifier
from ..preprocess import input_shape, preprocess
from .decisions import Decision, MoodSmoother
from .faces import Box, FaceDetector, FaceTracker, HaarCatFaceDetector, padded_box
from .options import RuntimeOptions
from .sources import Frame, FrameSource

NO_FACE = "no face"


@dataclass
class FaceResult:
    box: Box | None            # None: the whole frame
    track_id: int | None
    probs: np.ndarray          # this frame's own probabilities, in class order
    decision: Decision         # the smoothed label, its confidence and the smoothed probabilities


@dataclass
class FrameResult:
    frame: Frame
    faces: list[FaceResult]
    label: str                 # the frame's label: the largest face's, the whole frame's, or NO_FACE
    latency_ms: dict[str, float]


class FrameClassifier:
    """The per-frame steps, with the state they carry between frames (face tracks, smoothing, buffers)."""

    def __init__(self, classifier: Classifier, options: RuntimeOptions, detector: FaceDetector | None = None):
        self.classifier, self.options, self.spec = classifier, options, classifier.spec
        self.detector = detector or (HaarCatFaceDetector() if options.faces else None)
        self.tracker = FaceTracker() if self.detector is not None else None
        self.smoother = MoodSmoother(self.spec.class_names, options.alpha, options.hold_s, options.threshold)
        self.whole_frame: dict = {}
        self.boxes: list[Box] = []
        self.buffers: dict[int, np.ndarray] = {}
        self.count = 0

    def crop(self, image: np.ndarray):
        """(boxes, tracks, crops): the cat faces (detected every `detect_every` frames), or the whole frame."""
        if self.detector is None:
            return [None], [None], [image]
        if self.count % self.options.detect_every == 0:
            self.boxes = self.detector.detect(image)[: self.options.max_faces]
        tracks = self.tracker.update(self.boxes)
        crops = []
        for box in self.boxes:
            x, y, w, h = padded_box(box, image.shape, self.options.pad)
            crops.append(image[y:y + h, x:x + w])
        return list(self.boxes), tracks, crops

    def infer(self, crops: list[np.ndarray]) -> np.ndarray:
        n = len(crops)
        if not n:
            return np.zeros((0, self.spec.num_classes), np.float32)
        if n not in self.buffers:  # one buffer per batch size, reused: no allocation in the steady state
            self.buffers[n] = np.empty(input_shape(self.spec, n), self.spec.input_dtype)
        return self.classifier.predict(preprocess(crops, self.spec, out=self.buffers[n]))

    def decide(self, frame: Frame, boxes, tracks, probs: np.ndarray) -> list[FaceResult]:
        faces = []
        for box, track, p in zip(boxes, tracks, probs):
            state = self.whole_frame if track is None else track.state
            faces.append(FaceResult(box, None if track is None else track.id, p,
                                    self.smoother.update(state, p, frame.timestamp)))
        return faces

    def __call__(self, frame: Frame) -> FrameResult:
        t0 = time.perf_counter()
        boxes, tracks, crops = self.crop(frame.image)
        t1 = time.perf_counter()
        probs = self.infer(crops)
        t2 = time.perf_counter()
        faces = self.decide(frame, boxes, tracks, probs)
        t3 = time.perf_counter()
        self.count += 1
        latency = dict(capture=frame.capture_ms, preprocess=(t1 - t0) * 1000, inference=(t2 - t1) * 1000,
                       postprocess=(t3 - t2) * 1000)
        return FrameResult(frame, faces, frame_label(faces), latency)


def frame_label(faces: list[FaceResult]) -> str:
    if not faces:
        return NO_FACE
    if faces[0].box is None:
        return faces[0].decision.label
    return max(faces, key=lambda f: f.box[2] * f.box[3]).decision.label  # the largest face


def classify_frames(classifier: Classifier, source: FrameSource, options: RuntimeOptions | None = None,
                    detector: FaceDetector | None = None) -> Iterator[FrameResult]:
    """One result per frame of `source`, up to `options.max_frames`. `detector`: the face detector to use
    with `options.faces` (default: Haar cat-face cascades)."""
    step = FrameClassifier(classifier, options or RuntimeOptions(), detector)
    for frame in source:
        yield step(frame)
        if step.options.max_frames and step.count >= step.options.max_frames:
            return
