"""Frames in, results out: detect (cat faces, or the whole frame) -> crop and preprocess -> infer -> decide,
for the frames of many sources at once (one model call per batch; one source is the N = 1 case).

`classify_streams(classifier, sources, options)` yields one `FrameResult` per frame, tagged with its source,
and writes nothing; the runtime's outputs (overlay, videos, events, summary) consume it in
`pipeline.run_pipeline`, and the demo, bench and tests can consume it directly (`classify_frames` for one
source). The model's spec gives preprocessing and labels. Frames of a video or a camera carry state from one
to the next, per source (face tracks, smoothing, the hold); the images of a folder or glob are unrelated
photos, so each is classified on its own.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..backends import Classifier
from ..preprocess import input_shape, preprocess
from .decisions import Decision, MoodSmoother
from .faces import Box, FaceDetector, FaceTracker, HaarCatFaceDetector, padded_box
from .options import RuntimeOptions
from .scheduler import Scheduler
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
    source: str = "cam0"       # the name of the source it came from
    batch: int = 1             # frames in the model call it was part of


class SourceState:
    """What one source carries from frame to frame: its face tracks (each with its smoothing memory), the whole
    frame's smoothing memory, the detector's cadence. A face in one camera never inherits another's mood."""

    def __init__(self, independent: bool):
        self.independent = independent
        self.tracker = FaceTracker()
        self.whole_frame: dict = {}
        self.boxes: list[Box] = []
        self.count = 0


@dataclass
class Prepared:
    """A batch on its way to the model: frames of several sources, their boxes and tracks, one input array."""
    items: list[tuple[str, Frame]]
    boxes: list[list]
    tracks: list[list]
    batch: np.ndarray | None
    latency_ms: dict[str, float]


class FrameClassifier:
    """The steps of a batch of frames from any sources: detect and preprocess (`prepare`), `infer`, `decide`.
    Per-source state lives in `states`; the model's input buffers are reused (a ring, so the batch being
    prepared never overwrites the one queued or the one the model is reading)."""

    RING = 3  # input buffers: one being prepared, one queued, one in the model

    def __init__(self, classifier: Classifier, options: RuntimeOptions, detector: FaceDetector | None = None):
        self.classifier, self.options, self.spec = classifier, options, classifier.spec
        self.detector = detector or open_detector(options)
        self.smoother = MoodSmoother(self.spec.class_names, options.alpha, options.hold_s, options.threshold)
        self.states: dict[str, SourceState] = {}
        self.ring: list[np.ndarray | None] = [None] * self.RING
        self.uses = 0

    def state(self, name: str, frame_kind: str) -> SourceState:
        if name not in self.states:
            self.states[name] = SourceState(frame_kind in INDEPENDENT_KINDS)
        return self.states[name]

    def detect(self, state: SourceState, image: np.ndarray):
        """(boxes, tracks): the cat faces (detected every `detect_every` frames), or the whole frame."""
        if self.detector is None:
            return [None], [None]
        if state.independent:  # an unrelated photo: nothing carries over from the one before
            state.tracker = FaceTracker()
        if state.independent or state.count % self.options.detect_every == 0:
            state.boxes = self.detector.detect(image)[: self.options.max_faces]
        state.count += 1
        return list(state.boxes), state.tracker.update(state.boxes)

    def prepare(self, items: list[tuple[str, Frame, str]]) -> Prepared:
        """`items`: (source name, frame, source kind). One crop per face (or whole frame) of every frame."""
        t0 = time.perf_counter()
        boxes, tracks, crops = [], [], []
        for name, frame, kind in items:
            found, tracked = self.detect(self.state(name, kind), frame.image)
            boxes.append(found)
            tracks.append(tracked)
            crops += [frame.image if box is None else _crop(frame.image, padded_box(box, frame.image.shape,
                                                                                   self.options.pad))
                      for box in found]
        t1 = time.perf_counter()
        batch = preprocess(crops, self.spec, out=self._buffer(len(crops))) if crops else None
        latency = dict(preprocess=(time.perf_counter() - t1) * 1000)
        if self.detector is not None:  # its own stage: a detector can cost more than the classifier
            latency = dict(detect=(t1 - t0) * 1000, **latency)
        return Prepared([(name, frame) for name, frame, _ in items], boxes, tracks, batch, latency)

    def _buffer(self, n: int) -> np.ndarray:
        """A view of `n` rows of the next buffer of the ring (each grown to the largest batch it has held), so
        the memory is 3 of the largest batch whatever sizes come (faces vary them)."""
        slot = self.uses % self.RING
        self.uses += 1
        if self.ring[slot] is None or len(self.ring[slot]) < n:
            self.ring[slot] = np.empty(input_shape(self.spec, n), self.spec.input_dtype)
        return self.ring[slot][:n]

    def infer(self, prepared: Prepared) -> np.ndarray:
        """Probabilities of every crop, in model calls of at most the backend's largest batch."""
        batch = prepared.batch
        if batch is None:
            return np.zeros((0, self.spec.num_classes), np.float32)
        step = getattr(self.classifier, "max_batch", None) or len(batch)
        return np.concatenate([self.classifier.predict(batch[i:i + step]) for i in range(0, len(batch), step)])

    def decide(self, prepared: Prepared, probs: np.ndarray, inference_ms: float) -> list[FrameResult]:
        results, row = [], 0
        for (name, frame), boxes, tracks in zip(prepared.items, prepared.boxes, prepared.tracks):
            t0 = time.perf_counter()
            state = self.states[name]
            if state.independent:
                state.whole_frame = {}
            faces = []
            for box, track, p in zip(boxes, tracks, probs[row:row + len(boxes)]):
                memory = state.whole_frame if track is None else track.state
                faces.append(FaceResult(box, None if track is None else track.id, p,
                                        self.smoother.update(memory, p, frame.timestamp)))
            row += len(boxes)
            latency = dict(capture=frame.capture_ms, **prepared.latency_ms, inference=inference_ms,
                           postprocess=(time.perf_counter() - t0) * 1000)
            results.append(FrameResult(frame, faces, frame_label(faces), latency, name, len(prepared.items)))
        return results


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
                    detector: FaceDetector | None = None, name: str = "cam0") -> Iterator[FrameResult]:
    """One result per frame of `source`, up to `options.max_frames`: `classify_streams` with one source."""
    return classify_streams(classifier, {name: source}, options, detector)


def classify_streams(classifier: Classifier, sources, options: RuntimeOptions | None = None,
                     detector: FaceDetector | None = None, echo=print) -> Iterator[FrameResult]:
    """Results of every frame the model got to, of many sources, each tagged with its source's name.
    `sources`: {name: FrameSource}, or a `Scheduler` the caller keeps adding to and removing from (it is
    closed here either way). Frames of one source come in order; the next batch is collected and
    preprocessed on another thread while the model runs this one. `detector`: the face detector to use with
    `options.faces` (default: `open_detector(options)`). Images of an image source are each classified on
    their own (no smoothing, hold or tracks across them)."""
    options = options or RuntimeOptions()
    step = FrameClassifier(classifier, options, detector)
    scheduler = sources if isinstance(sources, Scheduler) else Scheduler.of(sources, options, echo)
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def collect() -> None:
        try:
            while not stop.is_set() and (batch := scheduler.next_batch()) is not None:
                _put(ahead, step.prepare([(f.name, frame, f.source.kind) for f, frame in batch]), stop)
            _put(ahead, None, stop)
        except BaseException as exc:  # raised in the consumer, where the run can report it
            _put(ahead, exc, stop)

    thread = threading.Thread(target=collect, name="collect batches", daemon=True)
    thread.start()
    try:
        while (prepared := _get(ahead)) is not None:
            if isinstance(prepared, BaseException):
                raise prepared
            t0 = time.perf_counter()
            probs = step.infer(prepared)
            yield from step.decide(prepared, probs, (time.perf_counter() - t0) * 1000)
    finally:
        stop.set()
        scheduler.close()
        thread.join(timeout=5)


def _get(source: queue.Queue):
    """The next item, waking every half second: a Ctrl-C that the kernel handed to another thread is raised
    here only once this (the main) thread runs again, and with every camera down nothing else would wake it."""
    while True:
        try:
            return source.get(timeout=0.5)
        except queue.Empty:
            continue


def _put(target: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            return target.put(item, timeout=0.1)
        except queue.Full:
            continue
