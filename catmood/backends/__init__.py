"""Run an artifact (checkpoint, ONNX, TensorRT engine) behind one small Classifier interface.

Heavy libraries (onnxruntime, tensorrt, CUDA) are imported only by the backend that needs them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CatmoodError
from .base import Classifier, softmax

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def load_classifier(path: str | os.PathLike, *, providers: list[str] | None = None, device: str = "auto",
                    threads: int | None = None) -> Classifier:
    """The right backend for an artifact, chosen by its kind: .pt (PyTorch), .onnx, .engine/.plan."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth") or path.is_dir():
        from .torch_backend import TorchBackend

        return TorchBackend(path, device=device)
    if suffix == ".onnx":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers=providers, threads=threads)
    if suffix in ENGINE_SUFFIXES:
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    raise CatmoodError(f"{path}: unknown model kind {suffix or '(no suffix)'}: expected a checkpoint (.pt), "
                       "an ONNX model (.onnx) or a TensorRT engine (.engine)")


__all__ = ["Classifier", "load_classifier", "softmax"]
