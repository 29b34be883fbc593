"""The runtime's outputs, fed one `FrameResult` at a time by `pipeline.run_pipeline`: the overlay (drawn when
a video, images, a window or the live view want it), a video per source (or annotated images, and a line per
image), the events and CSV (every row names its source), a window per source, the live view. None of them
encodes on the inference loop: videos are encoded on their own threads, the live view on its ticker.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

from ..errors import CatmoodError
from ..fileio import remove_stale_temporaries
from .classify import FrameResult
from .options import RuntimeOptions
from .overlay import draw
from .predict import ImageOutputs
from .records import CsvRecords, LinesFile


class VideoOut:
    """mp4v writer at the source's fps and first frame's size. The writer is made, and frames encoded, on
    its own thread: encoding overlaps inference, and OpenCV makes FFmpeg writers under the lock its stream
    captures are opened under, which a slow camera can hold for seconds. The file is finished by rename so
    a half video is never taken for a whole one."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path, self.fps, self.size = path, fps, size
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        # The temporary name atomic_path uses, so a killed run's half video is cleaned by the next run.
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix or '.mp4'}")
        self.pending: queue.Queue = queue.Queue(maxsize=8)
        self.failed: str | None = None
        self.thread = threading.Thread(target=self._encode, name=f"encode {path.name}", daemon=True)
        self.thread.start()

    def _encode(self) -> None:
        writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not writer.isOpened():
            self.failed = f"{self.path}: cannot write an mp4v video there"
        while (image := self.pending.get()) is not None:
            if self.failed:
                continue  # keep taking frames, so the loop never waits on a writer that is not there
            if (image.shape[1], image.shape[0]) != self.size:  # streams may change frame size mid-way
                image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
            writer.write(image)
        writer.release()

    def write(self, image: np.ndarray) -> None:
        self.pending.put(image)  # the frame is not touched again by the loop; no copy needed

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join()
        if self.failed:
            self.tmp.unlink(missing_ok=True)
            raise CatmoodError(self.failed)
        os.replace(self.tmp, self.path)


class Sinks:
    """Every output of a run. `sources`: what the run knows of each source by name: `video_path(name)` (where
    its video goes), `fps(name)` (its frame rate, for the video) and `shown(name)` (what it is, password
    masked, for the CSV's file column); `live`: the live view, or None."""

    def __init__(self, options: RuntimeOptions, class_names, echo, sources, images: ImageOutputs | None = None,
                 live=None):
        self.options, self.class_names, self.echo = options, class_names, echo
        self.sources, self.images, self.live = sources, images, live
        self.events = LinesFile(options.events) if options.events else None
        self.csv = CsvRecords(options.csv, class_names) if options.csv else None
        self.videos: dict[str, VideoOut] = {}
        self.windows: dict[str, bool | str] = {}
        self.rates: dict[str, tuple[float, float | None]] = {}  # name -> (last time, fps moving average)

    def rate(self, name: str) -> float:
        now = time.perf_counter()
        last, ema = self.rates.get(name, (None, None))
        if last is not None:
            instant = 1.0 / max(now - last, 1e-6)
            ema = instant if ema is None else 0.9 * ema + 0.1 * instant
        self.rates[name] = (now, ema)
        return ema or 0.0

    def write(self, result: FrameResult) -> bool:
        """False when the user asked to stop (q in a window)."""
        name, image, options, images = result.source, result.frame.image, self.options, self.images
        fps = self.rate(name)
        for skipped in images.skipped_before(result.frame.index) if images else ():
            self._skipped(*skipped)
        if options.out or options.show or self.live:  # a photo has no frame rate to show
            draw(image, [(f.box, f.decision, f.track_id) for f in result.faces], self.class_names,
                 None if images else fps, options.faces)
        if options.out and images:
            images.save(image, result)
        elif options.out:
            if name not in self.videos:
                self.videos[name] = VideoOut(self.sources.video_path(name), self.sources.fps(name) or 30.0,
                                             (image.shape[1], image.shape[0]))
            self.videos[name].write(image)
        if options.show and self.windows.get(name, True) and self.windows.get("", True):
            self.windows[name] = _show(f"catmood {name}", image, self.echo)
            if self.windows[name] == "quit":
                return False
            self.windows[""] = self.windows[name]  # no display for one window: none for any
        file = images.file(result) if images else None
        if images:
            self.echo(images.line(result))
        if self.events is not None or self.live is not None:
            event = frame_event(result, self.class_names, options.faces, file)
            if self.events is not None:
                self.events.write(json.dumps(event))
            if self.live is not None:
                self.live.publish(image, event, result.latency_ms, fps, source=name)
        if self.csv is not None:
            self.csv.write(result, file or self.sources.shown(name))
        return True

    def _skipped(self, file: str, reason: str, line: str) -> None:
        """An image the source could not read: named, with the reason, wherever the images are recorded."""
        self.echo(line)
        if self.events is not None:
            self.events.write(json.dumps(dict(file=file, error=reason)))
        if self.csv is not None:
            self.csv.skipped(file, reason)

    def close(self) -> tuple[str | None, dict[str, str], str | None]:
        """Flush and finish every output (each one even if another fails); (events, source name -> video or
        images written, CSV) of those written."""
        for skipped in self.images.skipped_before() if self.images else ():
            self._skipped(*skipped)
        errors = []
        for output in (self.events, self.csv, *self.videos.values(), self.live):
            try:
                if output is not None:
                    output.close()
            except Exception as exc:  # finish the others; report the first
                errors.append(exc)
        if self.options.show:
            _close_windows()
        if errors:
            raise errors[0]
        written = {name: str(video.path) for name, video in self.videos.items()}
        if self.images is not None and self.images.written:
            written = {"images": str(self.options.out)}
        return (self.options.events if self.events is not None else None, written,
                self.options.csv if self.csv is not None else None)


def frame_event(result: FrameResult, class_names, faces_mode: bool, file: str | None = None) -> dict:
    def as_dict(values):
        return {name: round(float(v), 5) for name, v in zip(class_names, values)}

    frame = result.frame
    event = dict(source=result.source, **(dict(file=file) if file is not None else {}))
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


def _show(title: str, image, echo):
    """Show a frame; with no display (headless OpenCV, no X) say so once and carry on without."""
    try:
        cv2.imshow(title, image)
        return "quit" if cv2.waitKey(1) & 0xFF == ord("q") else True
    except cv2.error:
        echo("no display here (headless OpenCV or no screen): running without a window")
        return False


def _close_windows() -> None:
    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass
