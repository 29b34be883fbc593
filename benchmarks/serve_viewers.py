"""What watching costs: the runtime pipeline's fps with `--serve` and 0 vs 20 MJPEG viewers on loopback.

Reproduce:  PYTHONPATH=$PWD .venv/bin/python benchmarks/serve_viewers.py [--models tf_efficientnet_lite0 resnet18]
            [--viewers 20] [--frames 600] [--rounds 3]
Target (issue 15): 20 concurrent viewers cost the pipeline at most 10% fps. Each round runs the same 640x480
video (not paced: as fast as the pipeline goes) without --serve, with --serve and no viewer, and with
--serve and N viewers, interleaved so that a shared machine's drift falls on every mode alike; the table
gives the median per mode and the median per-round cost. The viewers run in their own process (as browsers
would) and read and discard the stream; the pipeline's frames only start flowing once all are connected.
fps is taken between the first and the last result, so the wait for viewers is not counted.

On a shared machine wall-clock fps drifts with other people's load by more than the effect measured, so the
CPU time the process spends per frame (pipeline and server threads; the viewers' process apart) is given
too: on a machine whose cores are all busy, fps falls by the share that CPU time per frame rises.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from catmood.runtime.options import RuntimeOptions
from catmood.runtime.pipeline import run_pipeline
from catmood.runtime.sources import FrameSource, open_source
from catmood.tables import format_table

sys.path.insert(0, str(Path(__file__).parent))
from runtime_fps import make_onnx, make_video  # noqa: E402  (the same video and exported graphs)

VIEWER = r"""
import http.client, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
received = [0] * n
def watch(i):
    connection = http.client.HTTPConnection(host, port, timeout=120)
    connection.request("GET", "/stream.mjpg")
    response = connection.getresponse()
    while chunk := response.read1(1 << 16):
        received[i] += len(chunk)
threads = [threading.Thread(target=watch, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(received))
"""


class ViewedSource(FrameSource):
    """The video, held back until `viewers` MJPEG clients (another process) are connected to the live view."""

    def __init__(self, video: Path, viewers: int, url: dict):
        self.inner = open_source(str(video))
        super().__init__(self.inner.name)
        self.kind, self.fps, self.viewers, self.url, self.process = "video", self.inner.fps, viewers, url, None

    def __iter__(self):
        if self.viewers:
            host, port = self.url["url"].split("//")[1].rstrip("/").rsplit(":", 1)
            self.process = subprocess.Popen([sys.executable, "-c", VIEWER, host, port, str(self.viewers)],
                                            stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 60
            while _gauge(self.url["url"], "catmood_stream_viewers") < self.viewers:
                if time.monotonic() > deadline:
                    raise RuntimeError("the viewers did not connect")
                time.sleep(0.05)
        yield from self.inner

    def close(self) -> None:
        self.inner.close()

    def received_bytes(self) -> int:
        return int(self.process.communicate(timeout=120)[0]) if self.process else 0


def _cpu_seconds(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _gauge(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "metrics", timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
    return next(f.samples[0].value for f in families if f.name == name)


def one_run(model: Path, video: Path, viewers: int | None) -> dict:
    """viewers None: no --serve at all."""
    url, stamps = {}, []
    source = ViewedSource(video, viewers or 0, url)
    options = RuntimeOptions() if viewers is None else RuntimeOptions(serve="127.0.0.1:0")

    def echo(line):
        if line.startswith("live view: "):
            url["url"] = line.split()[2]

    cpu, viewers_cpu = _cpu_seconds(resource.RUSAGE_SELF), _cpu_seconds(resource.RUSAGE_CHILDREN)
    summary = run_pipeline(model, source, options, device="cpu", echo=echo,
                           on_result=lambda r: stamps.append(time.perf_counter()))
    cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu  # the viewers' wait included: they idle until frames flow
    received = source.received_bytes()
    seconds = stamps[-1] - stamps[0]
    return dict(fps=(len(stamps) - 1) / seconds, frames=summary.frames, seconds=seconds,
                cpu_ms_per_frame=1000 * cpu / summary.frames,
                viewers_cpu_ms_per_frame=1000 * (_cpu_seconds(resource.RUSAGE_CHILDREN) - viewers_cpu) / summary.frames,
                viewer_mb_s=received / max(viewers or 1, 1) / seconds / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tf_efficientnet_lite0", "resnet18"])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    modes = (("no --serve", None), ("--serve, 0 viewers", 0), (f"--serve, {args.viewers} viewers", args.viewers))
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(tmp / "clip.mp4", args.frames)
        for name in args.models:
            model = make_onnx(name, tmp, "uint8")
            runs = {label: [] for label, _ in modes}
            for round_ in range(args.rounds):
                for label, viewers in modes:
                    runs[label].append(one_run(model, video, viewers))
                    print(f"{name} round {round_ + 1} {label}: {runs[label][-1]['fps']:.1f} fps", flush=True)
            zero, full = runs[modes[1][0]], runs[modes[2][0]]
            cost = statistics.median(1 - f["fps"] / z["fps"] for z, f in zip(zero, full))
            cpu_cost = statistics.median(f["cpu_ms_per_frame"] / z["cpu_ms_per_frame"] - 1 for z, f in zip(zero, full))
            for label, _ in modes:
                median = {k: statistics.median(r[k] for r in runs[label]) for k in runs[label][0]}
                last = label == modes[2][0]
                rows.append([name, label, f"{median['fps']:.1f}", f"{median['cpu_ms_per_frame']:.2f}",
                             f"{median['viewers_cpu_ms_per_frame']:.2f}" if last else "",
                             f"{median['viewer_mb_s']:.2f}" if last else "", f"{cost:+.1%}" if last else "",
                             f"{cpu_cost:+.1%}" if last else ""])
            records.append(dict(model=name, runs=runs, fps_cost=cost, cpu_cost=cpu_cost))
    table = format_table(["model", "mode", "fps (median)", "CPU ms/frame", "viewers' CPU ms/frame",
                          "MB/s per viewer", "fps cost vs 0 viewers", "CPU/frame cost vs 0 viewers"], rows)
    env = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
           f"{os.getloadavg()[0]:.1f}, serve fps {RuntimeOptions.default('serve_fps')}, {args.frames} frames x "
           f"{args.rounds} rounds")
    print(env)
    print(table)
    (args.out / "serve_viewers.json").write_text(json.dumps(dict(environment=env, results=records), indent=2))
    (args.out / "serve_viewers.md").write_text(f"{env}\n\n```\n{table}\n```\n")


if __name__ == "__main__":
    main()
