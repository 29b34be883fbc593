"""Run an ONNX model with ONNX Runtime, trying TensorRT, then CUDA, then CPU execution providers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CatmoodError
from ..metadata import ArtifactError, read_onnx_metadata
from .base import Classifier

PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(Classifier):
    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CatmoodError("ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from None
        self.path = Path(path)
        self.spec, self.provenance = read_onnx_metadata(self.path)
        available = ort.get_available_providers()
        wanted = providers or [p for p in PREFERENCE if p in available]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise CatmoodError(f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)}); "
                               "for GPU providers install onnxruntime-gpu")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=wanted)
        except Exception as exc:
            raise ArtifactError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        # The providers the session really kept (one that failed to start is dropped silently).
        self.providers = self.session.get_providers()
        self.device = self.providers[0]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch)})[0]
