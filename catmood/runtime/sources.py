"""Where frames come from: camera index, video file, RTSP/HTTP stream, GStreamer pipeline, image file, folder
or glob. A source is an iterator of `Frame`s; the runtime reads each on its own thread (`scheduler.Feed`).

Live sources (`streams.LiveSource`: camera, stream, pipeline) matter only for their newest frame, so a slow
model never builds up delay; frames it never got to are counted as dropped. They connect, reconnect with
backoff and may change frame size. Files are read frame by frame without drops, unless `realtime` paces them
at their native fps and skips the frames that are already late (then they are live too).
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..data.images import is_image_name, load_rgb
from ..errors import CatmoodError, ImageError

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class SourceError(CatmoodError):
    """A source cannot be opened or read."""


@dataclass
class Frame:
    image: np.ndarray      # BGR uint8
    index: int             # position in the source (frames skipped by a live reader leave gaps)
    timestamp: float       # seconds: position in a file, time since start for live sources
    capture_ms: float      # how long the consumer waited for this frame


class FrameSource:
    """Iterate to get `Frame`s; `close()` releases the device. `dropped` counts frames never processed.
    `live`: only the newest frame matters (a frame not taken before the next one arrives is dropped);
    otherwise every frame is classified in order. `state`, `problem` and `reconnects` are what the run shows."""

    kind = "?"
    live = False

    def __init__(self, name: str):
        self.name = name
        self.fps: float | None = None
        self.dropped = 0
        self.reconnects = 0
        self.state = "live"
        self.problem = ""  # why it gives no frames now (a camera that cannot be reached, say)
        self.end_reason = "end of source"

    def stop_reading(self) -> None:
        """Ask an iteration under way (on another thread) to end soon."""

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _open_capture(target, factory) -> "cv2.VideoCapture":
    capture = factory(target)
    if capture is None or not capture.isOpened():
        if capture is not None:
            capture.release()
        return None
    return capture


class VideoFileSource(FrameSource):
    kind = "video"

    def __init__(self, path: Path, realtime: bool = False, factory=cv2.VideoCapture):
        super().__init__(str(path))
        self.capture = _open_capture(str(path), factory)
        if self.capture is None:
            raise SourceError(f"{path}: cannot open it as a video (unsupported codec or not a video file)")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and np.isfinite(fps) else None
        count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and count > 0 and np.isfinite(count) else None
        self.realtime = self.live = realtime

    def _ended(self, decoded: int) -> None:
        """The end reason, once frames stop: a file whose header announces more frames than could be decoded
        was cut short (a partial download or copy). Some containers' counts are estimates, hence the slack."""
        if self.frame_count and decoded < self.frame_count - max(2, self.frame_count // 100):
            self.end_reason = (f"the file ended early: {decoded} of the {self.frame_count} frames its header "
                               "announces could be decoded (truncated or damaged)")

    @property
    def period(self) -> float:
        """Seconds between frames (a file that does not say its rate is taken as 30 fps)."""
        return 1.0 / self.fps if self.fps else 1 / 30

    def __iter__(self) -> Iterator[Frame]:
        return self._paced() if self.realtime else self._every()

    def _paced(self) -> Iterator[Frame]:
        """At the native rate; frames whose time has already passed are skipped, not decoded."""
        period = self.period
        index = 0
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            due = int((t0 - started) / period)
            while index < due:
                if not self.capture.grab():
                    return self._ended(index)
                index += 1
                self.dropped += 1
            wait = started + index * period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            ok, image = self.capture.read()
            if not ok or image is None:
                return self._ended(index)
            yield Frame(image, index, index * period, (time.perf_counter() - t0) * 1000)
            index += 1

    def _every(self) -> Iterator[Frame]:
        """Every frame in order (the runtime reads it on the source's own thread, a few frames ahead)."""
        period = self.period
        index = 0
        while True:
            t0 = time.perf_counter()
            ok, image = self.capture.read()
            if not ok or image is None:
                return self._ended(index)
            yield Frame(image, index, index * period, (time.perf_counter() - t0) * 1000)
            index += 1

    def close(self) -> None:
        self.capture.release()


class ImageListSource(FrameSource):
    kind = "images"

    def __init__(self, paths: list[Path], name: str):
        super().__init__(name)
        self.paths = paths

    def __iter__(self) -> Iterator[Frame]:
        skipped = []
        for index, path in enumerate(self.paths):
            t0 = time.perf_counter()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.dropped += 1
                skipped.append(f"{path} [{unreadable_reason(path)}]")
                continue
            yield Frame(image, index, float(index), (time.perf_counter() - t0) * 1000)
        if skipped:
            more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            self.end_reason += f"; skipped {len(skipped)} unreadable image(s): {', '.join(skipped[:3])}{more}"


def unreadable_reason(path: Path) -> str:
    """Why OpenCV could not read an image: what Pillow says of it, which names the problem."""
    try:
        load_rgb(path)
    except ImageError as exc:
        return exc.reason
    return "OpenCV cannot decode it (Pillow can: convert it to PNG or JPEG)"


def open_source(source: str | int, *, realtime: bool = False, capture_factory: Callable | None = None) -> FrameSource:
    """Open what the user typed after --source: 0, video.mp4, rtsp://..., a GStreamer pipeline (it holds '!'),
    cat.jpg, a folder, or a glob. Cameras and streams connect on the thread that reads them, so one that is
    offline now is retried while the run goes on. A source's `name` is its text with any password masked."""
    from .sourcelist import display
    from .streams import LiveSource, gstreamer_factory

    text = str(source).strip()
    shown = display(text)
    if text.isdigit():
        return LiveSource(int(text), f"camera {text}", "camera", capture_factory)
    if text.lower().startswith(STREAM_SCHEMES):
        return LiveSource(text, shown, "stream", capture_factory)
    if "!" in text and not Path(text).expanduser().exists():
        return LiveSource(text, shown, "pipeline", capture_factory or gstreamer_factory())
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if is_image_name(p))
        if not paths:
            raise SourceError(f"{text}: no images match")
        return ImageListSource(paths, text)
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
        if not paths:
            raise SourceError(f"{path}: folder holds no images")
        return ImageListSource(paths, str(path))
    if path.is_file():
        if is_image_name(path):
            return ImageListSource([path], str(path))
        return VideoFileSource(path, realtime=realtime, factory=capture_factory or cv2.VideoCapture)
    raise SourceError(f"{shown}: source not found (a camera index, video file, image, folder, glob, "
                      "rtsp/http URL or GStreamer pipeline)")
