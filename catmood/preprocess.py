"""Spec -> model input, in numpy and OpenCV only: the one implementation every stage uses.

Training's evaluation transform, the export parity checks and the runtime all call these functions, so
what a deployed model sees cannot drift from what it was validated on. Frames come in as OpenCV gives
them (BGR uint8); training passes `input_order="RGB"` for images decoded by Pillow.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .errors import CatmoodError
from .spec import ModelSpec

CV2_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


def resized_size(height: int, width: int, spec: ModelSpec) -> tuple[int, int]:
    """(height, width) after the resize step, with torchvision's rounding (long side truncated)."""
    if spec.crop == "none":
        return spec.input_size, spec.input_size
    size = spec.resize_size
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def crop_offset(height: int, width: int, spec: ModelSpec) -> tuple[int, int]:
    """(top, left) of the centre crop in the resized image, rounded as torchvision's CenterCrop does."""
    if spec.crop == "none":
        return 0, 0
    top = int(round((height - spec.input_size) / 2.0))
    left = int(round((width - spec.input_size) / 2.0))
    return top, left


def as_three_channels(image: np.ndarray) -> np.ndarray:
    """Accept gray (HxW or HxWx1) and 4-channel frames; return HxWx3 uint8. Alpha is dropped, as
    cv2.imread and Pillow's convert('RGB') both do, so every path agrees."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise CatmoodError(f"expected a uint8 image array, got "
                           f"{getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    raise CatmoodError(f"expected an HxWx3 image, got shape {image.shape}")


def resize_and_crop(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """HxWx3 uint8 -> input_size x input_size x 3 uint8, channel order unchanged."""
    image = as_three_channels(image)
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise CatmoodError(f"cannot preprocess an empty image of shape {image.shape}")
    new_h, new_w = resized_size(height, width, spec)
    if (new_h, new_w) != (height, width):
        image = cv2.resize(image, (new_w, new_h), interpolation=CV2_INTERPOLATION[spec.interpolation])
    top, left = crop_offset(new_h, new_w, spec)
    size = spec.input_size
    return image[top:top + size, left:left + size]


def normalize(batch: np.ndarray, spec: ModelSpec, input_order: str = "BGR",
              out: np.ndarray | None = None) -> np.ndarray:
    """N x S x S x 3 uint8 -> N x 3 x S x S float32 in the model's colour order, (x/255 - mean) / std.

    `out` (float32, N x 3 x S x S) is reused when given, so a steady loop allocates nothing.
    """
    if input_order not in ("RGB", "BGR"):
        raise CatmoodError(f"input_order must be 'RGB' or 'BGR', got {input_order!r}")
    n, h, w, _ = batch.shape
    if out is None:
        out = np.empty((n, 3, h, w), dtype=np.float32)
    elif out.shape != (n, 3, h, w) or out.dtype != np.float32:
        raise CatmoodError(f"output buffer must be float32 {(n, 3, h, w)}, got {out.dtype} {out.shape}")
    # The model's channel c comes from input channel src[c]; fold /255, -mean and /std into one affine step.
    src = (0, 1, 2) if input_order == spec.color_order else (2, 1, 0)
    for c in range(3):
        scale = np.float32(1.0 / (255.0 * spec.std[c]))
        shift = np.float32(spec.mean[c] / spec.std[c])
        np.multiply(batch[:, :, :, src[c]], scale, out=out[:, c], dtype=np.float32)
        out[:, c] -= shift
    return out


def input_shape(spec: ModelSpec, n: int) -> tuple[int, int, int, int]:
    """Shape of a batch of `n` model inputs: N x S x S x 3 for raw-frame graphs, N x 3 x S x S otherwise
    (the dtype is `spec.input_dtype`)."""
    size = spec.input_size
    return (n, size, size, 3) if spec.input_dtype == "uint8" else (n, 3, size, size)


def preprocess(frames: np.ndarray | Sequence[np.ndarray], spec: ModelSpec, *, input_order: str = "BGR",
               out: np.ndarray | None = None) -> np.ndarray:
    """OpenCV frame(s) -> the model's input tensor as the spec describes it.

    `frames`: one HxWx3 uint8 image, a sequence of them (any sizes), or an NxHxWx3 array.
    Returns float32 N x 3 x S x S (normalised, in the model's colour order) for float graphs and
    checkpoints, or uint8 N x S x S x 3 in BGR order for graphs that take raw frames
    (`spec.input_dtype == "uint8"`), which normalise inside.
    """
    if isinstance(frames, np.ndarray) and frames.ndim in (2, 3):
        frames = [frames]
    crops = [resize_and_crop(frame, spec) for frame in frames]
    if not crops:
        raise CatmoodError("preprocess got no frames")
    if out is None:
        if spec.input_dtype == "float32":
            return normalize(np.stack(crops), spec, input_order=input_order)
        out = np.empty(input_shape(spec, len(crops)), dtype=np.uint8)
    shape = input_shape(spec, len(crops))
    if out.shape != shape or out.dtype != np.dtype(spec.input_dtype):
        raise CatmoodError(f"output buffer must be {spec.input_dtype} {shape}, got {out.dtype} {out.shape}")
    for i, crop in enumerate(crops):  # straight into the caller's buffer: no batch copy per frame
        if spec.input_dtype == "uint8":
            out[i] = crop if input_order == "BGR" else crop[:, :, ::-1]
        else:
            normalize(crop[None], spec, input_order=input_order, out=out[i:i + 1])
    return out
