"""The real-time loop: read -> (cat-face crops) -> preprocess -> infer -> smooth -> overlay/emit.

One call: `run_pipeline(model, source, RuntimeOptions(...))`. The model's spec gives preprocessing and
labels; nothing is configured twice. Ctrl-C and the end of the source flush every output.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..backends import Classifier, select_classifier
from ..data.report import format_table
from ..errors import CatmoodError
from ..preprocess import input_shape, preprocess
from .decisions import MoodSmoother
from .faces import FaceTracker, HaarCatFaceDetector, padded_box
from .overlay import draw
from .sources import FrameSource, open_source

STAGES = ("capture", "preprocess", "inference", "postprocess")


@dataclass
class RuntimeOptions:
    faces: bool = False            # classify cat-face crops instead of the whole frame
    alpha: float = 0.4             # EMA weight of the newest frame's probabilities
    hold_s: float = 0.5            # a new label must lead this long before it is shown
    threshold: float = 0.5         # below this smoothed confidence the label is 'uncertain'
    pad: float = 0.25              # face crops grow by this share of the box on every side
    detect_every: int = 1          # run the face detector every N frames (tracks carry boxes between)
    max_faces: int = 8
    realtime: bool = False         # files: pace at native fps and drop late frames
    show: bool = False             # a window (q quits) when a display exists
    out: str | None = None         # annotated video (mp4v)
    events: str | None = None      # JSON lines, one per frame
    max_frames: int | None = None


@dataclass
class RunSummary:
    source: str
    backend: str
    frames: int = 0
    seconds: float = 0.0
    dropped: int = 0
    end_reason: str = ""
    interrupted: bool = False
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    out: str | None = None
    events: str | None = None
    source_fps: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        head = (f"{self.frames} frames in {self.seconds:.1f} s = {self.fps:.1f} fps | dropped {self.dropped} | "
                f"{self.backend} | {self.end_reason}")
        rows = [[s, f"{v['p50']:.2f}", f"{v['p99']:.2f}", f"{v['mean']:.2f}"] for s, v in self.stages.items()]
        return head + "\n" + format_table(["stage", "p50 ms", "p99 ms", "mean ms"], rows)

    def to_dict(self) -> dict:
        return dict(source=self.source, backend=self.backend, frames=self.frames, seconds=self.seconds, fps=self.fps,
                    dropped=self.dropped, end_reason=self.end_reason, interrupted=self.interrupted,
                    stages_ms=self.stages, labels=self.labels, out=self.out, events=self.events)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return dict(p50=0.0, p99=0.0, mean=0.0)
    array = np.asarray(values)
    return dict(p50=float(np.percentile(array, 50)), p99=float(np.percentile(array, 99)), mean=float(array.mean()))


class _VideoOut:
    """mp4v writer at the source's fps and first frame's size. Encoding runs on its own thread so it
    overlaps inference; the file is finished by rename so a half video is never taken for a whole one."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix or '.mp4'}")
        self.size = size
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise CatmoodError(f"{path}: cannot write an mp4v video there")
        self.pending: queue.Queue = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._encode, name="encode video", daemon=True)
        self.thread.start()

    def _encode(self) -> None:
        while (image := self.pending.get()) is not None:
            if (image.shape[1], image.shape[0]) != self.size:  # streams may change frame size mid-way
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
            self.writer.write(image)

    def write(self, image: np.ndarray) -> None:
        self.pending.put(image)  # the frame is not touched again by the loop; no copy needed

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join()
        self.writer.release()
        os.replace(self.tmp, self.path)


def run_pipeline(model, source, options: RuntimeOptions | None = None, *, backend: str = "auto",
                 device: str = "auto", echo=print) -> RunSummary:
    """Classify every frame of `source` with `model` (a path or a Classifier); return the summary."""
    options = options or RuntimeOptions()
    classifier: Classifier = model if isinstance(model, Classifier) else select_classifier(model, backend, device)
    spec = classifier.spec
    frames_in: FrameSource = source if isinstance(source, FrameSource) else open_source(source, realtime=options.realtime)
    summary = RunSummary(source=frames_in.name, backend=classifier.describe(), source_fps=frames_in.fps)
    echo(f"running {spec.architecture} ({', '.join(spec.class_names)}) with {classifier.describe()} on "
         f"{frames_in.kind} {frames_in.name}" + (" | cat faces" if options.faces else " | whole frame"))
    for note in classifier.notes:
        echo(f"note: {note}")

    smoother = MoodSmoother(spec.class_names, options.alpha, options.hold_s, options.threshold)
    detector = HaarCatFaceDetector() if options.faces else None
    tracker = FaceTracker() if options.faces else None
    whole_state: dict = {}
    buffers: dict[int, np.ndarray] = {}
    times = {stage: [] for stage in STAGES}
    events = open(options.events, "w", buffering=1 << 16) if options.events else None
    video: _VideoOut | None = None
    window = options.show
    boxes: list = []
    started = time.perf_counter()
    last = started
    fps_ema = None
    try:
        for frame in frames_in:
            image = frame.image
            t0 = time.perf_counter()
            # Crops: the cat faces (detected every `detect_every` frames), or the whole frame.
            if detector is not None:
                if summary.frames % options.detect_every == 0:
                    boxes = detector.detect(image)[: options.max_faces]
                tracks = tracker.update(boxes)
                crops = []
                for box in boxes:
                    x, y, w, h = padded_box(box, image.shape, options.pad)
                    crops.append(image[y:y + h, x:x + w])
            else:
                tracks, crops = [], [image]
            n = len(crops)
            if n:
                if n not in buffers:  # one buffer per batch size, reused: no allocation in the steady state
                    buffers[n] = np.empty(input_shape(spec, n), spec.input_dtype)
                batch = preprocess(crops, spec, out=buffers[n])
            t1 = time.perf_counter()
            probs = classifier.predict(batch) if n else np.zeros((0, spec.num_classes), np.float32)
            t2 = time.perf_counter()

            decisions = []
            if detector is not None:
                for box, track, p in zip(boxes, tracks, probs):
                    decisions.append((box, smoother.update(track.state, p, frame.timestamp), track.id))
            else:
                decisions.append((None, smoother.update(whole_state, probs[0], frame.timestamp), None))
            now = time.perf_counter()
            instant = 1.0 / max(now - last, 1e-6)
            fps_ema = instant if fps_ema is None else 0.9 * fps_ema + 0.1 * instant
            last = now
            if options.out or window:
                draw(image, decisions, spec.class_names, fps_ema, options.faces)
            if options.out:
                if video is None:
                    video = _VideoOut(Path(options.out), frames_in.fps or 30.0, (image.shape[1], image.shape[0]))
                video.write(image)
            if window:
                window = _show(image, echo)
                if window == "quit":
                    summary.end_reason = "q pressed"
                    break
            if not decisions:
                shown = "no face"
            elif options.faces:
                shown = max(decisions, key=lambda d: d[0][2] * d[0][3])[1].label  # the largest face
            else:
                shown = decisions[0][1].label
            summary.labels[shown] = summary.labels.get(shown, 0) + 1
            t3 = time.perf_counter()
            latency = dict(capture=frame.capture_ms, preprocess=(t1 - t0) * 1000, inference=(t2 - t1) * 1000,
                           postprocess=(t3 - t2) * 1000)
            for stage, value in latency.items():
                times[stage].append(value)
            if events is not None:
                events.write(json.dumps(_event(frame, decisions, probs, spec.class_names, shown, latency,
                                               options.faces)) + "\n")
            summary.frames += 1
            if options.max_frames and summary.frames >= options.max_frames:
                summary.end_reason = f"--max-frames {options.max_frames}"
                break
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.end_reason = "interrupted (Ctrl-C)"
    finally:
        summary.seconds = time.perf_counter() - started
        if events is not None:
            events.close()
            summary.events = options.events
        if video is not None:
            video.close()
            summary.out = options.out
        summary.dropped = frames_in.dropped
        if not summary.end_reason:
            summary.end_reason = frames_in.end_reason
        frames_in.close()
        if options.show:
            _close_windows()
    summary.stages = {stage: _stats(values) for stage, values in times.items()}
    echo(summary.table())
    return summary


def _event(frame, decisions, probs, class_names, shown, latency, faces_mode) -> dict:
    def as_dict(values):
        return {name: round(float(v), 5) for name, v in zip(class_names, values)}

    event = dict(frame=frame.index, time=round(frame.timestamp, 4), label=shown,
                 latency_ms={k: round(v, 3) for k, v in latency.items()})
    if faces_mode:
        event["faces"] = [dict(id=track_id, box=list(map(int, box)), label=d.label, confidence=round(d.confidence, 4),
                               probs=as_dict(p), smoothed=as_dict(d.probs))
                          for (box, d, track_id), p in zip(decisions, probs)]
    else:
        d = decisions[0][1]
        event.update(confidence=round(d.confidence, 4), probs=as_dict(probs[0]), smoothed=as_dict(d.probs))
    return event


def _show(image, echo):
    """Show a frame; with no display (headless OpenCV, no X) say so once and carry on without."""
    try:
        cv2.imshow("catmood", image)
        return "quit" if cv2.waitKey(1) & 0xFF == ord("q") else True
    except cv2.error:
        echo("no display here (headless OpenCV or no screen): running without a window")
        return False


def _close_windows() -> None:
    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass
