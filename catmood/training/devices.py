"""Where training runs: a CUDA GPU when there is one, the CPU otherwise."""

from __future__ import annotations

import torch

from ..errors import CatmoodError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CatmoodError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CatmoodError(f"--device {name}: no CUDA GPU is available here (use --device cpu or auto)")
    return device


def amp_dtype(device: torch.device, enabled: bool):
    """Mixed precision on CUDA only: bf16 where the GPU has it (no loss scaling needed), else fp16."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
