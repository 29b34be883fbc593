"""`catmood bench`: latency and throughput per backend, precision and batch size, end-to-end fps, and
accuracy per format, measured the way careful engineers measure them.

Every measurement warms up first, synchronises the device, times every iteration, and stops at an
iteration count or a time budget, whichever comes first. Reported: p50/p90/p99/mean latency and images per
second; on CUDA the model's own time with CUDA events too. Each backend's ratio to PyTorch eager on the same
device is measured in the same run.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..backends import Classifier, load_classifier
from ..data.report import format_table
from ..errors import CatmoodError
from ..fileio import atomic_path, atomic_write_json, atomic_write_text
from ..preprocess import preprocess
from ..timing import LatencyStats, latency_stats, time_cuda_events, time_it


@dataclass
class BenchRow:
    model: str
    artifact: str
    backend: str
    device: str
    precision: str
    batch: int
    stats: LatencyStats
    gpu_ms: float | None = None          # CUDA-event time of the model alone (torch on CUDA)
    vs_eager: float | None = None        # latency / PyTorch eager latency, same device and batch
    gflops: float | None = None          # per image


@dataclass
class BenchReport:
    environment: dict
    rows: list[BenchRow] = field(default_factory=list)
    end_to_end: list[dict] = field(default_factory=list)
    accuracy: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(environment=self.environment, settings=self.settings,
                    latency=[{**asdict(r), **asdict(r.stats)} for r in self.rows],
                    end_to_end=self.end_to_end, accuracy=self.accuracy)

    def markdown(self) -> str:
        env = self.environment
        lines = ["# catmood benchmark", "",
                 f"- CPU: {env['cpu']} ({env['cpu_cores']} cores); GPU: {env['gpu'] or 'none'}"
                 + (f" (driver {env['driver']})" if env.get("driver") else ""),
                 "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
                 f"- settings: {self.settings}", "", "## Model latency", "",
                 "| model | backend | device | precision | batch | p50 ms | p90 ms | p99 ms | mean ms | images/s | "
                 "vs PyTorch eager | GFLOPs/img |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            s = r.stats
            lines.append(f"| {r.model} | {r.backend} | {r.device} | {r.precision} | {r.batch} | {s.p50_ms:.2f} | "
                         f"{s.p90_ms:.2f} | {s.p99_ms:.2f} | {s.mean_ms:.2f} | {s.images_per_s:.1f} | "
                         f"{'-' if r.vs_eager is None else f'{r.vs_eager:.2f}x'} | "
                         f"{'-' if r.gflops is None else f'{r.gflops:.2f}'} |")
        if self.end_to_end:
            lines += ["", "## End to end (the runtime pipeline)", "",
                      "| model | backend | source | frames | fps | dropped | capture p50/p99 | preprocess p50/p99 | "
                      "inference p50/p99 | postprocess p50/p99 |", "|---|---|---|---|---|---|---|---|---|---|"]
            for e in self.end_to_end:
                st = e["stages_ms"]
                lines.append(f"| {e['model']} | {e['backend']} | {e['source']} | {e['frames']} | {e['fps']:.1f} | "
                             f"{e['dropped']} | " + " | ".join(f"{st[k]['p50']:.2f}/{st[k]['p99']:.2f}" for k in
                                                              ("capture", "preprocess", "inference", "postprocess"))
                             + " |")
        if self.accuracy:
            lines += ["", "## Accuracy per format", "", "| model | backend | split | images | top-1 accuracy |",
                      "|---|---|---|---|---|"]
            lines += [f"| {a['model']} | {a['backend']} | {a['split']} | {a['n']} | {a['accuracy']:.1%} |"
                      for a in self.accuracy]
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        rows = [[r.model, r.backend, r.device, r.precision, r.batch, f"{r.stats.p50_ms:.2f}", f"{r.stats.p99_ms:.2f}",
                 f"{r.stats.images_per_s:.1f}", "-" if r.vs_eager is None else f"{r.vs_eager:.2f}x"] for r in self.rows]
        out = format_table(["model", "backend", "device", "precision", "batch", "p50 ms", "p99 ms", "img/s",
                            "vs eager"], rows)
        if self.end_to_end:
            out += "\n\n" + format_table(
                ["model", "backend", "frames", "fps", "dropped", "inference p50 ms"],
                [[e["model"], e["backend"], e["frames"], f"{e['fps']:.1f}", e["dropped"],
                  f"{e['stages_ms']['inference']['p50']:.2f}"] for e in self.end_to_end])
        if self.accuracy:
            out += "\n\n" + format_table(["model", "backend", "images", "accuracy"],
                                         [[a["model"], a["backend"], a["n"], f"{a['accuracy']:.1%}"]
                                          for a in self.accuracy])
        return out


def environment() -> dict:
    """CPU model and cores, GPU and driver, library versions."""
    import cv2
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = driver = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        try:
            import subprocess

            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            driver = None
    versions = {"python": platform.python_version(), "torch": str(torch.__version__), "opencv": cv2.__version__}
    for name in ("onnxruntime", "timm", "tensorrt"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return dict(cpu=cpu, cpu_cores=os.cpu_count(), torch_threads=torch.get_num_threads(), gpu=gpu, driver=driver,
                platform=platform.platform(), versions=versions)


def model_gflops(checkpoint_classifier) -> float | None:
    """FLOPs of one forward pass per image (torch's FLOP counter; a multiply-add counts as 2)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        model = checkpoint_classifier.model
        size = checkpoint_classifier.spec.input_size
        device = next(model.parameters()).device
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
        return counter.get_total_flops() / 1e9
    except Exception:  # some ops have no FLOP formula; the column is informative only
        return None


def make_input(spec, batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (spec.input_size + 32, spec.input_size + 32, 3), dtype=np.uint8)
              for _ in range(batch)]
    return preprocess(frames, spec)


def _classifiers_for(path: Path, device: str, compile_cuda: bool, echo) -> list[tuple[str, str, Classifier]]:
    """(backend, precision, classifier) for every way this machine can run the artifact."""
    suffix = path.suffix.lower()
    out = []
    if suffix in (".pt", ".pth") or path.is_dir():
        import torch

        from ..backends.torch_backend import TorchBackend

        out.append(("torch eager", "fp32", TorchBackend(path, device="cpu", fp16=False)))
        if torch.cuda.is_available() and device != "cpu":
            out.append(("torch eager", "fp32", TorchBackend(path, device="cuda", fp16=False)))
            out.append(("torch eager", "fp16", TorchBackend(path, device="cuda", fp16=True)))
            out.append(("torch cuda graph", "fp16", TorchBackend(path, device="cuda", fp16=True, cuda_graphs=True)))
            if compile_cuda:
                compiled = TorchBackend(path, device="cuda", fp16=True)
                compiled.model = torch.compile(compiled.model, mode="max-autotune")
                compiled.device += " (torch.compile)"
                out.append(("torch compile", "fp16", compiled))
        return out
    if suffix == ".onnx":
        import onnxruntime as ort

        wanted = ["CPUExecutionProvider"] if device == "cpu" else [
            p for p in ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
            if p in ort.get_available_providers()]
        for provider in wanted:
            chain = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
            try:
                classifier = load_classifier(path, providers=chain)
            except CatmoodError as exc:  # a provider listed as available that fails to start: skip its row
                echo(f"skipped: {exc}")
                continue
            out.append((f"onnxruntime {provider.replace('ExecutionProvider', '')}", classifier.precision, classifier))
        return out
    from ..backends.tensorrt_backend import TensorRTBackend

    return [("tensorrt", "fp16", TensorRTBackend(path)), ("tensorrt cuda graph", "fp16", TensorRTBackend(path, cuda_graphs=True))]


def benchmark(models: list[str | os.PathLike], *, batches=(1,), warmup: int = 5, iterations: int = 50,
              max_seconds: float = 10.0, device: str = "auto", video: str | None = None,
              data: str | os.PathLike | None = None, max_frames: int | None = 300, compile_cuda: bool = False,
              echo=print) -> BenchReport:
    """Measure every artifact in `models` on every backend this machine has, at each batch size."""
    import torch

    report = BenchReport(environment(), settings=dict(batches=list(batches), warmup=warmup, iterations=iterations,
                                                       max_seconds=max_seconds, device=device))
    if not models:
        raise CatmoodError("give at least one model to benchmark (checkpoint, .onnx or .engine)")
    eager: dict[tuple[str, str, int], float] = {}  # (model name, device type, batch) -> PyTorch eager mean ms
    per_model = []
    for model in models:
        path = Path(model)
        if not path.exists():
            raise CatmoodError(f"{path}: model not found")
        classifiers = _classifiers_for(path, device, compile_cuda, echo)
        # Rows are named by architecture, so a checkpoint and its exports compare with each other.
        name = classifiers[0][2].spec.architecture.split(":")[-1]
        per_model.append((path, name, classifiers))

    for path, name, classifiers in per_model:
        for backend, precision, classifier in classifiers:
            cuda = "cuda" in classifier.device.lower() or "tensorrt" in backend.lower()
            device_type = "cuda" if cuda else "cpu"
            gflops = model_gflops(classifier) if hasattr(classifier, "model") and device_type == "cpu" else None
            for batch in batches:
                x = make_input(classifier.spec, batch)
                sync = torch.cuda.synchronize if cuda and torch.cuda.is_available() else None
                samples = time_it(lambda: classifier.logits(x), warmup=warmup, iterations=iterations,
                                  max_seconds=max_seconds, sync=sync)
                row = BenchRow(name, path.name, backend, classifier.device, precision, batch,
                               latency_stats(samples, batch), gflops=gflops)
                if backend.startswith("torch") and cuda:
                    xt = classifier.device_input(x)
                    row.gpu_ms = float(np.median(time_cuda_events(lambda: classifier.forward_device(xt),
                                                                  warmup=warmup, iterations=min(iterations, 50),
                                                                  max_seconds=max_seconds)))
                if backend == "torch eager" and precision == "fp32":
                    eager[(name, device_type, batch)] = row.stats.mean_ms
                report.rows.append(row)
                echo(f"{name:<24} {backend:<26} {precision} batch {batch:>3}: p50 {row.stats.p50_ms:8.2f} ms  "
                     f"p99 {row.stats.p99_ms:8.2f} ms  {row.stats.images_per_s:8.1f} img/s")
    for row in report.rows:
        device_type = "cuda" if ("cuda" in row.device.lower() or "tensorrt" in row.backend) else "cpu"
        reference = eager.get((row.model, device_type, row.batch))
        if reference:
            row.vs_eager = row.stats.mean_ms / reference

    if video:
        from .pipeline import RuntimeOptions, run_pipeline

        for path, name, classifiers in per_model:
            classifier = next(c for b, _, c in reversed(classifiers) if b not in ("torch compile", "torch cuda graph"))
            summary = run_pipeline(classifier, video, RuntimeOptions(max_frames=max_frames), echo=lambda *a: None)
            report.end_to_end.append(dict(model=name, backend=classifier.describe(), source=str(video),
                                          frames=summary.frames, fps=summary.fps, dropped=summary.dropped,
                                          stages_ms=summary.stages))
            echo(f"{name:<24} end to end on {video}: {summary.fps:.1f} fps, {summary.dropped} dropped")
    if data:
        for path, name, classifiers in per_model:
            for backend, precision, classifier in classifiers:
                accuracy, n, split = split_accuracy(classifier, data)
                report.accuracy.append(dict(model=name, backend=f"{backend} {precision}", split=split, n=n,
                                            accuracy=accuracy))
    return report


def split_accuracy(classifier: Classifier, data, batch_size: int = 16) -> tuple[float, int, str]:
    """Top-1 accuracy of an artifact on the validation split, read as the runtime reads images."""
    import cv2

    from ..data.layouts import discover_dataset

    index = discover_dataset(data, check_images=False)
    if tuple(index.class_names) != tuple(classifier.spec.class_names):
        raise CatmoodError(f"{data}: classes {list(index.class_names)} differ from the model's "
                           f"{list(classifier.spec.class_names)}")
    samples = index.splits["valid"]
    correct = 0
    for i in range(0, len(samples), batch_size):
        chunk = samples[i:i + batch_size]
        frames = [cv2.imread(str(s.path)) for s in chunk]
        pairs = [(f, s.label) for f, s in zip(frames, chunk) if f is not None]
        if pairs:  # unreadable images count as wrong
            logits = classifier.logits_of_frames([f for f, _ in pairs], batch_size)
            correct += int((logits.argmax(1) == np.array([label for _, label in pairs])).sum())
    return correct / max(len(samples), 1), len(samples), "valid"


def plot_latency(report: BenchReport, path: str | Path) -> Path:
    """Grouped bars: p50 latency per model/backend/precision, one bar per batch size (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(f"{r.model}\n{r.backend} {r.precision}\n{r.device[:28]}" for r in report.rows))
    batches = sorted({r.batch for r in report.rows})
    width = 0.8 / len(batches)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(keys)), 4.5))
    for j, batch in enumerate(batches):
        values = []
        for key in keys:
            match = [r for r in report.rows if f"{r.model}\n{r.backend} {r.precision}\n{r.device[:28]}" == key
                     and r.batch == batch]
            values.append(match[0].stats.p50_ms if match else 0)
        bars = ax.bar(np.arange(len(keys)) + j * width - 0.4 + width / 2, values, width, label=f"batch {batch}")
        ax.bar_label(bars, [f"{v:.1f}" if v else "" for v in values], fontsize=7)
    ax.set_xticks(range(len(keys)), keys, fontsize=7)
    ax.set_ylabel("p50 latency per batch (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title(f"catmood bench on {report.environment['gpu'] or report.environment['cpu']}")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def write_report(report: BenchReport, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "png": out / "bench.png"}
    atomic_write_json(paths["json"], report.to_dict())
    atomic_write_text(paths["markdown"], report.markdown())
    plot_latency(report, paths["png"])
    return paths


def parse_batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise CatmoodError(f"--batch must be comma-separated batch sizes like 1,8,32, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise CatmoodError(f"--batch sizes must be positive, got {text!r}")
    return values
