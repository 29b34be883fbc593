"""Run an artifact (checkpoint, ONNX, TensorRT engine) behind one small Classifier interface.

Heavy libraries (onnxruntime, tensorrt, CUDA) are imported only by the backend that needs them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CatmoodError
from .base import Classifier, softmax

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
KINDS = ("torch", "onnxruntime", "tensorrt")  # also the --backend names that run each kind


def artifact_kind(path: str | os.PathLike) -> str:
    """The one place a file is mapped to its backend: a checkpoint (.pt/.pth or a run folder) -> torch,
    .onnx -> onnxruntime, an engine (.engine/.plan/.trt) -> tensorrt."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth") or path.is_dir():
        return "torch"
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    raise CatmoodError(f"{path}: unknown model kind {suffix or '(no suffix)'}: expected a checkpoint (.pt), "
                       "an ONNX model (.onnx) or a TensorRT engine (.engine)")


def load_classifier(path: str | os.PathLike, *, providers: list[str] | None = None, device: str = "auto",
                    threads: int | None = None) -> Classifier:
    """The right backend for an artifact, chosen by its kind: .pt (PyTorch), .onnx, .engine/.plan."""
    kind = artifact_kind(path)
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(path, device=device)
    if kind == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers=providers, threads=threads)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path)


BACKENDS = ("auto", *KINDS)


def select_classifier(path: str | os.PathLike, backend: str = "auto", device: str = "auto") -> Classifier:
    """`--backend auto`: the fastest way this machine has to run the artifact.

    A checkpoint runs in PyTorch (FP16 channels-last CUDA graphs when there is a GPU); an ONNX model in ONNX
    Runtime with TensorRT, then CUDA, then CPU providers, as installed and as they start (`--backend
    tensorrt` requires the TensorRT one); an engine in TensorRT. `device cpu` keeps everything on the CPU.
    """
    if backend not in BACKENDS:
        raise CatmoodError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise CatmoodError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    path = Path(path)
    if not path.exists():
        raise CatmoodError(f"{path}: model not found")
    kind = artifact_kind(path)
    if backend == "tensorrt" and kind == "onnxruntime":
        from .onnxruntime_backend import PREFERENCE

        # The auto chain with TensorRT required: the options the export gate used (it runs the auto chain).
        return load_classifier(path, providers=list(PREFERENCE))
    if backend not in ("auto", kind):
        hint = "export it first: catmood export CHECKPOINT" if kind == "torch" else f"use --backend {kind}"
        raise CatmoodError(f"{path}: a {kind} artifact cannot run with --backend {backend}; {hint}")
    if kind == "onnxruntime" and device == "cpu":
        return load_classifier(path, providers=["CPUExecutionProvider"])
    if kind == "onnxruntime" and device.startswith("cuda"):
        from .onnxruntime_backend import PREFERENCE

        return load_classifier(path, providers=list(PREFERENCE))  # every provider must start; none is the CPU's
    if kind == "tensorrt" and device == "cpu":
        raise CatmoodError(f"{path}: a TensorRT engine runs on an NVIDIA GPU only; run the .onnx with --device cpu")
    if kind == "torch":
        from .torch_backend import TorchBackend, on_cuda

        # Small models are launch-bound on a big GPU: replaying one CUDA graph per batch shape doubled the
        # runtime's fps over eager FP16 on an H200 (723 vs 362 fps, benchmarks/RESULTS.md).
        return TorchBackend(path, device=device, cuda_graphs=on_cuda(device))
    return load_classifier(path, device=device)


__all__ = ["BACKENDS", "KINDS", "Classifier", "artifact_kind", "load_classifier", "select_classifier", "softmax"]
