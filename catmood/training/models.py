"""Model factory: any timm or torchvision architecture by name, ImageNet weights, a new Dropout + Linear head,
and the model spec that carries the backbone's own preprocessing (input size, crop, mean/std) forward."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..architectures import Architecture, CatmoodNet, build_backbone, resolve_architecture
from ..errors import CatmoodError
from ..spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from .config import INPUT_SIZE_RANGE
from .weights import (HOW_TO, LITE0_ARCH, hub_endpoint, host_resolves, lite0_package_available,
                      load_into_backbone, load_lite0_package_weights, read_state_dict, timm_cached_file,
                      torch_hub_dir)


@dataclass
class CreatedModel:
    model: CatmoodNet
    spec: ModelSpec
    weights_source: str


def preprocessing_of(arch: Architecture, backbone: torch.nn.Module) -> dict:
    """The backbone's own evaluation preprocessing, as ModelSpec fields."""
    if arch.library == "timm":
        cfg = dict(getattr(backbone, "pretrained_cfg", None) or {})
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        crop_pct = float(cfg.get("crop_pct") or 0.875)
        squash = cfg.get("crop_mode") == "squash"
        interpolation = cfg.get("interpolation", "bilinear")
        return dict(input_size=size, resize_size=size if squash else int(math.floor(size / crop_pct)),
                    crop="none" if squash else "center",
                    interpolation=interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear",
                    mean=tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN)),
                    std=tuple(float(v) for v in cfg.get("std", IMAGENET_STD)))
    import torchvision

    try:
        transforms = torchvision.models.get_model_weights(arch.name).DEFAULT.transforms()
    except (ValueError, AttributeError, KeyError):
        return dict(input_size=224, resize_size=256, crop="center", interpolation="bilinear",
                    mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return dict(input_size=int(transforms.crop_size[0]), resize_size=int(transforms.resize_size[0]),
                crop="center", interpolation=transforms.interpolation.value,
                mean=tuple(float(v) for v in transforms.mean), std=tuple(float(v) for v in transforms.std))


def _hub_backbone(arch: Architecture, cache_dir: str | None, timm_kwargs: dict) -> tuple[torch.nn.Module, int, str]:
    """ImageNet weights through the library: cache first, download only when the hub answers."""
    if arch.library == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(arch.name)
        cfg = cfg.to_dict() if cfg is not None else {}
        if not cfg.get("hf_hub_id") and not cfg.get("url") and not cfg.get("file"):
            raise CatmoodError(f"timm has no pretrained weights for {arch.name}; {HOW_TO}")
        cached = timm_cached_file(cfg, cache_dir)
        if cached:
            backbone, features = build_backbone(arch, timm_kwargs={
                **timm_kwargs, "pretrained": True, "pretrained_cfg_overlay": {"file": cached}})
            return backbone, features, f"timm cache ({cached})"
        source = hub_endpoint() if cfg.get("hf_hub_id") else cfg["url"]
        if not host_resolves(source):
            raise CatmoodError(f"no internet to download the ImageNet weights of {arch.name} and none in the "
                               f"cache; {HOW_TO}")
        try:
            backbone, features = build_backbone(arch, timm_kwargs={**timm_kwargs, "pretrained": True,
                                                                   "cache_dir": cache_dir})
        except Exception as exc:
            raise CatmoodError(f"downloading the ImageNet weights of {arch.name} failed "
                               f"({str(exc).splitlines()[0][:160]}); {HOW_TO}") from None
        return backbone, features, f"timm hub ({cfg.get('hf_hub_id') or cfg.get('url')})"

    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch.name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        raise CatmoodError(f"torchvision has no pretrained weights for {arch.name}; {HOW_TO}") from None
    with torch_hub_dir(cache_dir):
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.is_file() and not host_resolves(weights.url):
            raise CatmoodError(f"no internet to download the ImageNet weights of {arch.name} and none in the "
                               f"cache ({cached}); {HOW_TO}")
        try:
            backbone, features = build_backbone(arch, torchvision_weights=weights)
        except Exception as exc:
            raise CatmoodError(f"getting the ImageNet weights of {arch.name} failed "
                               f"({str(exc).splitlines()[0][:160]}); {HOW_TO}") from None
    return backbone, features, f"torchvision {weights}"


def create_model(architecture: str, class_names: Sequence[str], *, dropout: float = 0.0, pretrained: bool = True,
                 weights: str | Path | None = None, cache_dir: str | None = None,
                 input_size: int | None = None) -> CreatedModel:
    """A CatmoodNet for `class_names` with ImageNet weights (unless `pretrained=False`) and its spec.

    `weights` (a local state dict or safetensors file) wins over everything else; see `weights.py` for
    the rest of the resolution order. `input_size` overrides the backbone's own (resize scaled alike).
    """
    low, high = INPUT_SIZE_RANGE
    if input_size is not None and not low <= input_size <= high:
        raise CatmoodError(f"--input-size must be {low}-{high} pixels, got {input_size}")
    arch = resolve_architecture(architecture)
    timm_kwargs: dict = {}
    if input_size is not None and arch.library == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(arch.name)
        if cfg is not None and cfg.to_dict().get("fixed_input_size"):
            timm_kwargs["img_size"] = input_size  # ViTs: resize the position embeddings
    if weights is not None:
        backbone, features = build_backbone(arch, timm_kwargs=timm_kwargs)
        path = Path(weights).expanduser()
        ignored = load_into_backbone(backbone, read_state_dict(path), str(path))
        source = f"file {path.resolve()}" + (f" ({ignored} classifier tensors left out)" if ignored else "")
    elif not pretrained:
        backbone, features = build_backbone(arch, timm_kwargs=timm_kwargs)
        source = "none (random initialisation)"
    elif arch.library == "timm" and arch.name.partition(".")[0] == LITE0_ARCH and lite0_package_available():
        backbone, features = build_backbone(arch, timm_kwargs=timm_kwargs)
        source = load_lite0_package_weights(backbone)
    else:
        backbone, features, source = _hub_backbone(arch, cache_dir, timm_kwargs)

    pre = preprocessing_of(arch, backbone)
    if input_size is not None:
        ratio = pre["resize_size"] / pre["input_size"]
        pre.update(input_size=input_size, resize_size=input_size if pre["crop"] == "none"
                   else max(input_size, int(round(input_size * ratio))))
    spec = ModelSpec(architecture=arch.qualified, class_names=tuple(class_names), **pre)
    return CreatedModel(CatmoodNet(backbone, features, len(class_names), dropout), spec, source)
