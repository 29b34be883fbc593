"""Datasets: layouts people download, validation with clear errors, torch Datasets, synthetic data.

Torch-dependent pieces (`ImageDataset`, transforms) live in their own modules so that inspecting a
dataset does not pay for importing torch.
"""

from .images import IMAGE_EXTENSIONS, load_rgb
from .checks import Problem
from .layouts import SPLITS, DatasetIndex, Sample, discover_dataset

__all__ = ["IMAGE_EXTENSIONS", "SPLITS", "DatasetIndex", "Problem", "Sample", "discover_dataset", "load_rgb"]
