"""What the live view keeps of each source (`Camera`): its newest frame and event, the JPEG of that frame
(encoded once for all its viewers), its recent labels for the page's strip, and its counts; and `Metrics`,
the Prometheus values per source, read when scraped.

`Camera.publish` runs on the inference loop for every frame, so it only assigns and counts: no copy, no
lock, no encoding. Everything else reads what it wrote (whole tuples and append-only deques, so a reader
never sees half a frame).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import cv2
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

JPEG_QUALITY = 80
BOUNDARY = "frame"
HISTORY_S = 300.0   # the strip shows the last 5 minutes of moods
HISTORY_CAP = 2000  # change points kept per source: the label hold (0.5 s by default) allows ~600 in 5 minutes
GAP_S = 2.0         # frames this far apart: the strip shows a gap, not the last mood stretched over it
UP_STATES = ("live",)
DONE_STATES = ("ended", "removed")  # a file that ended or a camera taken out is not down


class Camera:
    """One source as the live view knows it. `latest`: (seq, image, event, fps) or None before the first
    frame; `history`: (monotonic time, label, or None for "no frames from here on") at each change."""

    def __init__(self, name: str):
        self.name = name
        self.latest: tuple | None = None
        self.jpeg: tuple | None = None  # (seq, JPEG bytes, when encoded, the JPEG as one MJPEG part)
        self.lock = threading.Lock()    # one encoding at a time, shared by every viewer of this source
        self.viewers = self.frames = 0
        self.labels: dict[str, int] = {}
        self.history: deque = deque(maxlen=HISTORY_CAP)
        self.shown_label: str | None = None
        self.seen: float | None = None
        self.stages: dict = {}  # stage -> its histogram child: labels() takes a lock and a lookup per call

    def publish(self, seq: int, image, event: dict, fps: float | None, now: float) -> None:
        label = event["label"]
        if self.seen is not None and now - self.seen > GAP_S:
            self.history.append((self.seen, None))
            self.shown_label = None
        if label != self.shown_label:  # only changes are kept: a steady mood costs nothing
            self.history.append((now, label))
            self.shown_label = label
        self.seen = now
        self.latest = (seq, image, event, fps)
        self.frames += 1
        self.labels[label] = self.labels.get(label, 0) + 1

    def stage(self, histogram, stage: str):
        child = self.stages.get(stage)
        if child is None:
            child = self.stages[stage] = histogram.labels(stage=stage, source=self.name)
        return child

    def encoded(self, period: float, part: bool = False) -> bytes | None:
        """The JPEG of the newest frame (None before the first), or with `part` the same as one MJPEG part:
        encoded again only for a newer frame, and only once the last encoding is `period` old, so this
        source costs `1 / period` encodings a second at most however many viewers it has."""
        with self.lock:
            latest, cached = self.latest, self.jpeg
            if latest is None:
                return None
            now = time.perf_counter()
            if cached is None or (cached[0] != latest[0] and now - cached[2] >= period * 0.9):
                jpeg = cv2.imencode(".jpg", latest[1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.jpeg = cached = (latest[0], jpeg, now, head.encode() + jpeg + b"\r\n")
            return cached[3] if part else cached[1]

    def strip(self, now: float, window: float) -> list[list]:
        """[[seconds before now (<= 0), label or None], ...] over the last `window` s, oldest first: each
        change, the one in force when the window starts moved to its start, and a gap once frames stopped."""
        points = list(self.history)  # one C-level copy: publish may append meanwhile
        if self.seen is not None and now - self.seen > GAP_S and points and points[-1][1] is not None:
            points.append((self.seen, None))
        start = now - window
        return [[round(max(t, start) - now, 1), label] for i, (t, label) in enumerate(points)
                if i + 1 == len(points) or points[i + 1][0] > start]

    def fields(self, state: str, now: float, window: float) -> dict:
        """This source's part of the status beyond the pipeline's own: its newest event, mood, fps, strip."""
        latest = self.latest
        event = latest[2] if latest else None
        return dict(event=event, label=event.get("label") if event else None,
                    confidence=event.get("confidence") if event else None,
                    fps=round(latest[3] or 0.0, 2) if latest and state in UP_STATES else 0.0,
                    history=self.strip(now, window))


def implied(camera: Camera) -> dict:
    """The status of a source the run did not describe (a LiveView fed by hand): live while it sends."""
    return dict(name=camera.name, source=camera.name, kind="?", state="live", frames=camera.frames, dropped=0,
                reconnects=0, end_reason="", problem="")


class Metrics:
    """The per-source values, read from the view when scraped (so publish only counts in plain ints)."""

    def __init__(self, view):
        self.view = view

    def collect(self):
        families = dict(
            frames=CounterMetricFamily("catmood_frames", "Frames classified", labels=["source"]),
            labels=CounterMetricFamily("catmood_labels", "Frames per shown label", labels=["source", "label"]),
            dropped=CounterMetricFamily("catmood_frames_dropped", "Frames the source skipped or could not read",
                                        labels=["source"]),
            reconnects=CounterMetricFamily("catmood_source_reconnects", "Reconnections of the source",
                                           labels=["source"]),
            fps=GaugeMetricFamily("catmood_fps", "Frames per second (moving average)", labels=["source"]),
            up=GaugeMetricFamily("catmood_source_up", "1 while the source is live, else 0", labels=["source"]),
            viewers=GaugeMetricFamily("catmood_stream_viewers", "Open MJPEG streams", labels=["source"]))
        for info, camera in self.view.rows():
            name, live = info["name"], info.get("state") in UP_STATES
            latest = camera.latest if camera else None
            families["frames"].add_metric([name], camera.frames if camera else 0)
            for label, count in dict(camera.labels if camera else {}).items():
                families["labels"].add_metric([name, label], count)
            families["dropped"].add_metric([name], info.get("dropped", 0))
            families["reconnects"].add_metric([name], info.get("reconnects", 0))
            families["fps"].add_metric([name], (latest[3] or 0.0) if latest and live else 0.0)
            families["up"].add_metric([name], 1.0 if live else 0.0)
            families["viewers"].add_metric([name], camera.viewers if camera else 0)
        yield from families.values()


def down(infos: list[dict]) -> list[str]:
    """'name: state' of each source that should give frames and does not (names only: /healthz is open)."""
    return [f"{info['name']}: {info.get('state')}" for info in infos
            if info.get("state") not in UP_STATES + DONE_STATES]
