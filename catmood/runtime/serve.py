"""The live view for headless boxes (`catmood run ... --serve [HOST:]PORT`): a page with the annotated stream
and the mood per face, MJPEG, a snapshot, the latest event, a health check and Prometheus metrics.

The pipeline only hands over the newest annotated frame and its event (`publish`, a few microseconds). One
ticker thread, at `serve_fps` at most, takes the newest of them, encodes one JPEG and one status JSON for
all viewers and wakes them; each viewer writes on its own thread, so a slow one skips frames and never
holds up the pipeline or the other viewers.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import statistics
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from socketserver import TCPServer
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..errors import CatmoodError
from .options import LOOPBACK, TOKEN_ENV, serve_address
from .overlay import colour

JPEG_QUALITY = 80
RECENT = 120  # frames behind the page's stage latencies
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BOUNDARY = "frame"


class LiveView:
    """An HTTP server on a daemon thread, started at construction (`port` is the bound one); `close()`
    ends it and every open stream. `sources()`: every source's state as a dict (name, source, kind, state,
    frames, dropped, reconnects, end_reason, problem), set by the run once its sources are known."""

    def __init__(self, address: str, class_names, *, token: str | None = None, fps: float = 10.0, echo=print):
        host, port = serve_address(address)
        self.class_names, self.period = list(class_names), 1.0 / fps
        self.sources = lambda: []
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.latest: tuple | None = None  # (seq, image, event, fps): replaced whole, so readers see one frame
        self.frames, self.running, self.viewers = 0, True, 0
        self.ready = threading.Condition()
        self.tick = 0
        self.jpeg: tuple | None = None  # (seq, JPEG of that frame, when encoded, as an MJPEG part)
        self.encode_lock = threading.Lock()
        self.recent = {}
        self.previous_latency: dict | None = None
        self.registry = CollectorRegistry()
        self.frame_counter = Counter("catmood_frames", "Frames classified", registry=self.registry)
        self.stage_seconds = Histogram("catmood_stage_latency_seconds", "Time per frame in each stage",
                                       ["stage"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.label_counter = Counter("catmood_labels", "Frames per shown label", ["label"], registry=self.registry)
        self.registry.register(_Gauges(self))
        self.status = self.build_status()
        self.server = _bind(host, port, self)
        self.port = self.server.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"
        self.threads = [threading.Thread(target=self.server.serve_forever, name="live view", daemon=True),
                        threading.Thread(target=self._ticker, name="live view ticker", daemon=True)]
        for thread in self.threads:
            thread.start()
        echo(f"live view: {self.url}" + (" (token required)" if self.token else ""))
        if host != LOOPBACK and not self.token:
            echo(f"note: the live view is open to anyone who can reach {host}; set --serve-token or {TOKEN_ENV}")

    def dropped(self) -> int:
        return sum(source["dropped"] for source in self.sources())

    def publish(self, image: np.ndarray, event: dict, latency_ms: dict, fps: float | None,
                source: str = "cam0") -> None:
        """The newest annotated frame and its event (pipeline thread: no copy, no wait, no encoding). The
        pipeline keeps adding its own time to `latency_ms` after this call, so stages are counted a frame late."""
        self.frames += 1
        self.latest = (self.frames, image, event, fps)
        self.frame_counter.inc()
        self.label_counter.labels(event["label"]).inc()
        self._observe(latency_ms)

    def _observe(self, latency_ms: dict | None) -> None:
        previous, self.previous_latency = self.previous_latency, latency_ms
        for stage, ms in (previous or {}).items():
            self.stage_seconds.labels(stage).observe(ms / 1000)
            self.recent.setdefault(stage, deque(maxlen=RECENT)).append(ms)

    def close(self) -> None:
        """Stop serving: every open stream ends, the port is released."""
        self._observe(None)
        self.running = False
        self.status = self.build_status()
        with self.ready:
            self.tick += 1
            self.ready.notify_all()
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=5)

    def _ticker(self) -> None:
        """At `serve_fps` at most: the newest frame's JPEG (only while someone streams) and status, once."""
        seen = None
        while self.running:
            started = time.perf_counter()
            latest = self.latest
            if latest is not None and latest[0] != seen:
                seen = latest[0]
                if self.viewers:
                    self.snapshot()
                self.status = self.build_status()
                with self.ready:
                    self.tick += 1
                    self.ready.notify_all()
            time.sleep(max(0.0, self.period - (time.perf_counter() - started)))

    def snapshot(self, part: bool = False) -> bytes | None:
        """The JPEG of the newest frame (None before the first), or with `part` that JPEG as one part of the
        MJPEG stream: encoded once for everyone who asks, and again only for a newer frame once the last
        encoding is `1 / serve_fps` old."""
        with self.encode_lock:
            latest, cached = self.latest, self.jpeg
            if latest is None:
                return None
            now = time.perf_counter()
            if cached is None or (cached[0] != latest[0] and now - cached[2] >= self.period * 0.9):
                jpeg = cv2.imencode(".jpg", latest[1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.jpeg = cached = (latest[0], jpeg, now, head.encode() + jpeg + b"\r\n")
            return cached[3] if part else cached[1]

    def build_status(self) -> bytes:
        """The run now as JSON: the latest event, fps, frames, dropped, recent stage latencies, colours."""
        latest = self.latest
        return json.dumps(dict(
            running=self.running, source=latest[2].get("source", "") if latest else "", sources=self.sources(),
            classes=self.class_names,
            colours={name: "#%02x%02x%02x" % colour(name, self.class_names)[::-1] for name in self.class_names},
            frames=self.frames, dropped=self.dropped(), fps=round(latest[3] or 0.0, 2) if latest else 0.0,
            stages_ms={stage: round(statistics.median(tuple(values)), 3) 
                       for stage, values in list(self.recent.items())},
            event=latest[2] if latest else None)).encode()

    def wait(self, seen: int, timeout: float = 15.0) -> int:
        """Block until the ticker has something newer than tick `seen` (or `timeout`); the tick now."""
        with self.ready:
            self.ready.wait_for(lambda: self.tick != seen or not self.running, timeout)
            return self.tick

    def authorised(self, path: str, authorization: str | None) -> bool:
        if not self.token:
            return True
        offered = parse_qs(urlsplit(path).query).get("token", [])
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            offered.append(credentials.strip())
        return any(hmac.compare_digest(value.encode(), self.token.encode()) for value in offered)


class _Gauges:
    """Values read when scraped: dropped frames (the source counts them), fps, viewers."""

    def __init__(self, view: LiveView):
        self.view = view

    def collect(self):
        latest = self.view.latest
        yield CounterMetricFamily("catmood_frames_dropped", "Frames the source skipped or could not read",
                                  value=self.view.dropped())
        yield GaugeMetricFamily("catmood_fps", "Frames per second (moving average)",
                                value=(latest[3] or 0.0) if latest else 0.0)
        yield GaugeMetricFamily("catmood_stream_viewers", "Open MJPEG streams", value=self.view.viewers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, view: LiveView):
        self.view, self.open = view, set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # HTTPServer's would look up the host's DNS name: slow on a box offline
        self.server_name, self.server_port = self.server_address[:2]

    def process_request_thread(self, request, client_address) -> None:
        self.open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.open.discard(request)

    def close_connections(self) -> None:
        """Unblock viewer threads stuck writing to clients that stopped reading."""
        for request in list(self.open):
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server6(_Server):
    address_family = socket.AF_INET6


def _bind(host: str, port: int, view: LiveView) -> _Server:
    try:
        return (_Server6 if ":" in host else _Server)((host, port), view)
    except OSError as exc:
        raise CatmoodError(f"--serve {host}:{port}: cannot listen there ({exc.strerror or exc})") from None


def page() -> bytes:
    return resources.files(__package__).joinpath("live.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 60  # a viewer that stops reading for this long is let go
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass  # request lines can carry the token; the run's own output stays readable

    def do_GET(self) -> None:
        view, route = self.server.view, urlsplit(self.path).path
        if route == "/healthz":
            return self._send(200, b"ok\n", "text/plain")
        if not view.authorised(self.path, self.headers.get("Authorization")):
            return self._send(401, b"a valid token is needed: ?token=... or Authorization: Bearer ...\n",
                              "text/plain", {"WWW-Authenticate": 'Bearer realm="catmood"'})
        try:
            self._route(view, route)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True  # the viewer went away

    def _route(self, view: LiveView, route: str) -> None:
        if route in ("/", "/index.html"):
            self._send(200, page(), "text/html; charset=utf-8")
        elif route == "/status.json":
            self._send(200, view.build_status(), "application/json")
        elif route == "/snapshot.jpg":
            jpeg = view.snapshot()
            if jpeg is None:
                self._send(503, b"no frame yet\n", "text/plain", {"Retry-After": "1"})
            else:
                self._send(200, jpeg, "image/jpeg")
        elif route == "/metrics":
            self._send(200, generate_latest(view.registry), CONTENT_TYPE_LATEST)
        elif route == "/stream.mjpg":
            self._stream(view)
        elif route == "/events":
            self._events(view)
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(code)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(body)),
                            "Cache-Control": "no-store", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _open_stream(self, content_type: str) -> None:
        self.close_connection = True  # a stream ends with the connection
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()

    def _stream(self, view: LiveView) -> None:
        self._open_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        with view.ready:
            view.viewers += 1
        try:
            tick, sent = -1, None
            while view.running:
                tick = view.wait(tick)
                part = view.snapshot(part=True)
                if part is not None and part is not sent:
                    self.wfile.write(part)
                    sent = part
        finally:
            with view.ready:
                view.viewers -= 1

    def _events(self, view: LiveView) -> None:
        """Server-Sent Events: the status after each tick, a comment every 15 s to keep proxies open."""
        self._open_stream("text/event-stream")
        tick = -1
        while True:
            new = view.wait(tick)
            self.wfile.write(b"data: " + view.status + b"\n\n" if new != tick else b": idle\n\n")
            tick = new
            if not view.running:
                return
