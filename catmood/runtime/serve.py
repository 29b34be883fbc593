"""The live view for headless boxes (`catmood run ... --serve [HOST:]PORT`): a page with every camera (its
stream, mood and a strip of its recent moods), per camera MJPEG and snapshot (`?source=NAME`; without it the
first source), every source's state as JSON and Server-Sent Events, a health check and Prometheus metrics.

The pipeline only hands over each source's newest annotated frame and event (`publish`, a few microseconds).
One ticker thread, at `serve_fps` at most, encodes one JPEG per source that someone streams and one status
JSON for all viewers, and wakes them; each viewer writes on its own thread, so a slow one skips frames and
never holds up the pipeline or the other viewers.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import statistics
import threading
import time
from collections import deque
from urllib.parse import parse_qs, urlsplit

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from .options import LOOPBACK, TOKEN_ENV, serve_address
from .overlay import colour
from .serve_cameras import HISTORY_S, Camera, Metrics, down, implied
from .serve_http import bind

RECENT = 120  # frames behind the page's stage latencies
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
IDLE_STATUS_S = 1.0  # with no new frame, states (a camera lost, given up) and strips still move this often


class LiveView:
    """An HTTP server on a daemon thread, started at construction (`port` is the bound one); `close()`
    ends it and every open stream. `sources()`: every source's state as a dict (name, source, kind, state,
    frames, dropped, reconnects, end_reason, problem), set by the run once its sources are known."""

    def __init__(self, address: str, class_names, *, token: str | None = None, fps: float = 10.0,
                 hosts: tuple[str, ...] = (), echo=print):
        host, port = serve_address(address)
        self.hosts = {name.lower().rstrip(".") for name in ("localhost", host, *hosts)}
        self.class_names, self.period = list(class_names), 1.0 / fps
        self.sources = lambda: []
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.cameras: dict[str, Camera] = {}  # by source name, made at its first frame (or first viewer)
        self.newest: Camera | None = None     # the camera of the newest frame of all
        self.frames, self.running = 0, True
        self.started = time.perf_counter()
        self.ready = threading.Condition()
        self.tick = 0
        self.recent = {}
        self.previous_latency: tuple | None = None  # (camera, its latency_ms)
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram("catmood_stage_latency_seconds", "Time per frame in each stage",
                                       ["stage", "source"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(Metrics(self))
        self.status = self.build_status()
        self.server = bind(host, port, self)
        self.port = self.server.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"
        self.threads = [threading.Thread(target=self.server.serve_forever, name="live view", daemon=True),
                        threading.Thread(target=self._ticker, name="live view ticker", daemon=True)]
        for thread in self.threads:
            thread.start()
        echo(f"live view: {self.url}" + (" (token required)" if self.token else " (no token: open to whoever "
                                                                                "reaches it)"))
        if host != LOOPBACK and not self.token:
            echo(f"note: the live view is open to anyone who can reach {host}; set --serve-token or {TOKEN_ENV}")

    def publish(self, image: np.ndarray, event: dict, latency_ms: dict, fps: float | None,
                source: str = "cam0") -> None:
        """`source`'s newest annotated frame and its event (pipeline thread: no copy, no wait, no encoding).
        The pipeline keeps adding its own time to `latency_ms` after this call, so stages are counted a frame
        late."""
        camera = self.cameras.get(source) or self.camera_for(source)
        self.frames += 1
        camera.publish(self.frames, image, event, fps, time.perf_counter())
        self.newest = camera
        self._observe((camera, latency_ms))

    def camera_for(self, name: str) -> Camera:
        return self.cameras.setdefault(name, Camera(name))  # atomic: a viewer may ask for it first

    def _observe(self, latency: tuple | None) -> None:
        previous, self.previous_latency = self.previous_latency, latency
        camera, stages = previous or (None, {})
        for stage, ms in stages.items():
            camera.stage(self.stage_seconds, stage).observe(ms / 1000)
            values = self.recent.get(stage)
            if values is None:
                values = self.recent[stage] = deque(maxlen=RECENT)
            values.append(ms)

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

    def infos(self) -> list[dict]:
        """`sources()`, which reads the run's feeds while a sources file may add one: tried again then."""
        for _ in range(3):
            try:
                return list(self.sources())
            except RuntimeError:  # "dictionary changed size during iteration"
                time.sleep(0.001)
        return list(self.sources())

    def rows(self) -> list[tuple[dict, Camera | None]]:
        """(status, camera or None before its first frame) of every source: the run's order, then any source
        that sends frames without the run describing it."""
        infos, cameras = self.infos(), dict(self.cameras)
        named = {info["name"] for info in infos}
        return ([(info, cameras.get(info["name"])) for info in infos]
                + [(implied(camera), camera) for name, camera in cameras.items() if name not in named])

    def camera(self, name: str | None) -> Camera | None:
        """The camera called `name` (None: the first source); None when there is no source yet; KeyError for
        a name no source has."""
        names = [info["name"] for info, _ in self.rows()]
        if name is None and not names:
            return None
        if name is not None and name not in names:
            raise KeyError(name)
        name = names[0] if name is None else name
        return self.cameras.get(name) or self.camera_for(name)

    def health(self) -> tuple[int, bytes]:
        """200 while every source that should give frames does (or none is known yet), else 503 naming them."""
        lines = down(self.infos())
        return (503, "".join(line + "\n" for line in lines).encode()) if lines else (200, b"ok\n")

    def _ticker(self) -> None:
        """At `serve_fps` at most: a JPEG of each streamed source's newest frame, and the status, once."""
        seen: dict[str, int] = {}
        built = 0.0
        while self.running:
            started = time.perf_counter()
            fresh = False
            for camera in list(self.cameras.values()):
                latest = camera.latest
                if latest is not None and seen.get(camera.name) != latest[0]:
                    seen[camera.name], fresh = latest[0], True
                    if camera.viewers:
                        camera.encoded(self.period)
            if fresh or started - built >= IDLE_STATUS_S:
                built, self.status = started, self.build_status()
                with self.ready:
                    self.tick += 1
                    self.ready.notify_all()
            time.sleep(max(0.0, self.period - (time.perf_counter() - started)))

    def build_status(self) -> bytes:
        """The run now as JSON: per source its state, newest event, mood, fps and strip (`sources`); over all
        of them frames, dropped, fps, recent stage latencies, the newest event; the classes' colours."""
        now, newest = time.perf_counter(), self.newest
        window = min(HISTORY_S, now - self.started)
        sources = [dict(info, **(camera.fields(info.get("state"), now, window) if camera else
                                 dict(event=None, label=None, confidence=None, fps=0.0, history=[])))
                   for info, camera in self.rows()]
        event = newest.latest[2] if newest and newest.latest else None
        return json.dumps(dict(
            running=self.running, source=newest.name if newest else "", sources=sources,
            classes=self.class_names,
            colours={name: "#%02x%02x%02x" % colour(name, self.class_names)[::-1] for name in self.class_names},
            frames=self.frames, dropped=sum(source.get("dropped", 0) for source in sources),
            fps=round(sum(source["fps"] for source in sources), 2), history_s=round(window, 1),
            stages_ms={stage: round(statistics.median(tuple(values)), 3)
                       for stage, values in list(self.recent.items())},
            event=event)).encode()

    def wait(self, seen: int, timeout: float = 15.0) -> int:
        """Block until the ticker has something newer than tick `seen` (or `timeout`); the tick now."""
        with self.ready:
            self.ready.wait_for(lambda: self.tick != seen or not self.running, timeout)
            return self.tick

    def answers_to(self, host_header: str | None) -> bool:
        """Whether a request's Host names this server: an IP address (whatever it was reached by), localhost,
        the address it listens on, or a --serve-host name. A web page whose name was re-pointed at this box
        (DNS rebinding) sends its own name, and is refused."""
        if host_header is None:
            return True  # HTTP/1.0 without Host: no browser sends such a request
        name = host_header.strip().lower()
        if name.startswith("["):  # [::1]:8080
            name = name[1:name.find("]")]
        elif name.count(":") == 1:  # name:8080
            name = name.rpartition(":")[0]
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name.rstrip(".") in self.hosts

    def authorised(self, path: str, authorization: str | None) -> bool:
        if not self.token:
            return True
        offered = parse_qs(urlsplit(path).query).get("token", [])
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            offered.append(credentials.strip())
        return any(hmac.compare_digest(value.encode(), self.token.encode()) for value in offered)
