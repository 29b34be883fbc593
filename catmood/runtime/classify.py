"""Frames in, results out: detect (cat faces, or the whole frame) -> crop and preprocess -> infer -> decide.

`classify_frames(classifier, source, options)` yields one `FrameResult` per frame and writes nothing; the
runtime's outputs (overlay, video, events, summary) consume it in `pipeline.run_pipeline`, and the demo,
bench and tests can consume it directly. The model's spec gives preprocessing and labels. Frames of a video
or a camera carry state from one to the next (face tracks, smoothing, the hold); the images of a folder or
glob are unrelated photos, so each is classified on its own.
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
INDEPENDENT_KINDS = ("images",)  # sources whose frames are unrelated: no tracks, smoothing or hold across them


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

    def __init__(self, classifier: Classifier, options: RuntimeOptions, detector: FaceDetector | None = None,
                 independent: bool = False):
        self.classifier, self.options, self.spec = classifier, options, classifier.spec
        self.detector = detector or open_detector(options)
        self.independent = independent
        self.tracker = FaceTracker() if self.detector is not None else None
        self.smoother = MoodSmoother(self.spec.class_names, options.alpha, options.hold_s, options.threshold)
        self.whole_frame: dict = {}
        self.boxes: list[Box] = []
        self.buffers: dict[int, np.ndarray] = {}
        self.count = 0

    def detect(self, image: np.ndarray):
        """(boxes, tracks): the cat faces (detected every `detect_every` frames), or the whole frame."""
        if self.detector is None:
            return [None], [None]
        if self.independent:  # an unrelated photo: nothing carries over from the one before
            self.tracker = FaceTracker()
        if self.independent or self.count % self.options.detect_every == 0:
            self.boxes = self.detector.detect(image)[: self.options.max_faces]
        return list(self.boxes), self.tracker.update(self.boxes)

    def prepare(self, image: np.ndarray, boxes) -> np.ndarray | None:
        """The model's input batch: one padded crop per face, or the whole frame; None for no face."""
        crops = [image if box is None else _crop(image, padded_box(box, image.shape, self.options.pad))
                 for box in boxes]
        n = len(crops)
        if not n:
            return None
        if n not in self.buffers:  # one buffer per batch size, reused: no allocation in the steady state
            self.buffers[n] = np.empty(input_shape(self.spec, n), self.spec.input_dtype)
        return preprocess(crops, self.spec, out=self.buffers[n])

    def infer(self, batch: np.ndarray | None) -> np.ndarray:
        if batch is None:
            return np.zeros((0, self.spec.num_classes), np.float32)
        return self.classifier.predict(batch)

    def decide(self, frame: Frame, boxes, tracks, probs: np.ndarray) -> list[FaceResult]:
        if self.independent:
            self.whole_frame = {}
        faces = []
        for box, track, p in zip(boxes, tracks, probs):
            state = self.whole_frame if track is None else track.state
            faces.append(FaceResult(box, None if track is None else track.id, p,
                                    self.smoother.update(state, p, frame.timestamp)))
        return faces

    def __call__(self, frame: Frame) -> FrameResult:
        t0 = time.perf_counter()
        boxes, tracks = self.detect(frame.image)
        t1 = time.perf_counter()
        batch = self.prepare(frame.image, boxes)
        t2 = time.perf_counter()
        probs = self.infer(batch)
        t3 = time.perf_counter()
        faces = self.decide(frame, boxes, tracks, probs)
        t4 = time.perf_counter()
        self.count += 1
        latency = dict(capture=frame.capture_ms)
        if self.detector is not None:  # its own stage: a detector can cost more than the classifier
            latency["detect"] = (t1 - t0) * 1000
        latency.update(preprocess=(t2 - t1) * 1000, inference=(t3 - t2) * 1000, postprocess=(t4 - t3) * 1000)
        return FrameResult(frame, faces, frame_label(faces), latency)


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = box
    return image[y:y + h, x:x + w]


def open_detector(options: RuntimeOptions) -> FaceDetector | None:
    """The detector `options` ask for: the user's ONNX model (--detector), Haar cascades (--faces), or none."""
    if options.detector:
        from .onnx_detector import OnnxCatDetector

        return OnnxCatDetector(options.detector, options.detector_class)
    return HaarCatFaceDetector() if options.faces else None


def frame_label(faces: list[FaceResult]) -> str:
    if not faces:
        return NO_FACE
    if faces[0].box is None:
        return faces[0].decision.label
    return max(faces, key=lambda f: f.box[2] * f.box[3]).decision.label  # the largest face


def classify_frames(classifier: Classifier, source: FrameSource, options: RuntimeOptions | None = None,
                    detector: FaceDetector | None = None) -> Iterator[FrameResult]:
    """One result per frame of `source`, up to `options.max_frames`. `detector`: the face detector to use
    with `options.faces` (default: `open_detector(options)`). The images of an image source are each
    classified on their own (no smoothing, hold or tracks across them)."""
    step = FrameClassifier(classifier, options or RuntimeOptions(), detector,
                           independent=source.kind in INDEPENDENT_KINDS)
    for frame in source:
        yield step(frame)
        if step.options.max_frames and step.count >= step.options.max_frames:
            return
