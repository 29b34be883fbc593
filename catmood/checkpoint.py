"""catmood checkpoints: plain data (tensors, numbers, strings, lists, dicts) that load with weights_only=True.

A checkpoint holds the model's state dict, its spec, the head's dropout, the resolved training config,
metrics and provenance; `last.pt` also holds what `--resume` needs (optimizer, scheduler, scaler, RNG).
Written atomically, so an interrupted save never leaves a broken file behind.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .errors import CatmoodError, SpecError
from .fileio import atomic_path
from .spec import ModelSpec

CHECKPOINT_FORMAT = "catmood-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(CatmoodError):
    """A checkpoint is missing, corrupt, foreign or does not fit its model."""


@dataclass
class Checkpoint:
    path: Path | None
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    dropout: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None

    @functools.cached_property
    def sha256(self) -> str | None:
        """Of the file it was loaded from; hashed once, however many exports record it."""
        return file_sha256(self.path) if self.path else None

    def with_weights(self, model: torch.nn.Module) -> Checkpoint:
        """This checkpoint (spec, path, config) carrying `model`'s weights instead, on the CPU."""
        return replace(self, state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()})

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "spec": self.spec.to_dict(),
            "state_dict": self.state_dict,
            "dropout": float(self.dropout),
            "config": self.config,
            "metrics": self.metrics,
            "history": self.history,
            "epoch": int(self.epoch),
            "provenance": {**provenance(), **self.provenance},
        }
        if self.training_state is not None:
            data["training_state"] = self.training_state
        return data


def provenance() -> dict[str, str]:
    from . import __version__

    out = {"catmood": __version__, "torch": str(torch.__version__)}  # TorchVersion is no plain str
    try:
        import timm

        out["timm"] = str(timm.__version__)
    except ImportError:
        pass
    return out


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint.to_dict(), tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and validate a catmood checkpoint; every failure is one CheckpointError line naming the file."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: folder holds no best.pt or last.pt")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if path.suffix.lower() in (".onnx", ".engine", ".plan", ".trt"):
        raise CheckpointError(f"{path}: is an exported model, not a checkpoint: give the best.pt it was exported "
                              "from (catmood run and catmood bench take exported models)")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt, truncated, or another kind "
                              "of file)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        reason = next((line.split("error:", 1)[1].strip().split(". Please")[0] for line in lines
                       if "WeightsUnpickler error:" in line), None)
        if reason is None:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({lines[0] if lines else 'unpickling failed'})"
                                  ) from None
        raise CheckpointError(f"{path}: holds objects other than plain data, and catmood loads checkpoints "
                              f"with weights_only=True ({reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                              ) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        hint = " (a bare state dict? train with catmood, or use --weights to start from it)" \
            if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()) else ""
        raise CheckpointError(f"{path}: not a catmood checkpoint{hint}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this catmood understands "
                              f"({CHECKPOINT_VERSION}); upgrade catmood")
    try:
        spec = ModelSpec.from_dict(data.get("spec"))
    except SpecError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    state = data.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: holds no model weights")
    return Checkpoint(path=path, spec=spec, state_dict=state, dropout=float(data.get("dropout", 0.0)),
                      config=data.get("config") or {}, metrics=data.get("metrics") or {},
                      history=_current_keys(data.get("history") or []), epoch=int(data.get("epoch", 0)),
                      provenance=data.get("provenance") or {}, training_state=data.get("training_state"))


def model_from_checkpoint(checkpoint: Checkpoint) -> torch.nn.Module:
    """Rebuild the architecture named in the spec and load the weights (eval mode)."""
    from .architectures import build_model

    model = build_model(checkpoint.spec.architecture, checkpoint.spec.num_classes, checkpoint.dropout)
    try:
        result = model.load_state_dict(checkpoint.state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc)[:200])
        raise CheckpointError(f"{checkpoint.path}: weights do not fit {checkpoint.spec.architecture} "
                              f"({detail})") from None
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {result.missing_keys[:3]}")
        if result.unexpected_keys:
            parts.append(f"unexpected {result.unexpected_keys[:3]}")
        raise CheckpointError(f"{checkpoint.path}: weights do not fit {checkpoint.spec.architecture} "
                              f"({'; '.join(parts)})")
    return model.eval()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _current_keys(history: list[dict]) -> list[dict]:
    """Epoch rows with today's key names: checkpoints written before the validation split was called "valid"
    everywhere have val_loss, val_accuracy and val_macro_f1."""
    return [{"valid_" + k[4:] if k.startswith("val_") else k: v for k, v in row.items()} for row in history]
