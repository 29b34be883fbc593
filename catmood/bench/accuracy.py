"""Top-1 accuracy of each format on the validation split, read the way the runtime reads images.

The images are the export gate's (`collect_images`), split with the seed training used (recorded in every
artifact), so a dataset without split folders never has bench score images the model trained on.
"""

from __future__ import annotations

import os

import numpy as np

from ..backends import Classifier
from ..errors import CatmoodError


def split_seed(classifier: Classifier) -> int:
    """The seed that split the model's dataset: in the checkpoint, the ONNX provenance or the engine sidecar."""
    if hasattr(classifier, "checkpoint"):
        return int(classifier.checkpoint.config.get("seed", 0))
    info = getattr(classifier, "provenance", None) or getattr(classifier, "sidecar", {}).get("onnx_provenance", {})
    return int(info.get("seed") or 0)


def format_accuracy(classifier: Classifier, data: str | os.PathLike) -> tuple[float, int, str]:
    """(accuracy, images, split name) on `data`'s validation split."""
    from ..data.layouts import discover_dataset
    from ..export.verify import collect_images

    names = tuple(classifier.spec.class_names)
    found = tuple(discover_dataset(data, check_images=False).class_names)
    if found != names:
        raise CatmoodError(f"{data}: classes {list(found)} differ from the model's {list(names)}")
    images = collect_images(names, dataset=data, seed=split_seed(classifier), max_images=1 << 30)
    if images.labels is None:
        raise CatmoodError(f"{data}: no validation images to measure accuracy on")
    logits = classifier.logits_of_frames(images.frames)
    return float((logits.argmax(1) == np.asarray(images.labels)).mean()), len(images.frames), "valid"
