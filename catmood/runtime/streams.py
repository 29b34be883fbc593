"""Cameras, streams and GStreamer pipelines: a connection state machine run by the thread that reads them.

connecting -> live -> lost -> (reconnect after an exponential backoff with jitter, so twenty cameras coming
back after a switch reboot do not reconnect in step) -> live ... Nothing is opened in the constructor: a
camera that is offline at the start is retried while the other sources run. Ending a source that gave no
frame for too long, and restarting one that is connected but wedged, is the watchdog's job
(`scheduler.Feed`): it starts a fresh iteration, and since each iteration owns its capture, an abandoned one
stuck in a read releases its capture when the read returns. No placeholder frame is ever produced.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from typing import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import cv2

from .sources import Frame, FrameSource, SourceError

# FFmpeg gives up on a connection that never answers, and on a read that waits this long, instead of
# blocking the source's thread for its own 30 s default.
OPEN_TIMEOUT_MS = 6_000
READ_TIMEOUT_MS = 5_000
PROBE_TIMEOUT_S = 3.0
BACKOFF_S = (0.5, 10.0)  # the first and the longest wait between connection attempts
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}


def stream_capture(target: str) -> cv2.VideoCapture:
    """An RTSP/HTTP/... stream through FFmpeg, with bounded open and read times, once it is seen to answer.

    OpenCV opens every FFmpeg capture and writer under one process-wide lock (measured: a camera that
    accepts the connection and never answers held up another camera's open and a video writer's creation for
    the whole open timeout). So a stream is first asked, without FFmpeg, whether it answers at all."""
    problem = probe(target)
    if problem:
        raise ConnectionError(problem)
    return cv2.VideoCapture(target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why an HTTP(S) or RTSP(S) camera does not answer (None: it sends something back, even a 401): a
    request is sent and the first byte of any answer awaited. Other schemes are left to FFmpeg."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None  # FFmpeg says what is wrong with it
    if scheme not in DEFAULT_PORTS or not host:
        return None
    plain = urlunsplit(parts._replace(netloc=host if port is None else f"{host}:{port}"))  # no credentials
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n" if scheme.startswith("http")
               else f"OPTIONS {plain} RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    try:
        with socket.create_connection((host, port or DEFAULT_PORTS[scheme]), timeout=timeout) as raw:
            sock = _tls(raw, host) if scheme in ("https", "rtsps") else raw
            sock.sendall(request.encode("latin-1", "replace"))
            if not sock.recv(1):
                return "it closed the connection without an answer"
    except socket.timeout:
        return f"it sent nothing back within {timeout:g} s"
    except (OSError, UnicodeError) as exc:
        return f"cannot connect: {getattr(exc, 'strerror', None) or exc}"
    return None


def _tls(sock: socket.socket, host: str) -> ssl.SSLSocket:
    """A TLS wrapper that only asks whether something answers (FFmpeg checks the certificate itself)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname=host)


def gstreamer_factory() -> Callable:
    """Opens a GStreamer pipeline (`... ! appsink`), or says in one line how to get an OpenCV that can."""
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise SourceError("this OpenCV has no GStreamer (PyPI's opencv-python wheels are built without it), so "
                          "a pipeline with '!' cannot be opened: on a Jetson use JetPack's OpenCV through a venv "
                          "made with `python3 -m venv --system-site-packages` (and no opencv-python-headless in "
                          "it); elsewhere an OpenCV built with -D WITH_GSTREAMER=ON")
    return lambda target: cv2.VideoCapture(target, cv2.CAP_GSTREAMER)


def backoff(failures: int, rng: random.Random = random.Random()) -> float:
    """Seconds before connection attempt number `failures` + 1: doubling from BACKOFF_S[0] up to BACKOFF_S[1],
    each drawn from the upper half of that (jitter spreads cameras that failed together)."""
    delay = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** max(0, failures - 1))
    return rng.uniform(delay / 2, delay)


class LiveSource(FrameSource):
    """`state`: connecting (never live yet), live, lost (reconnecting); `problem`: why it is not live.
    `reconnect=False`: the first failure ends it (a device that is gone for good)."""

    live = True

    def __init__(self, target, name: str, kind: str, factory: Callable | None = None, reconnect: bool = True):
        super().__init__(name)
        self.kind, self.target, self.reconnect = kind, target, reconnect
        self.factory = factory or (stream_capture if kind == "stream" else cv2.VideoCapture)
        self.state = "connecting"
        self.attempts = 0
        self._stop = threading.Event()
        self._session: object | None = None
        self._index = 0
        self._started = time.perf_counter()

    def stop_reading(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[Frame]:
        session = self._session = object()  # a newer iteration (a watchdog restart) retires this one

        def current() -> bool:
            return self._session is session and not self._stop.is_set()

        capture, failures = None, 0
        try:
            while current():
                if capture is None:
                    capture = self._connect()
                    if capture is None:
                        if not self.reconnect:
                            return
                        failures += 1
                        self._stop.wait(backoff(failures))
                        continue
                ok, image = capture.read()
                if not current():
                    return
                if ok and image is not None:
                    failures, self.state, self.problem = 0, "live", ""
                    yield Frame(image, self._index, time.perf_counter() - self._started, 0.0)
                    self._index += 1
                    continue
                capture.release()
                capture = None
                if not self.reconnect:
                    self.end_reason = "end of stream"
                    return
                self.state, self.problem = "lost", "the stream stopped giving frames"
                failures += 1
                self._stop.wait(backoff(failures))
        finally:
            if capture is not None:
                capture.release()

    def _connect(self):
        """An opened capture, or None with `problem` (and, without reconnecting, `end_reason`) saying why."""
        if self.attempts:
            self.reconnects += 1
        self.attempts += 1
        try:
            capture = self.factory(self.target)
        except SourceError:
            raise
        except Exception as exc:  # a backend's own error or no answer: this source's problem, not the run's
            capture, error = None, f": {exc}"
        else:
            error = ""
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            what = ("cannot open the camera (check the index and that no other program uses it)"
                    if self.kind == "camera" else f"cannot open the {self.kind}")
            self.problem = what + (error or ("" if self.kind == "camera" else " (check it and that it is reachable)"))
            if self.state == "live":
                self.state = "lost"
            if not self.reconnect:
                self.end_reason = self.problem
            return None
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else self.fps
        return capture
