"""Timing done carefully: warm-up, optional device synchronisation, every iteration timed, bounded by an
iteration count and a time budget; percentiles, not just means. Shared by the export report's latency
column and `catmood bench`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import CatmoodError


@dataclass
class LatencyStats:
    n: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    images_per_s: float


def percentiles(samples_ms) -> dict[str, float]:
    """p50, p90, p99 and mean of times (ms); zeros for none (a runtime stage that never ran)."""
    array = np.asarray(samples_ms, dtype=np.float64)
    if array.size == 0:
        return dict(p50=0.0, p90=0.0, p99=0.0, mean=0.0)
    p50, p90, p99 = (float(v) for v in np.percentile(array, [50, 90, 99]))
    return dict(p50=p50, p90=p90, p99=p99, mean=float(array.mean()))


def latency_stats(samples_ms, batch: int) -> LatencyStats:
    """Statistics of per-iteration times (ms) for `batch` images per iteration."""
    if len(samples_ms) == 0:
        raise CatmoodError("no timing samples")
    p = percentiles(samples_ms)
    return LatencyStats(len(samples_ms), p["mean"], p["p50"], p["p90"], p["p99"], float(np.min(samples_ms)),
                        batch * 1000.0 / p["mean"])


def time_it(run, *, warmup: int, iterations: int, max_seconds: float, sync=None, progress=None) -> list[float]:
    """Per-iteration wall times (ms) after `warmup` runs; stops at `iterations` or `max_seconds`.
    `progress()` is called after every run, outside the timed interval."""
    for _ in range(warmup):
        run()
        if progress is not None:
            progress()
    if sync:
        sync()
    samples = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < iterations and (time.perf_counter() < deadline or len(samples) < 3):
        start = time.perf_counter()
        run()
        if sync:
            sync()
        samples.append((time.perf_counter() - start) * 1000)
        if progress is not None:
            progress()
    return samples


def time_cuda_events(run, *, warmup: int, iterations: int, max_seconds: float) -> list[float]:
    """Per-iteration GPU times (ms) of `run` measured with CUDA events on the current stream: no host sync
    inside an iteration, so the time is the device's own (launch gaps included, transfers only if `run` has
    them); stops at `iterations` or `max_seconds` like `time_it`."""
    import torch

    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    samples = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < iterations and (time.perf_counter() < deadline or len(samples) < 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return samples
