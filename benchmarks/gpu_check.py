"""A GPU check in one command: PyTorch CUDA latency (FP32, FP16, CUDA graphs; batch 1 and 8) of the models
catmood deploys, training images/s, ONNX Runtime GPU and TensorRT rows where installed, and the runtime on a
generated video; written with the GPU's name, driver and versions.

Reproduce (repo root):  PYTHONPATH=$PWD python3 benchmarks/gpu_check.py [--out benchmarks/results]
CPU smoke run:          PYTHONPATH=$PWD python3 benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check
Models are random-initialised for latency (weights do not change speed; nothing is downloaded); training and
the runtime use a catmood run on a synthesised dataset. Every measurement is bounded by iterations and time,
and sections past `--budget` seconds are skipped (with the reason) so the whole check ends in about 10 min.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from catmood.backends.onnxruntime_backend import CPU, CUDA, PREFERENCE, TENSORRT, OnnxRuntimeBackend
from catmood.backends.torch_backend import TorchBackend
from catmood.checkpoint import Checkpoint
from catmood.data.synth import DEFAULT_MOODS, render_mood_video, synthesize_dataset
from catmood.errors import CatmoodError
from catmood.export.onnx import export_onnx
from catmood.fileio import atomic_write_json, atomic_write_text
from catmood.bench.measure import environment, make_input
from catmood.runtime.options import RuntimeOptions
from catmood.runtime.pipeline import run_pipeline
from catmood.timing import latency_stats, time_cuda_events, time_it
from catmood.training.config import resolve_config
from catmood.training.devices import amp_dtype
from catmood.training.loop import train
from catmood.training.models import create_model

MODELS = ("resnet18", "tf_efficientnet_lite0", "mobilenetv3_large_100", "convnext_tiny")
QUIET = dict(echo=lambda *a: None)


@dataclass
class Settings:
    """Full run on a GPU; `quick()` is the smoke run a CPU finishes in a few minutes."""

    device: str = "cuda"
    models: tuple[str, ...] = MODELS
    batches: tuple[int, ...] = (1, 8)
    warmup: int = 10
    iterations: int = 200
    max_seconds: float = 3.0
    per_class: int = 200          # synthesised training images per mood
    train_size: int = 224
    train_batch: int = 64
    epochs: int = 3
    video_script: tuple = (("calm", 3.0), ("pleased", 3.0), ("alarmed", 3.0), ("angry", 3.0))
    video_size: tuple[int, int] = (640, 480)
    budget_s: float = 540.0

    def quick(self) -> "Settings":
        return replace(self, warmup=1, iterations=3, max_seconds=0.5, per_class=6, train_size=64, train_batch=8,
                       epochs=1, video_script=(("calm", 1.0), ("angry", 1.0)), video_size=(320, 240))


class Check:
    """Collects rows per section, prints progress, skips sections past the time budget."""

    def __init__(self, settings: Settings):
        self.settings, self.started = settings, time.perf_counter()
        self.sections: dict[str, list[dict]] = {}
        self.skipped: list[dict] = []

    def say(self, message: str) -> None:
        print(f"[gpu_check {time.perf_counter() - self.started:6.1f}s] {message}", flush=True)

    def add(self, section: str, **row) -> None:
        self.sections.setdefault(section, []).append(row)

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append(dict(what=what, reason=reason))
        self.say(f"skipped {what}: {reason}")

    def within_budget(self, what: str) -> bool:
        if time.perf_counter() - self.started < self.settings.budget_s:
            return True
        self.skip(what, f"the {self.settings.budget_s:.0f} s budget is spent")
        return False


def stats_row(samples_ms, batch: int) -> dict:
    s = latency_stats(samples_ms, batch)
    return dict(p50_ms=round(s.p50_ms, 3), p99_ms=round(s.p99_ms, 3), images_per_s=round(s.images_per_s, 1), n=s.n)


def torch_latency(check: Check) -> None:
    """Per model, precision and batch: the model's own time (CUDA events on a GPU, wall time on a CPU) and
    the wall time a caller sees with the copies in and out."""
    st = check.settings
    cuda = st.device == "cuda"
    variants = [("fp32", dict(fp16=False)), ("fp16", dict(fp16=True)), ("fp16 + CUDA graph", dict(cuda_graphs=True))]
    if not cuda:
        check.skip("PyTorch fp16 and CUDA-graph rows", "they need a CUDA GPU (--device cpu)")
        variants = variants[:1]
    for name in st.models:
        if not check.within_budget(f"PyTorch latency of {name}"):
            return
        created = create_model(name, DEFAULT_MOODS, pretrained=False)
        ckpt = Checkpoint(None, created.spec, created.model.state_dict())
        for label, kwargs in variants:
            backend = TorchBackend(ckpt, device=st.device, **kwargs)
            for batch in st.batches:
                host = make_input(ckpt.spec, batch)
                x = backend.device_input(host)
                bounds = dict(warmup=st.warmup, iterations=st.iterations, max_seconds=st.max_seconds)
                if cuda:
                    own = time_cuda_events(lambda: backend.forward_device(x), **bounds)
                    wall = time_it(lambda: backend.logits(host), sync=torch.cuda.synchronize, **bounds)
                else:  # on the CPU the model's own time is the wall time
                    own = wall = time_it(lambda: backend.logits(host), **bounds)
                row = dict(model=name, precision=label, batch=batch, timer="CUDA events" if cuda else "wall",
                           **stats_row(own, batch), wall_p50_ms=round(latency_stats(wall, batch).p50_ms, 3))
                check.add("pytorch", **row)
                check.say(f"{name:<24} {label:<18} batch {batch}: p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} "
                          f"ms ({row['timer']}), {row['images_per_s']:.0f} img/s")
            del backend
        if cuda:
            torch.cuda.empty_cache()


def training(check: Check, work: Path) -> Path | None:
    """catmood's own training on a synthesised dataset (images/s of its last epoch, data loading included),
    and the bare forward/backward step with the same AMP setting (the GPU's ceiling)."""
    st = check.settings
    if not check.within_budget("training"):
        return None
    synthesize_dataset(work / "data", per_class=st.per_class, size=st.train_size)
    settings = dict(data=str(work / "data"), out=str(work / "run"), model="resnet18", pretrained=False,
                    epochs=st.epochs, batch_size=st.train_batch, input_size=st.train_size, device=st.device)
    if st.device == "cpu":
        settings["workers"] = 0
    check.say(f"training resnet18 (random init) for {st.epochs} epoch(s) on {4 * st.per_class} synthesised images")
    result = train(resolve_config("edge", None, settings), progress=False, **QUIET)
    last = result.history[-1]
    check.add("training", what="catmood train (edge recipe, resnet18, data loading included)",
              batch=st.train_batch, size=st.train_size, images_per_s=round(last["images_per_s"], 1))
    check.say(f"catmood train: {last['images_per_s']:.1f} img/s (epoch {len(result.history)})")
    device = torch.device(st.device)
    model = create_model("resnet18", DEFAULT_MOODS, pretrained=False).model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(st.train_batch, 3, st.train_size, st.train_size, device=device)
    y = torch.randint(0, len(DEFAULT_MOODS), (st.train_batch,), device=device)
    dtype = amp_dtype(device, True)

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    samples = time_it(step, warmup=st.warmup, iterations=st.iterations, max_seconds=st.max_seconds,
                      sync=torch.cuda.synchronize if device.type == "cuda" else None)
    row = stats_row(samples, st.train_batch)
    check.add("training", what=f"forward+backward+AdamW step ({dtype or 'fp32'}, synthetic tensors)",
              batch=st.train_batch, size=st.train_size, images_per_s=row["images_per_s"])
    check.say(f"train step: {row['images_per_s']:.1f} img/s")
    return result.best_path


def onnxruntime_rows(check: Check, onnx_path: Path) -> list:
    """Each provider the way `catmood run` opens it; start time includes a TensorRT engine build."""
    import onnxruntime as ort

    st, opened = check.settings, []
    available = ort.get_available_providers()
    chains = {TENSORRT: list(PREFERENCE), CUDA: [CUDA, CPU], CPU: [CPU]}
    for provider, chain in chains.items():
        what = f"ONNX Runtime {provider}"
        if provider not in available:
            check.skip(what, f"not in this onnxruntime {ort.__version__} (available: {', '.join(available)})")
            continue
        if provider != CPU and st.device == "cpu":
            check.skip(what, "--device cpu")
            continue
        if not check.within_budget(what):
            continue
        started = time.perf_counter()
        try:
            classifier = OnnxRuntimeBackend(onnx_path, providers=chain)
        except CatmoodError as exc:
            check.skip(what, str(exc))
            continue
        opened.append(classifier)
        measure_classifier(check, "onnxruntime", classifier, start_s=time.perf_counter() - started)
    return opened


def tensorrt_rows(check: Check, checkpoint: Path, work: Path) -> list:
    """Engines as `catmood export --trt` builds and gates them here, run plainly and as CUDA graphs."""
    from catmood.backends.tensorrt_backend import TensorRTBackend
    from catmood.export.pipeline import export_checkpoint
    from catmood.export.tensorrt import tensorrt_unavailable

    reason = tensorrt_unavailable()
    if reason or not check.within_budget("TensorRT engine"):
        if reason:
            check.skip("TensorRT engine", reason)
        return []
    started = time.perf_counter()
    try:
        report = export_checkpoint(checkpoint, work / "trt", onnx=True, fp16=False, trt=True, latency=False, **QUIET)
        row = next(r for r in report.results if r.format == "tensorrt-fp16")
        check.add("tensorrt gate", agreement=row.parity.agreement, max_logit_diff=row.parity.max_logit_diff,
                  passed=row.passed, notes="; ".join(row.notes))
        engines = [TensorRTBackend(row.path), TensorRTBackend(row.path, cuda_graphs=True)]
    except Exception as exc:  # a failed build is a finding to report, not a reason to lose the other rows
        check.skip("TensorRT engine", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return []
    for engine in engines:
        measure_classifier(check, "tensorrt", engine, start_s=time.perf_counter() - started)
    return engines[:1]


def measure_classifier(check: Check, section: str, classifier, start_s: float) -> None:
    st = check.settings
    for batch in st.batches:
        x = make_input(classifier.spec, batch)
        samples = time_it(lambda: classifier.logits(x), warmup=st.warmup, iterations=st.iterations,
                          max_seconds=st.max_seconds)
        row = dict(backend=classifier.describe(), batch=batch, timer="wall (copies included)",
                   start_s=round(start_s, 1), **stats_row(samples, batch))
        check.add(section, **row)
        check.say(f"{row['backend']:<44} batch {batch}: p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms "
                  f"(start {start_s:.1f} s)")


def runtime_rows(check: Check, work: Path, classifiers: list) -> None:
    """`catmood run`'s pipeline on a generated video (whole frames): decode, preprocess, infer, decide."""
    st = check.settings
    if not classifiers or not check.within_budget("runtime on a video"):
        return
    video = work / "cat_moods.mp4"
    frames = len(render_mood_video(video, st.video_script, fps=15.0, size=st.video_size))
    for classifier in classifiers:
        summary = run_pipeline(classifier, str(video), RuntimeOptions(), **QUIET)
        stages = {k: round(v["p50"], 3) for k, v in summary.stages.items()}
        check.add("runtime", backend=classifier.describe(), video=f"{st.video_size[0]}x{st.video_size[1]}",
                  frames=summary.frames, fps=round(summary.fps, 1), dropped=summary.dropped, stage_p50_ms=stages)
        check.say(f"runtime on {frames} frames with {classifier.describe()}: {summary.fps:.1f} fps")


def markdown(report: dict) -> str:
    env = report["environment"]
    gpu = f"{env['gpu']} (driver {env['driver']}, compute {env.get('compute_capability')})" if env["gpu"] else "none"
    lines = ["# catmood GPU check", "", f"- GPU: {gpu}; CPU: {env['cpu']} ({env['cpu_cores']} cores)",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
             f"- settings: {report['settings']}", f"- took {report['seconds']:.0f} s"]
    for section, rows in report["sections"].items():
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["", f"## {section}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    if report["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s['what']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def gpu_environment() -> dict:
    env = environment()
    env["versions"]["cuda (torch)"] = torch.version.cuda
    if torch.cuda.is_available():
        env["compute_capability"] = "{}.{}".format(*torch.cuda.get_device_capability())
        env["versions"]["cudnn"] = torch.backends.cudnn.version()
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="the smoke run: few iterations, tiny data")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--budget", type=float, default=Settings.budget_s, help="seconds before sections are skipped")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --device cpu --quick for the smoke run")
    settings = Settings(device=args.device, models=tuple(args.models), budget_s=args.budget)
    check = Check(settings.quick() if args.quick else settings)
    env = gpu_environment()
    check.say(f"GPU: {env['gpu'] or 'none'}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
              f"device {args.device}{' (quick)' if args.quick else ''}")
    torch_latency(check)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        best = training(check, work)
        classifiers = []
        if best is not None:
            onnx_path = export_onnx(best, work / "model.onnx")
            classifiers = [TorchBackend(best, device=args.device)] + onnxruntime_rows(check, onnx_path)
            if args.device == "cuda":
                classifiers.insert(1, TorchBackend(best, device="cuda", cuda_graphs=True))
            classifiers += tensorrt_rows(check, best, work)
        runtime_rows(check, work, classifiers)
    report = dict(environment=env, settings=asdict(check.settings), seconds=time.perf_counter() - check.started,
                  sections=check.sections, skipped=check.skipped)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "gpu_check.json", json.loads(json.dumps(report, default=str)))
    atomic_write_text(args.out / "gpu_check.md", markdown(report))
    check.say(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")


if __name__ == "__main__":
    main()
