"""Many sources, one model: each source is read on its own thread (`Feed`), and `Scheduler.next_batch()`
takes the newest unprocessed frame of every source that has one, for one model call.

Isolation: a source's failure, stall or end touches only its own feed. Live sources keep only their newest
frame (what the model never got to is counted as dropped); files keep every frame in order, a few ahead.
The scheduler never waits for a source without a frame beyond `batch_timeout` (and never for one that is
not live), takes one frame per source per batch (so frames of a source stay in order and none starves), and
runs a watchdog: state changes become one line each, a source connected but wedged (no new frame for several
frame periods) is reconnected, and one with no frame for `give_up_s` is given up.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .sources import Frame, FrameSource

AHEAD = 4                 # frames a file source reads ahead of the model
WEDGED_PERIODS = 10       # a live source with no new frame for this many frame periods is reconnected ...
WEDGED_MIN_S = 3.0        # ... but never sooner than this (network jitter, keyframe waits)
MAX_WAIT_S = 0.02         # the longest default wait for the other cameras' frames
WATCH_S = 0.25            # the watchdog's period
CLOSE_WAIT_S = 2.0        # how long the end of a run waits for the sources' threads to let go


class Feed:
    """One source read on its own thread into `pending`. `state`: the source's own (connecting, live, lost)
    until it is done: ended, given up, failed, removed or stopped; `end_reason` says why."""

    def __init__(self, name: str, source: FrameSource, cond: threading.Condition, max_frames: int | None = None):
        self.name, self.source, self.cond, self.max_frames = name, source, cond, max_frames
        self.pending: deque[Frame] = deque()
        self.taken = self.dropped = self.restarts = 0
        self.done, self.final_state, self.end_reason = False, "", ""
        self.started = time.perf_counter()  # of this connection: a watchdog restart starts it again
        self.last_frame_at: float | None = None
        self.period: float | None = None
        self.shown_state = ""
        self.generation = 0
        self.threads: list[threading.Thread] = []

    @property
    def state(self) -> str:
        return self.final_state if self.done else self.source.state

    @property
    def exhausted(self) -> bool:
        return self.done and not self.pending

    def start(self) -> None:
        self.generation += 1
        thread = threading.Thread(target=self._pump, args=(self.generation,), name=f"source {self.name}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def _pump(self, generation: int) -> None:
        frames = iter(self.source)
        state, reason = "ended", None
        try:
            for frame in frames:
                with self.cond:
                    if generation != self.generation or self.done:
                        return
                    if not self.source.live:  # every frame, in order: wait for room
                        while len(self.pending) >= AHEAD and generation == self.generation and not self.done:
                            self.cond.wait(0.5)
                        if generation != self.generation or self.done:
                            return
                    elif self.pending:
                        self.pending.popleft()
                        self.dropped += 1
                    self.pending.append(frame)
                    self._arrived(time.perf_counter())
                    self.cond.notify_all()
        except Exception as exc:  # this source's error line, not the run's end
            state, reason = "failed", f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        finally:
            getattr(frames, "close", lambda: None)()
        with self.cond:
            if generation == self.generation:
                self.finish(state, reason or self.source.end_reason)

    def _arrived(self, now: float) -> None:
        """A frame came: its time, and the frame period as measured (MJPEG streams report 25 fps whatever
        they send, and cameras lower their rate in the dark)."""
        if self.last_frame_at is not None:
            interval = min(now - self.last_frame_at, 5.0)
            self.period = interval if self.period is None else 0.9 * self.period + 0.1 * interval
        self.last_frame_at = now

    def frame_period(self) -> float:
        """Seconds between this source's frames: measured, else what it says, else 15 fps."""
        return self.period or (1.0 / self.source.fps if self.source.fps else 1 / 15)

    def finish(self, state: str, reason: str) -> None:
        """Done (call with the condition held): no more frames will come; those pending are still taken."""
        if not self.done:
            self.done, self.final_state, self.end_reason = True, state, reason
            self.source.stop_reading()
            self.cond.notify_all()

    def take(self, waited_ms: float = 0.0) -> Frame:
        frame = self.pending.popleft()
        frame.capture_ms = waited_ms
        self.taken += 1
        if self.max_frames and self.taken >= self.max_frames:
            self.pending.clear()
            self.finish("ended", f"--max-frames {self.max_frames}")
        self.cond.notify_all()  # room for a file's next frame
        return frame

    def watch(self, now: float, give_up_s: float) -> str | None:
        """The watchdog's look at a live feed (condition held): a line to print, if any."""
        if self.done or not self.source.live:
            return None
        since = now - max(self.last_frame_at or 0.0, self.started)
        if since > give_up_s:
            problem = f" ({self.source.problem})" if self.source.problem else ""
            self.finish("given up", f"no frame for {give_up_s:g} s{problem}; gave up after "
                                    f"{self.source.reconnects + self.restarts} reconnect(s)")
            return f"{self.name}: given up: {self.end_reason}"
        if self.source.state == "live" and since > max(WEDGED_MIN_S, WEDGED_PERIODS * self.frame_period()):
            self.restarts += 1
            self.started = now  # the new connection gets its own time to deliver (the frame period stays)
            self.start()
            return f"{self.name}: no new frame for {since:.1f} s (wedged); reconnecting"
        return None

    def close(self, deadline: float | None = None) -> None:
        """Stop reading and release the device once its thread has let go of it (waited for until
        `deadline`, a perf_counter time; a thread stuck in a read is left behind, holding its device)."""
        deadline = deadline or time.perf_counter() + CLOSE_WAIT_S
        with self.cond:
            self.finish("stopped", "stopped")
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.perf_counter()))
        if not any(thread.is_alive() for thread in self.threads):
            self.source.close()


class Scheduler:
    """Feeds by name; `next_batch()` -> [(feed, frame)] or None once every feed is exhausted. `echo` prints
    the watchdog's lines."""

    def __init__(self, batch_timeout_s: float | None = None, give_up_s: float = 30.0,
                 max_frames: int | None = None, echo=print):
        self.cond = threading.Condition()
        self.feeds: dict[str, Feed] = {}
        self.retired: list[Feed] = []
        self.batch_timeout_s, self.give_up_s, self.max_frames, self.echo = batch_timeout_s, give_up_s, max_frames, echo
        self.closed = False
        self.watched = 0.0

    @classmethod
    def of(cls, sources: dict[str, FrameSource], options, echo=print) -> "Scheduler":
        """A scheduler reading `sources` ({name: source}) with `options`' (RuntimeOptions) limits."""
        timeout = None if options.batch_timeout_ms is None else options.batch_timeout_ms / 1000
        scheduler = cls(timeout, options.give_up_s, options.max_frames, echo)
        for name, source in sources.items():
            scheduler.add(name, source)
        return scheduler

    def add(self, name: str, source: FrameSource) -> Feed:
        feed = Feed(name, source, self.cond, self.max_frames)
        with self.cond:
            if name in self.feeds:  # a name used again (a camera removed and added back): a new feed
                self.retired.append(self.feeds[name])
            self.feeds[name] = feed
            self.cond.notify_all()
        feed.start()
        return feed

    def remove(self, name: str, reason: str = "removed from the sources file") -> None:
        with self.cond:
            feed = self.feeds.get(name)
            if feed is not None:
                feed.pending.clear()
                feed.finish("removed", reason)
        if feed is not None:  # off this thread: a source stuck in a read must not hold up the caller
            threading.Thread(target=feed.close, name=f"close {name}", daemon=True).start()

    def timeout(self) -> float:
        """How long a batch waits for the live sources that have no frame yet."""
        if self.batch_timeout_s is not None:
            return self.batch_timeout_s
        periods = [f.frame_period() for f in self.feeds.values() if f.source.live and not f.done]
        return min(MAX_WAIT_S, 0.25 * min(periods)) if periods else 0.0

    def next_batch(self) -> list[tuple[Feed, Frame]] | None:
        """Every source's next frame (its `capture_ms`: how long this call waited), or None at the end."""
        called = time.perf_counter()
        with self.cond:
            first_ready = None
            while not self.closed:
                self._watch()
                feeds = list(self.feeds.values())
                ready = [f for f in feeds if f.pending]
                if not ready and all(f.exhausted for f in feeds):
                    return None
                now = time.perf_counter()
                if ready:
                    first_ready = first_ready or now
                    waiting = [f for f in feeds if not f.pending and not f.done and f.source.live
                               and f.source.state == "live"]
                    left = first_ready + self.timeout() - now
                    if not waiting or left <= 0:
                        return [(f, f.take(waited_ms=(now - called) * 1000)) for f in ready]
                    self.cond.wait(min(left, WATCH_S))
                else:
                    self.cond.wait(WATCH_S)
            return None

    def _watch(self) -> None:
        now = time.perf_counter()
        if now - self.watched < WATCH_S / 2:
            return
        self.watched = now
        for feed in self.feeds.values():
            line = feed.watch(now, self.give_up_s)
            state = feed.state
            if line is None and state != feed.shown_state and feed.shown_state:
                problem = feed.source.problem
                line = f"{feed.name}: {state}" + (f" ({feed.end_reason or problem})" if state != "live" and
                                                  (feed.end_reason or problem) else "")
            feed.shown_state = state
            if line and state != "stopped":
                self.echo(line)

    def close(self) -> None:
        """Every source stops at once; all are waited for together, never one stuck source after another."""
        with self.cond:
            self.closed = True
            feeds = list(self.feeds.values())
            for feed in feeds:
                feed.finish("stopped", "stopped")
        deadline = time.perf_counter() + CLOSE_WAIT_S
        for feed in feeds:
            feed.close(deadline)
