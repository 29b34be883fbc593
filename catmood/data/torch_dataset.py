"""A torch Dataset over the samples `discover_dataset` found."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .images import load_rgb
from .layouts import Sample


class ImageDataset(torch.utils.data.Dataset):
    """(image tensor, label) pairs. A file that fails to decode raises ImageError naming it."""

    def __init__(self, samples: Sequence[Sample], transform: Callable):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        return self.transform(load_rgb(sample.path)), sample.label

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]
