"""Where frames come from: camera index, video file, RTSP/HTTP stream, image file, folder or glob.

Live sources (camera, stream) are read on a capture thread that keeps only the newest frame, so a slow
model never builds up delay; frames it never got to are counted as dropped. Streams reconnect with
backoff after a drop and may change frame size. Files are read frame by frame without drops, unless
`realtime` paces them at their native fps and skips the frames that are already late.
"""

from __future__ import annotations

import glob
import os
import queue
import threading
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
    """Iterate to get `Frame`s; `close()` releases the device. `dropped` counts frames never processed."""

    kind = "?"

    def __init__(self, name: str):
        self.name = name
        self.fps: float | None = None
        self.dropped = 0
        self.end_reason = "end of source"

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
        self.realtime = realtime

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
        return self._paced() if self.realtime else self._prefetched()

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

    def _prefetched(self) -> Iterator[Frame]:
        """Every frame in order, decoded on a thread a few frames ahead, so decoding overlaps inference."""
        period = self.period
        frames: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def decode() -> None:
            try:
                while not stop.is_set():
                    ok, image = self.capture.read()
                    item = image if ok and image is not None else None
                    while not stop.is_set():
                        try:
                            frames.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if item is None:
                        return
            except Exception as exc:  # surface decoder failures in the consumer, not a dead thread
                frames.put(exc)

        reader = threading.Thread(target=decode, name=f"decode {self.name}", daemon=True)
        reader.start()
        try:
            index = 0
            while True:
                t0 = time.perf_counter()
                item = frames.get()
                if item is None:
                    return self._ended(index)
                if isinstance(item, Exception):
                    raise SourceError(f"{self.name}: decoding failed at frame {index} ({item})")
                yield Frame(item, index, index * period, (time.perf_counter() - t0) * 1000)
                index += 1
        finally:
            stop.set()
            reader.join(timeout=5)

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


class LiveSource(FrameSource):
    """A camera or stream read on its own thread; the consumer always gets the newest frame."""

    def __init__(self, target, name: str, kind: str, factory=cv2.VideoCapture, reconnect: bool = True,
                 give_up_after: float = 30.0, first_frame_timeout: float = 15.0):
        super().__init__(name)
        self.kind = kind
        self.target = target
        self.factory = factory
        self.reconnect = reconnect
        self.give_up_after = give_up_after
        self.first_frame_timeout = first_frame_timeout
        self.capture = _open_capture(target, factory)
        if self.capture is None:
            what = "camera" if kind == "camera" else "stream"
            raise SourceError(f"{name}: cannot open the {what} (check the {'index and that no other program uses it' if kind == 'camera' else 'URL and that it is reachable'})")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self.reconnects = 0
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float] | None = None
        self._taken = -1
        self._read = 0
        self._done = False
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._reader, name=f"capture {name}", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        backoff = 0.25
        lost_since = None
        while not self._stop.is_set():
            ok, image = self.capture.read() if self.capture is not None else (False, None)
            if ok and image is not None:
                lost_since, backoff = None, 0.25
                with self._cond:
                    self._latest = (image, self._read, time.perf_counter() - self._started)
                    self._read += 1
                    self._cond.notify_all()
                continue
            if not self.reconnect:
                self.end_reason = "end of stream"
                break
            lost_since = lost_since or time.perf_counter()
            if time.perf_counter() - lost_since > self.give_up_after:
                self.end_reason = f"stream lost for {self.give_up_after:.0f} s; gave up after {self.reconnects} reconnect(s)"
                break
            if self.capture is not None:
                self.capture.release()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
            self.capture = _open_capture(self.target, self.factory)
            self.reconnects += 1
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        deadline = time.perf_counter() + self.first_frame_timeout
        while True:
            t0 = time.perf_counter()
            with self._cond:
                while not self._done and (self._latest is None or self._latest[1] == self._taken):
                    if self._latest is None and time.perf_counter() > deadline:
                        raise SourceError(f"{self.name}: opened, but no frame arrived within "
                                          f"{self.first_frame_timeout:.0f} s")
                    self._cond.wait(timeout=0.5)
                if self._latest is None or self._latest[1] == self._taken:
                    return  # the reader is done and nothing new is left
                image, index, stamp = self._latest
                self.dropped += index - self._taken - 1
                self._taken = index
            yield Frame(image, index, stamp, (time.perf_counter() - t0) * 1000)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.capture is not None:
            self.capture.release()


def open_source(source: str | int, *, realtime: bool = False, capture_factory: Callable = cv2.VideoCapture,
                give_up_after: float = 30.0) -> FrameSource:
    """Open what the user typed after --source: 0, video.mp4, rtsp://..., cat.jpg, a folder, or a glob."""
    text = str(source).strip()
    if text.isdigit():
        return LiveSource(int(text), f"camera {text}", "camera", capture_factory, reconnect=False)
    if text.lower().startswith(STREAM_SCHEMES):
        return LiveSource(text, text, "stream", capture_factory, give_up_after=give_up_after)
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
        return VideoFileSource(path, realtime=realtime, factory=capture_factory)
    raise SourceError(f"{text}: source not found (a camera index, video file, image, folder, glob or "
                      "rtsp/http URL)")
