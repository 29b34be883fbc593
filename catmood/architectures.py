"""Build a classifier's architecture by name, uniformly for timm and torchvision.

Every catmood model is `CatmoodNet`: a backbone that outputs pooled features, then a head of
Dropout + Linear for the dataset's classes. One shape for all architectures means the linear probe can
train the head on cached features, checkpoints have the same keys everywhere, and the export and runtime
stages rebuild any model from its spec alone (no pretrained weights needed: the checkpoint has them).

Names: a timm name (`resnet18`, `convnext_large`, `tf_efficientnet_lite0`, `vit_base_patch16_224`, with an
optional pretrained tag) or a torchvision name (`vit_b_16`, `mobilenet_v3_large`). A bare name is timm's
when timm knows it, else torchvision's; force one with `timm:` or `torchvision:` (`tv:`). Specs store the
qualified name (`timm:resnet18`), so a model is rebuilt by the same library that trained it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from .errors import CatmoodError


@dataclass(frozen=True)
class Architecture:
    library: str   # "timm" or "torchvision"
    name: str      # the library's own name

    @property
    def qualified(self) -> str:
        return f"{self.library}:{self.name}"


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    import torchvision

    return frozenset(torchvision.models.list_models(module=torchvision.models))


def resolve_architecture(name: str) -> Architecture:
    """Which library builds `name`; an unknown name gets a clear error with close matches."""
    raw = name.strip()
    library, _, bare = raw.rpartition(":")
    library = {"": "", "timm": "timm", "torchvision": "torchvision", "tv": "torchvision"}.get(library.lower())
    if library is None:
        raise CatmoodError(f"unknown model library in {name!r}: use timm:NAME or torchvision:NAME")
    # timm names may carry a pretrained tag ("vit_base_patch16_224.augreg_in21k"): validate the base name,
    # keep the tag so timm picks those weights.
    if library in ("", "timm") and bare.partition(".")[0] in _timm_names():
        return Architecture("timm", bare)
    if library in ("", "torchvision") and bare in _torchvision_names():
        return Architecture("torchvision", bare)
    pool = sorted(_timm_names() if library == "timm" else _torchvision_names() if library == "torchvision"
                  else _timm_names() | _torchvision_names())
    close = difflib.get_close_matches(bare, pool, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models() or torchvision.models.list_models()"
    raise CatmoodError(f"unknown model {name!r}{hint}")


class CatmoodNet(nn.Module):
    """backbone (image -> pooled features) + head (Dropout -> Linear -> logits)."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _last_linear(module: nn.Module) -> tuple[str, nn.Linear]:
    found = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise CatmoodError(f"{type(module).__name__} has no Linear classifier to replace")
    return found[-1]


def _replace(module: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, child, new)


def build_backbone(arch: Architecture, *, timm_kwargs: dict | None = None,
                   torchvision_weights=None) -> tuple[nn.Module, int]:
    """(backbone that outputs pooled features, their size). No weights are loaded here unless asked:
    `timm_kwargs` go to timm.create_model (pretrained, pretrained_cfg_overlay, cache_dir ...),
    `torchvision_weights` to torchvision.models.get_model."""
    if arch.library == "timm":
        import timm

        model = timm.create_model(arch.name, num_classes=0, **(timm_kwargs or {}))
        features = getattr(model, "head_hidden_size", None) or model.num_features
        return model, int(features)
    import torchvision

    model = torchvision.models.get_model(arch.name, weights=torchvision_weights)
    name, linear = _last_linear(model)
    _replace(model, name, nn.Identity())
    return model, int(linear.in_features)


def build_model(architecture: str, num_classes: int, dropout: float = 0.0) -> CatmoodNet:
    """The architecture with random weights, e.g. to load a checkpoint into."""
    backbone, features = build_backbone(resolve_architecture(architecture))
    return CatmoodNet(backbone, features, num_classes, dropout)
