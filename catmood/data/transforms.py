"""Image -> tensor transforms for training and evaluation.

The evaluation transform *is* `catmood.preprocess` (same resize, crop, rounding and normalisation as the
deployed model gets), so validation accuracy measured during training is the accuracy deployment sees.
Training augmentation uses torchvision; it only has to end in the same input size and normalisation.
"""

from __future__ import annotations

import numpy as np
import torch

from ..preprocess import normalize, resize_and_crop
from ..spec import ModelSpec


# The light augmentation's crops keep 70-100% of the image: the evaluation crop keeps 77% (crop_pct 0.875).
LIGHT_SCALE = (0.7, 1.0)


class EvalTransform:
    """RGB uint8 HxWx3 (or a PIL image) -> float32 3xSxS tensor, exactly as deployment preprocesses.

    A class rather than a closure so DataLoader workers can pickle it.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec.replace(input_dtype="float32", input_layout="NCHW")

    def __call__(self, image) -> torch.Tensor:
        rgb = np.asarray(image, dtype=np.uint8)
        crop = resize_and_crop(rgb, self.spec)
        return torch.from_numpy(normalize(crop[None], self.spec, input_order="RGB")[0])


def train_transform(spec: ModelSpec, augment: str = "trivialaugment", scale: tuple[float, float] = (0.35, 1.0)):
    """Training augmentation ending in the spec's input size and normalisation (RGB uint8 array in).

    - "trivialaugment": random resized crop, horizontal flip, TrivialAugmentWide (the seed's recipe);
    - "light": a random resized crop of most of the image and a horizontal flip, nothing else: for small or
      greyscale images, where TrivialAugmentWide's colour and shape changes cost accuracy (issue 11);
    - "flip-rotate": resize + centre crop as at evaluation, then flip and a small rotation (linear probe);
    - "none": the evaluation transform.
    """
    from torchvision.transforms import v2

    if augment == "none":
        return EvalTransform(spec)
    interpolation = {"nearest": v2.InterpolationMode.NEAREST, "bilinear": v2.InterpolationMode.BILINEAR,
                     "bicubic": v2.InterpolationMode.BICUBIC, "area": v2.InterpolationMode.BILINEAR,
                     }[spec.interpolation]
    size = spec.input_size
    if spec.color_order != "RGB":
        raise ValueError("training augmentation produces RGB tensors; use a spec with color_order='RGB'")
    # Rotations and shears of tensors support nearest and bilinear only; bilinear is plenty for augmentation.
    geometric = v2.InterpolationMode.BILINEAR
    if augment == "trivialaugment":
        steps = [v2.RandomResizedCrop(size, scale=scale, interpolation=interpolation, antialias=True),
                 v2.RandomHorizontalFlip(), v2.TrivialAugmentWide(interpolation=geometric)]
    elif augment == "light":
        steps = [v2.RandomResizedCrop(size, scale=LIGHT_SCALE, ratio=(0.85, 1.18), interpolation=interpolation,
                                      antialias=True),
                 v2.RandomHorizontalFlip()]
    elif augment == "flip-rotate":
        steps = [v2.Resize(spec.resize_size if spec.crop == "center" else (size, size),
                           interpolation=interpolation, antialias=True),
                 v2.CenterCrop(size), v2.RandomHorizontalFlip(), v2.RandomRotation(15, interpolation=geometric)]
    else:
        raise ValueError(f"unknown augmentation {augment!r}; choose trivialaugment, light, flip-rotate or none")
    return v2.Compose([_ToImageTensor(), *steps, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(spec.mean), list(spec.std))])


class _ToImageTensor:
    """HxWx3 uint8 array or PIL image -> 3xHxW uint8 tensor that torchvision v2 treats as an image."""

    def __call__(self, image):
        from torchvision import tv_tensors

        array = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        if not array.flags.writeable:  # a PIL image's buffer: torch warns about tensors sharing read-only memory
            array = array.copy()
        return tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))


def choose_augment(samples, spec: ModelSpec, sample: int = 32) -> tuple[str, str]:
    """What `augment: auto` means for a dataset, with the reason: "light" when its images are greyscale or
    smaller than half the input size (upscaled, they have little detail to spare), else "trivialaugment".
    Looks at up to `sample` training images spread evenly over the split."""
    from .images import load_rgb

    step = max(1, len(samples) // sample)
    images = [load_rgb(s.path) for s in list(samples)[::step][:sample]]
    if not images:
        return "light", "no images to look at"
    grey = all(np.array_equal(im[..., 0], im[..., 1]) and np.array_equal(im[..., 1], im[..., 2]) for im in images)
    side = float(np.median([min(im.shape[:2]) for im in images]))
    if grey:
        return "light", "greyscale images"
    if side < spec.input_size / 2:
        return "light", f"small images (median side {side:.0f} px for a {spec.input_size} px input)"
    return "trivialaugment", f"colour images of median side {side:.0f} px"
