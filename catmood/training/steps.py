"""The named steps training repeats: seed an epoch, set train mode, train one epoch, validate, cache features."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.torch_dataset import make_loader
from .evaluate import classification_metrics, logits_and_labels, progress_bar


def seed_epoch(seed: int, epoch: int) -> int:
    """Reseed Python, NumPy and torch from (seed, epoch): what makes a resumed run equal an unbroken one."""
    value = (seed * 1_000_003 + epoch * 7919) % (2 ** 31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


def freeze_batchnorm_stats(module: nn.Module) -> None:
    """BatchNorm layers normalise with their running statistics and stop updating them; their scale and
    shift still train. Call after module.train()."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass
class EpochStats:
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


def train_one_epoch(module: nn.Module, loader, optimizer, scheduler, scaler, criterion, *, device: torch.device,
                    amp, grad_clip: float, clip_params, memory_format=torch.contiguous_format,
                    after_step=None, bar=None) -> EpochStats:
    """One pass over `loader` (images or cached features), one optimiser step per batch, then
    `after_step()` (the EMA update) if given."""
    stats = EpochStats()
    clip_params = list(clip_params)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = module(x)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(clip_params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if after_step is not None:
            after_step()
        n = y.shape[0]
        stats.seen += n
        stats.loss_sum += float(loss.detach()) * n
        stats.correct += int((logits.argmax(1) == y).sum())
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{stats.loss_sum / stats.seen:.4f}", acc=f"{stats.correct / stats.seen:.3f}",
                            lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return stats


def validate(module: nn.Module, loader, criterion, device: torch.device, amp, class_names,
             tta: bool = False, progress: bool = False) -> tuple[float, dict]:
    """(loss, metrics) of `module` on a validation loader."""
    logits, labels = logits_and_labels(module, loader, device, amp, tta=tta, progress=progress, desc="validating")
    loss = float(criterion(torch.from_numpy(logits).to(device), torch.from_numpy(labels).to(device)))
    return loss, classification_metrics(labels, logits.argmax(1), class_names)


@torch.no_grad()
def compute_features(backbone: nn.Module, dataset, device: torch.device, batch_size: int, workers: int,
                     progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of a whole dataset, once (eval mode: no dropout, frozen normalisation)."""
    backbone.eval()
    loader = make_loader(dataset, batch_size, workers)
    feats, labels = [], []
    for x, y in progress_bar(loader, progress, desc):
        feats.append(backbone(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)
