"""Run a catmood checkpoint with PyTorch: CUDA with FP16 autocast when available, CPU otherwise."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from ..errors import CatmoodError
from .base import Classifier


class TorchBackend(Classifier):
    name = "torch"

    def __init__(self, checkpoint: str | os.PathLike | Checkpoint, device: str = "auto", fp16: bool | None = None):
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CatmoodError(f"--device {device}: no CUDA GPU is available here")
        self.torch_device = torch.device(device)
        self.spec = ckpt.spec
        self.checkpoint = ckpt
        self.fp16 = (self.torch_device.type == "cuda") if fp16 is None else fp16
        self.model = model_from_checkpoint(ckpt).to(self.torch_device)
        if self.torch_device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = str(self.torch_device) + (" (fp16 autocast)" if self.fp16 else "")

    @torch.inference_mode()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.torch_device, non_blocking=True)
        with torch.autocast(self.torch_device.type, dtype=torch.float16, enabled=self.fp16):
            out = self.model(x)
        return out.float().cpu().numpy()
