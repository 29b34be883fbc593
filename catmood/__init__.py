"""catmood: a cat-mood image classifier from training to real-time deployment."""

from .errors import CatmoodError, DatasetError, ImageError, SpecError
from .spec import ModelSpec

__version__ = "0.1.0"

__all__ = ["CatmoodError", "DatasetError", "ImageError", "ModelSpec", "SpecError", "__version__"]
