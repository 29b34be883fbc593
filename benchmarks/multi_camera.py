"""N cameras in one `catmood run` vs one `catmood run` per camera: frames kept per camera, fps, CPU, memory.

Reproduce (from the repository root, on a quiet machine; about 7 minutes each on 2 cores with the default
N and 20 s clip; the dead camera's effect is the difference between a run with --dead and one without):

    for graph in float uint8; do for dead in "" --dead; do
        PYTHONPATH=$PWD .venv/bin/python benchmarks/multi_camera.py --graph $graph $dead; done; done
    PYTHONPATH=$PWD .venv/bin/python benchmarks/multi_camera.py --cameras 1 2 --seconds 4 --out /tmp/mc  # smoke

What it measures. N cameras (--cameras, default 1 2 4 8 12 16; 32 allowed): the even-numbered ones are copies
of one 640x480 15 fps clip of drawn cats (as in runtime_fps.py), played with `--realtime` (paced at 15 fps,
frames the runtime did not get to are dropped); the odd-numbered ones are local MJPEG-over-HTTP servers
(tests/mjpeg.py) serving the same frames at 15 fps, each ending after the clip's frame count. The model is
tf_efficientnet_lite0, random-init (weights do not change speed), exported to ONNX at 224 px with a float32
input (--graph float) or a uint8 frame input (--graph uint8). For each N, back to back (which mode goes first
alternates with N, so drift touches both alike): once one `catmood run` holding all N sources ("one"), once
N `catmood run` processes with one source each ("separate"). Per configuration:
  - share of every camera = frames classified / frames offered. Offered: a file's frame count (checked
    against classified + dropped of the run's summary); an MJPEG camera's frames written to the runtime's
    reader connection (the probe connection catmood opens first is not counted). Worst camera and mean.
  - aggregate fps = frames classified by all cameras / clip seconds (N x 15 fps are offered).
  - CPU seconds of the catmood process(es) while the cameras play (/proc/PID/stat utime + stime).
  - peak RSS of each process (VmHWM, sampled every 0.2 s and before it is stopped), summed over the
    processes of a separate run.
  - one-process runs: how many frames each model call held (the summary's `batches`).
Fair start: every process has started and loaded its model before any camera plays. Each one reads a
--sources file that first names only a placeholder (a port that refuses connections); once every process
is running, the cameras are written into the files and then the placeholder is taken out. So the start-up
of N processes on the same cores costs no camera frames; CPU is counted from then on.
--dead adds a camera that accepts connections and never answers to every configuration (its own process in
separate runs, counted in their CPU and memory but not in the shares); --give-up is far longer than a run,
so it is being retried throughout (its final state is recorded). A run is stopped with SIGINT, which writes
its summary, once every file has ended and every MJPEG server has served its frames (plus 2 s).

Targets (the project's issue), on a 2-core machine: one process keeps >= 99% of the frames of every camera
for at least 3x as many cameras as separate processes do (the ratio measured in the same run) with the float
graph, and 16 cameras with the uint8 graph, in at most a quarter of the memory of N processes, with the dead
camera among them changing none of this. Writes results/multi_camera_<graph>[_dead].{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from catmood.data.synth import draw_face, render_background, sample_appearance, sample_pose, typical_expression
from catmood.metadata import read_onnx_metadata
from catmood.tables import format_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mjpeg_cameras import ClipCamera, encode_clip, reader_frames, refusing_url, silent_camera  # noqa: E402
from runtime_fps import CLASSES, make_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tf_efficientnet_lite0"
FPS = 15.0
HOLD = "hold"               # the placeholder source every run starts with
GRACE_S = 2.0               # after the last frame was offered, for the runs to classify it
KEEP = 0.99                 # a camera "keeps its frames" at this share
GRAPHS = {"float": "float32", "uint8": "uint8", "int8": "float32"}  # int8: Q/DQ from the float graph
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------- inputs

def make_clip(path: Path, seconds: float, fps: float = FPS) -> Path:
    """runtime_fps.make_video at `fps` for `seconds`: a drawn cat on a background, its mood changing every 2 s."""
    rng = np.random.default_rng(0)
    appearance, background = sample_appearance(rng), render_background(rng, 640, 480)
    pose = sample_pose(rng, 640, 480)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for i in range(round(seconds * fps)):
        image = background.copy()
        draw_face(image, appearance, pose, typical_expression(CLASSES[int(i // (2 * fps)) % 4]))
        writer.write(image)
    writer.release()
    return path


@dataclass
class Camera:
    name: str
    kind: str                      # "file", "mjpeg" or "dead"
    target: str                    # what the sources file says
    server: object | None = None   # the MJPEG server (mjpeg, dead)


def build_cameras(n: int, clip: Path, jpegs: list[bytes], dead: bool, folder: Path) -> list[Camera]:
    """n cameras, files and MJPEG servers alternating (file first), and the dead one if asked. Every file
    camera is its own link to the clip (a sources file lists a target once)."""
    cameras = []
    for i in range(n):
        if i % 2 == 0:
            link = folder / f"file{i}.mp4"
            if not link.exists():
                link.symlink_to(clip)
            cameras.append(Camera(f"file{i}", "file", str(link)))
        else:
            server = ClipCamera(jpegs, FPS, max_frames=len(jpegs) + 1).start()  # + the probe's frame
            cameras.append(Camera(f"mjpeg{i}", "mjpeg", server.url, server))
    if dead:
        server = silent_camera()
        cameras.append(Camera("dead", "dead", server.url, server))
    return cameras


def stop_servers(cameras: list[Camera]) -> None:
    for camera in cameras:
        if camera.server is not None:
            camera.server.stop()


def write_sources(path: Path, entries: list[tuple[str, str]]) -> None:
    """The sources file, replaced at once (the run sees a whole file or the old one)."""
    part = path.with_suffix(".part")
    part.write_text("".join(f"{name}={target}\n" for name, target in entries))
    os.replace(part, path)


# ------------------------------------------------------------------------------------------ processes

class CatmoodProcess:
    """One `catmood run` on a sources file that names only the placeholder until `play()`; its output
    lines, CPU seconds and, once reaped, its resource usage."""

    def __init__(self, label: str, model: Path, folder: Path, cameras: list[Camera], give_up: float, hold: str):
        self.cameras, self.hold = cameras, hold
        self.sources, self.summary = folder / f"{label}.sources", folder / f"{label}.json"
        write_sources(self.sources, [(HOLD, hold)])
        command = [sys.executable, "-m", "catmood", "run", str(model), "--sources", str(self.sources),
                   "--realtime", "--give-up", f"{give_up:g}", "--summary", str(self.summary)]
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=env, cwd=folder)
        self.lines: list[str] = []
        self.rusage = None
        self.hwm_kib = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def said(self, start: str) -> bool:
        return any(line.startswith(start) for line in list(self.lines))

    @property
    def running(self) -> bool:
        return self.said("running ")

    def added_all(self) -> bool:
        return all(self.said(f"{camera.name}: added") for camera in self.cameras)

    def play(self, with_hold: bool) -> None:
        """Name the cameras in the sources file (with the placeholder still there, or without it)."""
        entries = [(camera.name, camera.target) for camera in self.cameras]
        write_sources(self.sources, ([(HOLD, self.hold)] if with_hold else []) + entries)

    def reap(self, block: bool = False) -> bool:
        """True once the process has exited (its rusage kept)."""
        if self.rusage is None:
            pid, status, rusage = os.wait4(self.popen.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return False
            self.rusage, self.popen.returncode = rusage, os.waitstatus_to_exitcode(status)
        return True

    def cpu_seconds(self) -> float:
        if self.rusage is not None:
            return self.rusage.ru_utime + self.rusage.ru_stime
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT (the run writes its summary), then SIGKILL if it is still there after `timeout`."""
        if not self.reap():
            self.sample_memory()
            self.popen.send_signal(signal.SIGINT)
            deadline = time.monotonic() + timeout
            while not self.reap() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.reap():
                self.popen.kill()
                self.reap(block=True)
        self.reader.join(5.0)

    def sample_memory(self) -> None:
        """Keep VmHWM, the peak resident memory of the process's own program. (Not wait4's ru_maxrss: a child
        forked from this benchmark counts the benchmark's memory it had before exec.)"""
        try:
            status = Path(f"/proc/{self.popen.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))

    def peak_rss_mib(self) -> float:
        return self.hwm_kib / 1024

    def result(self) -> dict | None:
        try:
            return json.loads(self.summary.read_text())
        except (OSError, ValueError):
            return None

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.lines[-lines:])


def wait_until(predicate, timeout: float, what: str, processes: list[CatmoodProcess]) -> None:
    """Poll `predicate` until it holds; a process that exits first, or the timeout, is an error."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for process in processes:
            if process.reap():
                raise RuntimeError(f"catmood run exited ({process.popen.returncode}) while waiting for {what}:\n"
                                   + process.tail())
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def start_cameras(processes: list[CatmoodProcess]) -> tuple[float, dict]:
    """Once every process has loaded its model, the cameras go into the sources files, then the placeholder
    goes out. Returns when the cameras were named (perf_counter) and each process's CPU seconds then."""
    wait_until(lambda: all(p.running for p in processes), 120 + 15 * len(processes),
               "every catmood run to load its model", processes)
    started, cpu = time.perf_counter(), {p: p.cpu_seconds() for p in processes}
    for process in processes:
        process.play(with_hold=True)  # taking the placeholder out first could leave a run with no source
    wait_until(lambda: all(p.added_all() for p in processes), 60, "the cameras to be added", processes)
    for process in processes:
        process.play(with_hold=False)
    return started, cpu


def camera_done(camera: Camera, process: CatmoodProcess) -> bool:
    if camera.kind == "file":
        return process.said(f"{camera.name}: ended") or process.reap()
    if camera.kind == "mjpeg":
        return camera.server.finished
    return True  # the dead camera never ends


def wait_played(processes: list[CatmoodProcess], deadline: float) -> bool:
    """Wait until every camera has offered all its frames; False if the deadline came first."""
    while time.perf_counter() < deadline:
        watch(processes)
        if all(camera_done(c, p) for p in processes for c in p.cameras):
            return True
        time.sleep(0.2)
    return False


def watch(processes: list[CatmoodProcess], seconds: float = 0.0) -> None:
    """Sample the processes' peak memory and reap those that ended, every 0.2 s for `seconds` (once for 0)."""
    end = time.perf_counter() + seconds
    while True:
        for process in processes:
            if not process.reap():
                process.sample_memory()
        if time.perf_counter() >= end:
            return
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------- measuring

def measure(mode: str, cameras: list[Camera], model: Path, folder: Path, args, frames: int) -> dict:
    """One configuration: `cameras` in one process ("one") or one process each ("separate")."""
    groups = [cameras] if mode == "one" else [[camera] for camera in cameras]
    hold = refusing_url()
    processes, launched = [], time.perf_counter()
    try:
        for i, group in enumerate(groups):
            processes.append(CatmoodProcess(f"{mode}{i}", model, folder, group, args.give_up, hold))
        started, cpu_before = start_cameras(processes)
        played = wait_played(processes, started + 2 * args.seconds + 60)
        window = time.perf_counter() - started
        cpu = sum(p.cpu_seconds() - cpu_before[p] for p in processes)
        watch(processes, GRACE_S)
    finally:
        for process in processes:
            process.stop()
    shares = camera_shares(processes, frames)
    batches = Counter()
    for process in processes:
        batches.update({int(k): v for k, v in ((process.result() or {}).get("batches") or {}).items()})
    live = [s["share"] for s in shares if s["kind"] != "dead"]
    return dict(mode=mode, n=len(live), processes=len(processes), worst=min(live), mean=sum(live) / len(live),
                fps=sum(s["classified"] for s in shares if s["kind"] != "dead") / args.seconds,
                cpu_s=cpu, peak_rss_mib=sum(p.peak_rss_mib() for p in processes), window_s=window,
                startup_s=started - launched,
                played=played, batches=dict(sorted(batches.items())), cameras=shares,
                exit_codes=[p.popen.returncode for p in processes],
                load_average=os.getloadavg())


def camera_shares(processes: list[CatmoodProcess], frames: int) -> list[dict]:
    """Per camera: classified, dropped, offered, share, and what its run's summary says of it."""
    rows = []
    for process in processes:
        summary = process.result()
        sources = {s["name"]: s for s in (summary or {}).get("sources", [])}
        for camera in process.cameras:
            source = sources.get(camera.name, {})
            classified, dropped = source.get("frames", 0), source.get("dropped", 0)
            offered = frames if camera.kind == "file" else reader_frames(camera.server) if camera.kind == "mjpeg" else 0
            row = dict(name=camera.name, kind=camera.kind, classified=classified, dropped=dropped, offered=offered,
                       share=classified / offered if offered else 0.0, reconnects=source.get("reconnects"),
                       state=source.get("state"), end_reason=source.get("end_reason"))
            if camera.kind == "file":
                row["accounted"] = classified + dropped == frames
            if summary is None:
                row["error"] = "no summary: " + process.tail(5)
            rows.append(row)
    return rows


def run_configuration(mode: str, n: int, inputs: dict, args) -> dict:
    folder = inputs["tmp"] / f"n{n}-{mode}"
    folder.mkdir()
    cameras = build_cameras(n, inputs["clip"], inputs["jpegs"], args.dead, inputs["tmp"])
    began = time.perf_counter()
    try:
        record = measure(mode, cameras, inputs["model"], folder, args, len(inputs["jpegs"]))
    finally:
        stop_servers(cameras)
    record["took_s"] = time.perf_counter() - began
    return record


# ------------------------------------------------------------------------------------------ report

def batch_text(batches: dict) -> str:
    """'mean 7.6 (8: 120, 7: 30, 6: 2)': frames per model call, the three commonest sizes with their calls."""
    calls = sum(batches.values())
    if not calls:
        return ""
    mean = sum(size * count for size, count in batches.items()) / calls
    common = sorted(batches.items(), key=lambda item: -item[1])[:3]
    return f"mean {mean:.1f} ({', '.join(f'{size}: {count}' for size, count in common)})"


def progress_line(record: dict) -> str:
    problems = [c["name"] for c in record["cameras"] if c.get("accounted") is False or c.get("error")]
    dead = next((c["state"] for c in record["cameras"] if c["kind"] == "dead"), None)
    dead = dead and ("still retried at the end" if dead in ("stopped", "connecting") else dead)
    return (f"N={record['n']:<2} {record['mode']:<8} worst {record['worst']:6.1%} mean {record['mean']:6.1%} "
            f"{record['fps']:6.1f} fps  CPU {record['cpu_s']:6.1f} s  RSS {record['peak_rss_mib']:7.0f} MiB  "
            f"{record['processes']} process(es) ready in {record['startup_s']:.0f} s, {record['took_s']:.0f} s in all"
            + (f"  dead camera: {dead}" if dead else "") + ("" if record["played"] else "  [TIMED OUT]")
            + (f"  [check: {', '.join(problems)}]" if problems else ""))


def table(records: list[dict]) -> str:
    rows = [[r["n"], r["mode"], f"{r['worst']:.1%}", f"{r['mean']:.1%}", f"{r['fps']:.1f}", f"{r['cpu_s']:.1f}",
             f"{r['peak_rss_mib']:.0f}", batch_text(r["batches"]) if r["mode"] == "one" else ""] for r in records]
    return format_table(["N", "mode", "worst camera", "mean share", "aggregate fps", "CPU s", "peak RSS MiB",
                         "frames per model call (calls)"], rows)


def verdicts(records: list[dict]) -> list[str]:
    """Per N: which mode kept >= 99% of every camera's frames, and the memory ratio; then the capacities."""
    by_n = {}
    for r in records:
        by_n.setdefault(r["n"], {})[r["mode"]] = r
    lines, capacity, alive = [], {"one": 0, "separate": 0}, {"one": True, "separate": True}
    for n in sorted(by_n):
        modes = by_n[n]
        kept = {m: r["worst"] >= KEEP for m, r in modes.items()}
        for mode, ok in kept.items():
            alive[mode] = alive[mode] and ok
            capacity[mode] = n if alive[mode] else capacity[mode]
        both = "one" in modes and "separate" in modes
        memory = (f"; memory one/separate {modes['one']['peak_rss_mib'] / modes['separate']['peak_rss_mib']:.2f}"
                  if both else "")
        met = [m for m in ("one", "separate") if kept.get(m)]
        lines.append(f"N={n}: >= {KEEP:.0%} of every camera's frames: {' and '.join(met) or 'neither'}{memory}")
    ratio = (f"{capacity['one'] / capacity['separate']:.1f}x" if capacity["separate"] else "n/a (separate kept none)")
    lines.append(f"most cameras with every camera >= {KEEP:.0%} (every smaller N too): one process {capacity['one']}, "
                 f"separate processes {capacity['separate']}; ratio {ratio} (target >= 3x)")
    return lines


def environment(args, spec) -> str:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start, onnxruntime "
            f"{onnxruntime.__version__}, opencv {cv2.__version__}; {MODEL} {spec.input_size} px, {args.graph} graph; "
            f"clip {args.seconds:g} s at {FPS:g} fps, 640x480; dead camera: {'yes' if args.dead else 'no'}")


def write_report(records: list[dict], args, env: str) -> None:
    text, lines = table(records), verdicts(records)
    print(f"\n{env}\n{text}\n" + "\n".join(lines))
    name = f"multi_camera_{args.graph}" + ("_dead" if args.dead else "")
    command = "PYTHONPATH=$PWD .venv/bin/python benchmarks/multi_camera.py " + " ".join(sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.md").write_text(f"`{command}`\n\n{env}\n\n```\n{text}\n```\n\n"
                                         + "\n".join(f"- {line}" for line in lines) + "\n")
    (args.out / f"{name}.json").write_text(json.dumps(dict(command=command, environment=env, verdicts=lines,
                                                           results=records), indent=2))
    print(f"wrote {args.out / name}.md and .json")


# -------------------------------------------------------------------------------------------- main

def make_int8(fp32: Path, tmp: Path) -> Path:
    """The INT8 (Q/DQ) file `catmood export --int8` writes, calibrated on drawn cat faces as int8_latency.py
    does; weights rounded to nearest (the rounding changes which integers, not how fast they run)."""
    from catmood.export.int8 import Int8Quantizer
    from catmood.export.options import Int8Options
    from int8_latency import calibration_paths

    images = calibration_paths(None, tmp)
    return Int8Quantizer(images, Int8Options(weight_rounding="nearest"))(fp32, tmp / f"{fp32.stem}.int8.onnx")


def prepare(tmp: Path, args) -> dict:
    clip = make_clip(tmp / "clip.mp4", args.seconds)
    jpegs = encode_clip(clip)
    model = make_onnx(MODEL, tmp, GRAPHS[args.graph])
    if args.graph == "int8":
        model = make_int8(model, tmp)
    spec = read_onnx_metadata(model)[0]
    return dict(tmp=tmp, clip=clip, jpegs=jpegs, model=model, spec=spec)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16],
                        help="the N to measure (default %(default)s; up to 32)")
    parser.add_argument("--graph", choices=sorted(GRAPHS), default="float",
                        help="float: float32 input; uint8: the frame goes in as uint8; int8: the INT8 (Q/DQ) "
                             "file of catmood export --int8 (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length in seconds (default %(default)s)")
    parser.add_argument("--dead", action="store_true", help="add a camera that never answers to every configuration")
    parser.add_argument("--modes", nargs="+", choices=("one", "separate"), default=["one", "separate"],
                        help="which configurations to run (default both)")
    parser.add_argument("--give-up", type=float, default=None,
                        help="catmood run --give-up (default: 10 x --seconds + 300, beyond any run)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if any(not 1 <= n <= 32 for n in args.cameras):
        parser.error("--cameras: each N must be 1 to 32")
    args.give_up = args.give_up or 10 * args.seconds + 300
    return args


def main() -> None:
    # Started in the background by a shell, this process ignores SIGINT, and so would every catmood run it
    # starts: the SIGINT that stops a run (and makes it write its summary) would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
    began = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="multi_camera_") as tmp:
        inputs = prepare(Path(tmp), args)
        env = environment(args, inputs["spec"])
        print(env, flush=True)
        for k, n in enumerate(args.cameras):
            for mode in [m for m in (("one", "separate") if k % 2 == 0 else ("separate", "one")) if m in args.modes]:
                records.append(run_configuration(mode, n, inputs, args))
                print(progress_line(records[-1]), flush=True)
    write_report(records, args, env)
    print(f"took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
