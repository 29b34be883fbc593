"""The runtime's outputs: `run_pipeline(model, source, RuntimeOptions(...))` consumes `classify_frames`
and writes the overlay, the video (or, for images, annotated copies and one line per image), the events,
the CSV and the summary. Ctrl-C and the end of the source flush every output.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..backends import Classifier, select_classifier
from ..errors import CatmoodError
from ..fileio import remove_stale_temporaries
from ..tables import format_table
from ..timing import percentiles
from .classify import FrameResult, classify_frames, open_detector
from .faces import FaceDetector
from .options import RuntimeOptions
from .overlay import draw
from .predict import ImageOutputs, image_outputs
from .records import CsvRecords, LinesFile
from .sources import FrameSource, open_source

STAGES = ("capture", "detect", "preprocess", "inference", "postprocess")  # detect: only with faces


@dataclass
class RunSummary:
    source: str
    backend: str
    kind: str = ""
    frames: int = 0
    seconds: float = 0.0
    dropped: int = 0
    end_reason: str = ""
    interrupted: bool = False
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    out: str | None = None
    events: str | None = None
    csv: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        unit, lost = ("images", "unreadable") if self.kind == "images" else ("frames", "dropped")
        head = (f"{self.frames} {unit} in {self.seconds:.1f} s = {self.fps:.1f} fps | {lost} {self.dropped} | "
                f"{self.backend} | {self.end_reason}")
        rows = [[s, f"{v['p50']:.2f}", f"{v['p99']:.2f}", f"{v['mean']:.2f}"] for s, v in self.stages.items()]
        return head + "\n" + format_table(["stage", "p50 ms", "p99 ms", "mean ms"], rows)

    def to_dict(self) -> dict:
        return dict(source=self.source, backend=self.backend, kind=self.kind, frames=self.frames,
                    seconds=self.seconds, fps=self.fps, dropped=self.dropped, end_reason=self.end_reason,
                    interrupted=self.interrupted, stages_ms=self.stages, labels=self.labels, out=self.out,
                    events=self.events, csv=self.csv)


class _VideoOut:
    """mp4v writer at the source's fps and first frame's size. Encoding runs on its own thread so it
    overlaps inference; the file is finished by rename so a half video is never taken for a whole one."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        # The temporary name atomic_path uses, so a killed run's half video is cleaned by the next run.
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix or '.mp4'}")
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
                 device: str = "auto", detector: FaceDetector | None = None, on_result=None,
                 echo=print) -> RunSummary:
    """Classify every frame of `source` with `model` (a path or a Classifier) and write what `options`
    asks for (overlay, video or annotated images, events, CSV, window); return the summary.
    `on_result(FrameResult)`: called for every frame, for callers that want the results themselves."""
    options = options or RuntimeOptions()
    classifier: Classifier = model if isinstance(model, Classifier) else select_classifier(model, backend, device)
    spec = classifier.spec
    frames_in: FrameSource = source if isinstance(source, FrameSource) else open_source(source, realtime=options.realtime)
    summary = RunSummary(source=frames_in.name, backend=classifier.describe(), kind=frames_in.kind)
    try:  # refused before any frame, and before an output file exists
        detector = detector or open_detector(options)
        images = image_outputs(frames_in, options, spec.class_names, inputs=_model_files(model))
        sinks = _Sinks(options, spec.class_names, frames_in.fps, echo, frames_in, images)
    except BaseException:
        frames_in.close()
        raise
    echo(f"running {spec.architecture} ({', '.join(spec.class_names)}) with {classifier.describe()} on "
         f"{frames_in.kind} {frames_in.name}" + (" | cat faces" if options.faces else " | whole frame"))
    for note in classifier.notes:
        echo(f"note: {note}")
    times: dict[str, list[float]] = {stage: [] for stage in STAGES if stage != "detect" or detector is not None}
    started = time.perf_counter()
    try:
        for result in classify_frames(classifier, frames_in, options, detector):
            t0 = time.perf_counter()
            if not sinks.write(result):
                summary.end_reason = "q pressed"
                break
            result.latency_ms["postprocess"] += (time.perf_counter() - t0) * 1000
            for stage, value in result.latency_ms.items():
                times[stage].append(value)
            summary.labels[result.label] = summary.labels.get(result.label, 0) + 1
            summary.frames += 1
            if on_result is not None:
                on_result(result)
        if options.max_frames and summary.frames >= options.max_frames:
            summary.end_reason = f"--max-frames {options.max_frames}"
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.end_reason = "interrupted (Ctrl-C)"
    finally:
        summary.seconds = time.perf_counter() - started
        summary.events, summary.out, summary.csv = sinks.close()
        summary.dropped = frames_in.dropped
        summary.end_reason = summary.end_reason or frames_in.end_reason
        frames_in.close()
    summary.stages = {stage: percentiles(values) for stage, values in times.items()}
    echo(summary.table())
    return summary


def _model_files(model) -> list[Path]:
    """The model's files (an engine's sidecar too), which no output may replace."""
    return [] if isinstance(model, Classifier) else [Path(model), Path(str(model) + ".json")]


class _Sinks:
    """The runtime's outputs: overlay (drawn when a video, images, a window or the live view want it), video or
    annotated images, the line per image, events, CSV, window, live view."""

    def __init__(self, options: RuntimeOptions, class_names, fps: float | None, echo, source: FrameSource,
                 images: ImageOutputs | None = None):
        self.options, self.class_names, self.fps, self.echo = options, class_names, fps, echo
        self.images, self.name = images, source.name
        self.live = None
        if options.serve is not None:  # first: a port already in use stops the run before any file is opened
            from .serve import LiveView  # prometheus_client and the HTTP server only when serving

            self.live = LiveView(options.serve, class_names, token=options.serve_token, fps=options.serve_fps,
                                 source=source.name, dropped=lambda: source.dropped, echo=echo)
        self.events = LinesFile(options.events) if options.events else None
        self.csv = CsvRecords(options.csv, class_names) if options.csv else None
        self.video: _VideoOut | None = None
        self.window = options.show
        self.fps_ema: float | None = None
        self.last = time.perf_counter()

    def write(self, result: FrameResult) -> bool:
        """False when the user asked to stop (q in the window)."""
        now = time.perf_counter()
        instant = 1.0 / max(now - self.last, 1e-6)
        self.fps_ema = instant if self.fps_ema is None else 0.9 * self.fps_ema + 0.1 * instant
        self.last = now
        image, options, images = result.frame.image, self.options, self.images
        for skipped in images.skipped_before(result.frame.index) if images else ():
            self._skipped(*skipped)
        if options.out or self.window or self.live:  # a photo has no frame rate to show
            draw(image, [(f.box, f.decision, f.track_id) for f in result.faces], self.class_names,
                 None if images else self.fps_ema, options.faces)
        if options.out and images:
            images.save(image, result)
        elif options.out:
            if self.video is None:
                self.video = _VideoOut(Path(options.out), self.fps or 30.0, (image.shape[1], image.shape[0]))
            self.video.write(image)
        if self.window:
            self.window = _show(image, self.echo)
            if self.window == "quit":
                return False
        file = images.file(result) if images else None
        if images:
            self.echo(images.line(result))
        if self.events is not None or self.live is not None:
            event = _event(result, self.class_names, options.faces, file)
            if self.events is not None:
                self.events.write(json.dumps(event))
            if self.live is not None:
                self.live.publish(image, event, result.latency_ms, self.fps_ema)
        if self.csv is not None:
            self.csv.write(result, file or self.name)
        return True

    def _skipped(self, file: str, reason: str, line: str) -> None:
        """An image the source could not read: named, with the reason, wherever the images are recorded."""
        self.echo(line)
        if self.events is not None:
            self.events.write(json.dumps(dict(file=file, error=reason)))
        if self.csv is not None:
            self.csv.skipped(file, reason)

    def close(self) -> tuple[str | None, str | None, str | None]:
        """Flush and finish every output; (events, video or images, CSV) paths of those written."""
        for skipped in self.images.skipped_before() if self.images else ():
            self._skipped(*skipped)
        for output in (self.events, self.csv, self.video):
            if output is not None:
                output.close()
        if self.options.show:
            _close_windows()
        if self.live is not None:
            self.live.close()
        wrote_out = self.video is not None or (self.images is not None and self.images.written > 0)
        return (self.options.events if self.events is not None else None,
                self.options.out if wrote_out else None, self.options.csv if self.csv is not None else None)


def _event(result: FrameResult, class_names, faces_mode: bool, file: str | None = None) -> dict:
    def as_dict(values):
        return {name: round(float(v), 5) for name, v in zip(class_names, values)}

    frame = result.frame
    event = dict(file=file) if file is not None else {}
    event.update(frame=frame.index, time=round(frame.timestamp, 4), label=result.label,
                 latency_ms={k: round(v, 3) for k, v in result.latency_ms.items()})
    if faces_mode:
        event["faces"] = [dict(id=f.track_id, box=list(map(int, f.box)), label=f.decision.label,
                               confidence=round(f.decision.confidence, 4), probs=as_dict(f.probs),
                               smoothed=as_dict(f.decision.probs)) for f in result.faces]
    else:
        (face,) = result.faces
        event.update(confidence=round(face.decision.confidence, 4), probs=as_dict(face.probs),
                     smoothed=as_dict(face.decision.probs))
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
