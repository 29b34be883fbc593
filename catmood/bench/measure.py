"""Latency per backend, precision and batch, and the end-to-end pipeline, measured the way careful
engineers measure them: warm-up first, the device synchronised, every iteration timed, stopped at an
iteration count or a time budget, whichever comes first; on CUDA the model's own time with CUDA events too.
Each backend's ratio to PyTorch eager on the same device comes from the same run.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from ..backends import Classifier, artifact_kind, load_classifier
from ..errors import CatmoodError
from ..preprocess import preprocess
from ..timing import latency_stats, time_cuda_events, time_it
from .options import BenchOptions
from .report import BenchRow


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
    """A preprocessed batch of random frames a little larger than the model's input (so resize runs too)."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (spec.input_size + 32, spec.input_size + 32, 3), dtype=np.uint8)
              for _ in range(batch)]
    return preprocess(frames, spec)


def classifiers_for(path: Path, options: BenchOptions, echo) -> list[tuple[str, str, Classifier]]:
    """(backend, precision, classifier) for every way this machine can run the artifact."""
    kind = artifact_kind(path)
    if kind == "torch":
        return _torch_classifiers(path, options)
    if kind == "onnxruntime":
        import onnxruntime as ort

        wanted = ["CPUExecutionProvider"] if options.device == "cpu" else [
            p for p in ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
            if p in ort.get_available_providers()]
        out = []
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

    plain, graphs = TensorRTBackend(path), TensorRTBackend(path, cuda_graphs=True)
    return [("tensorrt", plain.precision, plain), ("tensorrt cuda graph", graphs.precision, graphs)]


def _torch_classifiers(path: Path, options: BenchOptions) -> list[tuple[str, str, Classifier]]:
    import torch

    from ..backends.torch_backend import TorchBackend
    from ..checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)  # once, for every variant
    out = [("torch eager", "fp32", TorchBackend(ckpt, device="cpu", fp16=False))]
    if torch.cuda.is_available() and options.device != "cpu":
        out.append(("torch eager", "fp32", TorchBackend(ckpt, device="cuda", fp16=False)))
        out.append(("torch eager", "fp16", TorchBackend(ckpt, device="cuda", fp16=True)))
        out.append(("torch cuda graph", "fp16", TorchBackend(ckpt, device="cuda", fp16=True, cuda_graphs=True)))
        if options.compile_cuda:
            compiled = TorchBackend(ckpt, device="cuda", fp16=True)
            compiled.model = torch.compile(compiled.model, mode="max-autotune")
            compiled.device += " (torch.compile)"
            out.append(("torch compile", "fp16", compiled))
    return out


def latency_rows(name: str, path: Path, classifiers, options: BenchOptions, echo) -> list[BenchRow]:
    """One row per backend and batch size."""
    import torch

    rows = []
    bounds = dict(warmup=options.warmup, iterations=options.iterations, max_seconds=options.max_seconds)
    for backend, precision, classifier in classifiers:
        cuda = classifier.device_type == "cuda"
        gflops = model_gflops(classifier) if backend.startswith("torch") and not cuda else None
        for batch in options.batches:
            x = make_input(classifier.spec, batch)
            sync = torch.cuda.synchronize if cuda and torch.cuda.is_available() else None
            samples = time_it(lambda: classifier.logits(x), sync=sync, **bounds)
            row = BenchRow(name, path.name, backend, classifier.device, precision, batch,
                           latency_stats(samples, batch), gflops=gflops, device_type=classifier.device_type)
            if backend.startswith("torch") and cuda:
                xt = classifier.device_input(x)
                row.gpu_ms = float(np.median(time_cuda_events(lambda: classifier.forward_device(xt),
                                                              **{**bounds, "iterations": min(options.iterations, 50)})))
            rows.append(row)
            echo(f"{name:<24} {backend:<26} {precision} batch {batch:>3}: p50 {row.stats.p50_ms:8.2f} ms  "
                 f"p99 {row.stats.p99_ms:8.2f} ms  {row.stats.images_per_s:8.1f} img/s")
    return rows


def ratios_to_eager(rows: list[BenchRow]) -> None:
    """Each row's mean latency over PyTorch eager FP32's, same model, device type and batch."""
    eager = {(r.model, r.device_type, r.batch): r.stats.mean_ms for r in rows
             if r.backend == "torch eager" and r.precision == "fp32"}
    for row in rows:
        reference = eager.get((row.model, row.device_type, row.batch))
        row.vs_eager = row.stats.mean_ms / reference if reference else None
