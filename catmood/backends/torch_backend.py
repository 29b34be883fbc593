"""Run a catmood checkpoint with PyTorch: FP16 channels-last on CUDA (optionally replayed as CUDA graphs),
FP32 on the CPU."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from ..errors import CatmoodError
from .base import Classifier

GRAPH_WARMUP = 3  # eager runs on a side stream before capture: cuDNN picks its kernels, the allocator settles


class CudaGraphs:
    """One CUDA graph per input shape, captured after a warm-up and replayed from then on: at batch 1 a big
    GPU waits on the CPU to launch each kernel, and a replay launches them all at once."""

    def __init__(self, forward):
        self.forward = forward
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self.graphs:
            self.graphs[key] = self._capture(x)
        static_in, static_out, graph = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor):
        static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP):
                self.forward(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # a private memory pool per graph: shapes replay in any order
            static_out = self.forward(static_in)
        return static_in, static_out, graph


def on_cuda(device: str) -> bool:
    """Whether `device` ("auto", "cpu", "cuda", "cuda:N") means a CUDA GPU here."""
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


class TorchBackend(Classifier):
    """`fp16` (default: on CUDA): real FP16 weights and inputs, channels-last; PyTorch's fused norm and
    softmax kernels accumulate in FP32, so no FP32 islands are needed. `fp16=False` keeps FP32 (the gate's
    reference). On the CPU `fp16` means autocast, as before. `cuda_graphs`: replay one CUDA graph per batch
    shape (CUDA only)."""

    name = "torch"

    def __init__(self, checkpoint: str | os.PathLike | Checkpoint, device: str = "auto", fp16: bool | None = None,
                 cuda_graphs: bool = False):
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        device = ("cuda" if on_cuda(device) else "cpu") if device == "auto" else device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CatmoodError(f"--device {device}: no CUDA GPU is available here")
        self.torch_device = torch.device(device)
        cuda = self.torch_device.type == "cuda"
        self.device_type = self.torch_device.type
        if cuda_graphs and not cuda:
            raise CatmoodError(f"CUDA graphs need a CUDA device; this model runs on {device}")
        self.spec = ckpt.spec
        self.checkpoint = ckpt
        self.fp16 = cuda if fp16 is None else fp16
        self.model = model_from_checkpoint(ckpt).to(self.torch_device)
        self.dtype = torch.float16 if self.fp16 and cuda else torch.float32
        self.precision = "fp16" if self.fp16 else "fp32"
        if cuda:
            self.model = self.model.to(memory_format=torch.channels_last, dtype=self.dtype)
        self.graphs = CudaGraphs(self._forward) if cuda_graphs else None
        precision = "fp16" if self.dtype == torch.float16 else "fp16 autocast" if self.fp16 else None
        extras = [p for p in (precision, "channels-last" if cuda else None, "CUDA graphs" if cuda_graphs else None) if p]
        self.device = str(self.torch_device) + (f" ({', '.join(extras)})" if extras else "")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = self.fp16 and self.torch_device.type == "cpu"
        with torch.autocast(self.torch_device.type, dtype=torch.float16, enabled=autocast):
            return self.model(x)

    @torch.inference_mode()
    def forward_device(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch already on this device, in this backend's dtype and layout (no transfers);
        `catmood bench` times this with CUDA events."""
        return self.graphs(x) if self.graphs is not None else self._forward(x)

    def device_input(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.torch_device, non_blocking=True)
        if self.torch_device.type == "cuda":
            x = x.to(dtype=self.dtype, memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.forward_device(self.device_input(batch)).float().cpu().numpy()
