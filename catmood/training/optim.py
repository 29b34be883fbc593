"""What the optimiser updates and how fast: discriminative learning rates (the head above the backbone),
layer-wise decay down the backbone, weight decay on weights only, warm-up then cosine decay."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .config import TrainConfig


def backbone_depths(backbone: nn.Module) -> dict[str, float]:
    """Parameter name -> depth in [0, 1] (0: the first layer, 1: the last), from timm's group_matcher, which
    orders a timm model's stem, blocks and final layers. Empty for backbones without one (torchvision)."""
    matcher = getattr(backbone, "group_matcher", None)
    if matcher is None:
        return {}
    from timm.models import group_parameters

    try:
        layer_of = group_parameters(backbone, matcher(coarse=False), reverse=True)
    except (NotImplementedError, TypeError):
        return {}
    top = max(layer_of.values(), default=0)
    return {name: layer / top if top else 1.0 for name, layer in layer_of.items()}


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """The trainable parameters of a CatmoodNet, grouped by learning rate and weight decay.

    The head learns at lr x head_lr_scale (it starts far from the data's optimum, the backbone near one);
    the backbone's layers from lr (last) down to lr x first_layer_lr_scale (first), geometrically, because
    early layers hold generic features worth keeping. Norm scales and biases get no weight decay (shrinking
    them towards zero only changes the scale of activations) unless weight_decay_all, as the seed did.
    """
    depths = backbone_depths(model.backbone) if config.first_layer_lr_scale != 1 else {}
    groups: dict[tuple[float, float], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            scale = 1.0 if config.freeze_backbone else config.head_lr_scale
        else:
            depth = depths.get(name.removeprefix("backbone."), 1.0)
            scale = config.first_layer_lr_scale ** (1.0 - depth)
        decay = config.weight_decay if config.weight_decay_all or param.ndim > 1 else 0.0
        group = groups.setdefault((scale, decay), dict(params=[], lr=config.lr * scale, weight_decay=decay))
        group["params"].append(param)
    return list(groups.values())


def make_optimizer(config: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)


def lr_lambda(total_steps: int, warmup_steps: int, kind: str) -> Callable[[int], float]:
    """Factor on every group's lr at a step: linear warm-up, then cosine to zero (or constant)."""
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "none":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int, warmup_epochs: int,
                   kind: str) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(epochs * steps_per_epoch, warmup_epochs * steps_per_epoch, kind))
