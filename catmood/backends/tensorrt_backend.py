"""Run a TensorRT engine (TensorRT 10 API). Refuses an engine built for another GPU or TensorRT version."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CatmoodError
from ..metadata import ArtifactError, EngineTarget, check_engine_target, read_sidecar
from .base import Classifier


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise CatmoodError("TensorRT is not installed: pip install tensorrt (needs an NVIDIA GPU and driver)") from None
    return trt


def current_target() -> EngineTarget:
    """The TensorRT version and GPU of this machine, as engine sidecars record them."""
    import torch

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise CatmoodError("TensorRT needs an NVIDIA GPU, and none is available here")
    major, minor = torch.cuda.get_device_capability()
    return EngineTarget(trt.__version__, torch.cuda.get_device_name(), f"{major}.{minor}")


class TensorRTBackend(Classifier):
    name = "tensorrt"

    def __init__(self, engine: str | os.PathLike, here: EngineTarget | None = None):
        """`here`: this machine's GPU and TensorRT (found out when not given); checked against the sidecar
        before anything is loaded."""
        self.path = Path(engine)
        self.spec, self.sidecar = read_sidecar(self.path)
        here = here or current_target()
        check_engine_target(self.path, self.sidecar, here)
        import torch

        trt = import_tensorrt()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{self.path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name = inputs[0]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        self.outputs = outputs
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.device = f"cuda:{torch.cuda.current_device()} ({here.gpu})"
        profile = self.sidecar.get("profile", {})
        self.max_batch = int(profile.get("max", 32))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        n = batch.shape[0]
        if n > self.max_batch:
            return np.concatenate([self.logits(batch[i:i + self.max_batch]) for i in range(0, n, self.max_batch)])
        dtype = torch.uint8 if batch.dtype == np.uint8 else torch.float32
        x = torch.from_numpy(np.ascontiguousarray(batch)).to("cuda", dtype=dtype, non_blocking=True)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        buffers = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, buffers[name].data_ptr())
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ArtifactError(f"{self.path}: TensorRT execution failed")
        self.stream.synchronize()
        return buffers[self.output_name].cpu().numpy()
