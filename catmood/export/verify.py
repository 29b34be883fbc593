"""The parity gate: every exported artifact against the PyTorch model, on real images.

Each image goes the way it will at run time (read with OpenCV, `catmood.preprocess` with the artifact's
own spec) into the artifact, and the same way into the PyTorch model (FP32, CPU; training's evaluation
transform calls the same preprocessing). The gate compares logits and probabilities, top-1 agreement,
and lists every image whose label flips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..backends.base import Classifier, softmax
from ..data.images import is_image_name
from ..errors import CatmoodError
from ..preprocess import preprocess
from ..timing import time_it
from .options import Gate


@dataclass
class ParityImages:
    frames: list[np.ndarray]          # BGR, as the runtime reads them
    names: list[str]
    labels: list[int] | None          # class indices when known
    source: str


def collect_images(class_names: tuple[str, ...], *, images_dir: str | os.PathLike | None = None,
                   dataset: str | os.PathLike | None = None, seed: int = 0, max_images: int = 200) -> ParityImages:
    """Real images for the gate: `images_dir`, else the validation split of `dataset`, else generated."""
    if images_dir is not None:
        root = Path(images_dir)
        paths = list_images(root, "--images", max_images)
        known = {name: i for i, name in enumerate(class_names)}
        labels = [known.get(p.parent.name.strip()) for p in paths]
        return _read(paths, [str(p.relative_to(root)) for p in paths],
                     labels if all(label is not None for label in labels) else None, f"images in {root}")
    found = split_samples(dataset, class_names, "valid", seed, max_images)
    if found:
        samples, root = found
        return _read([s.path for s in samples], [str(s.path.relative_to(root)) for s in samples],
                     [s.label for s in samples], f"validation split of {root}")
    from ..data.synth import DEFAULT_MOODS, render_cat

    rng = np.random.default_rng(seed)
    count = min(max_images, 64)
    frames = [render_cat(rng, DEFAULT_MOODS[i % len(DEFAULT_MOODS)], 256) for i in range(count)]
    return ParityImages(frames, [f"generated_{i:03d}" for i in range(count)], None,
                        "generated cat faces (no dataset recorded in the checkpoint or found)")


def list_images(root: Path, flag: str, limit: int | None = None) -> list[Path]:
    """The first `limit` image files under `root`, sorted; one clear line when there is none."""
    if not root.is_dir():
        raise CatmoodError(f"{root}: {flag} folder not found")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p))[:limit]
    if not paths:
        raise CatmoodError(f"{root}: no images found")
    return paths


def split_samples(dataset: str | os.PathLike | None, class_names, split: str, seed: int, limit: int):
    """(up to `limit` samples of `split`, spread over the classes, dataset root), or None when `dataset` is
    not there, has no such split or other classes. `seed` splits a dataset without split folders as
    training did."""
    if dataset is None or not Path(dataset).is_dir():
        return None
    from ..data.layouts import discover_dataset

    index = discover_dataset(dataset, seed=seed, check_images=False)
    samples = index.splits.get(split) or []
    if not samples or tuple(index.class_names) != tuple(class_names):
        return None
    return spread(samples, limit), index.root


def spread(samples, limit: int):
    """Up to `limit` samples, taken evenly so every class is represented."""
    if len(samples) <= limit:
        return list(samples)
    step = len(samples) / limit
    return [samples[int(i * step)] for i in range(limit)]


def _read(paths, names, labels, source) -> ParityImages:
    frames, kept_names, kept_labels = [], [], []
    for i, path in enumerate(paths):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            continue  # the dataset checks report unreadable files; the gate just needs real pictures
        frames.append(frame)
        kept_names.append(names[i])
        if labels is not None:
            kept_labels.append(labels[i])
    if not frames:
        raise CatmoodError(f"none of the images from {source} could be read")
    return ParityImages(frames, kept_names, kept_labels if labels is not None else None, source)


# The export report's latency column is a rough guide (`catmood bench` measures properly): a large model on a
# CPU takes seconds per image, and 20 of them must not stall an export for a minute.
LATENCY_MAX_SECONDS = 5.0


def batch1_latency_ms(classifier: Classifier, frame: np.ndarray, repeats: int = 20, warmup: int = 3,
                      max_seconds: float = LATENCY_MAX_SECONDS, progress: bool = False, desc: str = "latency") -> float:
    """Median wall time of one batch-1 inference (preprocessed input), after warm-up: `repeats` runs, or
    as many as `max_seconds` allows (at least 3)."""
    from tqdm.auto import tqdm

    x = preprocess(frame, classifier.spec)
    with tqdm(total=warmup + repeats, desc=desc, unit="run", disable=not progress or None, leave=False) as bar:
        samples = time_it(lambda: classifier.logits(x), warmup=warmup, iterations=repeats, max_seconds=max_seconds,
                          progress=bar.update)
    return float(np.median(samples))


def logits_with_progress(classifier: Classifier, frames, progress: bool, desc: str) -> np.ndarray:
    """`classifier.logits_of_frames(frames)` with a bar (images, rate, time left) when `progress` and a terminal."""
    from tqdm.auto import tqdm

    with tqdm(total=len(frames), desc=desc, unit="img", disable=not progress or None, leave=False) as bar:
        return classifier.logits_of_frames(frames, progress=bar.update)


@dataclass
class Parity:
    max_logit_diff: float
    mean_logit_diff: float
    max_prob_diff: float
    mean_prob_diff: float
    agreement: float
    flips: list[dict] = field(default_factory=list)
    accuracy: float | None = None
    reference_accuracy: float | None = None   # PyTorch's, on the same images

    @property
    def accuracy_drop(self) -> float | None:
        return None if self.accuracy is None else self.reference_accuracy - self.accuracy

    def passes(self, gate: Gate) -> bool:
        if gate.max_logit_diff is not None and not self.max_logit_diff <= gate.max_logit_diff:
            return False
        # Unlabelled images cannot show a drop; the gatekeeper notes that the check did not run.
        drop = self.accuracy_drop
        if gate.max_accuracy_drop is not None and drop is not None and drop > gate.max_accuracy_drop + 1e-9:
            return False
        return self.agreement >= gate.min_agreement


def compare(reference: np.ndarray, logits: np.ndarray, images: ParityImages, class_names) -> Parity:
    if reference.shape != logits.shape:
        raise CatmoodError(f"artifact gives logits of shape {logits.shape}, PyTorch {reference.shape}")
    diff = np.abs(reference - logits)
    prob_diff = np.abs(softmax(reference) - softmax(logits))
    ref_top, top = reference.argmax(1), logits.argmax(1)
    flips = [dict(image=images.names[i], pytorch=class_names[ref_top[i]], artifact=class_names[top[i]])
             for i in np.flatnonzero(ref_top != top)]
    accuracy = reference_accuracy = None
    if images.labels is not None:
        labels = np.asarray(images.labels)
        accuracy, reference_accuracy = float((top == labels).mean()), float((ref_top == labels).mean())
    return Parity(float(diff.max()), float(diff.mean()), float(prob_diff.max()), float(prob_diff.mean()),
                  float((ref_top == top).mean()), flips, accuracy, reference_accuracy)
