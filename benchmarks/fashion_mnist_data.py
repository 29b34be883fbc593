"""A small real-image dataset for the quality benchmark, written as a user would download it.

From the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist): its t10k (test)
file only, 4 classes of which three look alike (T-shirt/top, pullover, coat, shirt), 150/40/50 images per
class for train/valid/test, as 28x28 greyscale JPEGs in the Roboflow `_classes.csv` layout.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
# Fashion-MNIST label -> class name; T-shirt/top, pullover, coat and shirt are the dataset's most confused.
CLASSES = {0: "tshirt", 2: "pullover", 4: "coat", 6: "shirt"}
PER_CLASS = {"train": 150, "valid": 40, "test": 50}


def read_t10k(source: Path = SOURCE) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28 uint8, labels N) of the t10k file."""
    images, labels = source / "t10k-images-idx3-ubyte.gz", source / "t10k-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        raise SystemExit(f"{source}: Fashion-MNIST t10k files not found; "
                         "apt-get install dataset-fashion-mnist")
    x = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8)
    return x, y


def chosen_images(seed: int = 0, source: Path = SOURCE) -> dict[str, list[tuple[np.ndarray, str]]]:
    """split -> [(image, class name)], a seeded draw of PER_CLASS images per class, no image twice; "rest":
    the t10k images of the same classes left over (760 per class), for a tighter held-out estimate."""
    x, y = read_t10k(source)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[np.ndarray, str]]] = {s: [] for s in (*PER_CLASS, "rest")}
    for label, name in CLASSES.items():
        order = rng.permutation(np.flatnonzero(y == label))
        start = 0
        for split, n in PER_CLASS.items():
            splits[split] += [(x[i], name) for i in order[start:start + n]]
            start += n
        splits["rest"] += [(x[i], name) for i in order[start:]]
    return splits


def write_dataset(out: Path, seed: int = 0, source: Path = SOURCE, only: tuple[str, ...] | None = None) -> Path:
    """The Roboflow CSV layout: out/{train,valid,test}/ with JPEGs and a one-hot _classes.csv each; the
    left-over images alike in out.parent/rest/ (not part of the dataset: catmood never sees them in training)."""
    names = sorted(CLASSES.values())
    for split, items in chosen_images(seed, source).items():
        if only is not None and split not in only:
            continue
        folder = out / split if split != "rest" else out.parent / "rest"
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["filename, " + ", ".join(names)]  # Roboflow writes a space before each class name
        for i, (image, name) in enumerate(items):
            filename = f"{split}_{i:04d}_{name}.jpg"
            if not cv2.imwrite(str(folder / filename), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise SystemExit(f"cannot write {folder / filename}")
            lines.append(",".join([filename] + ["1" if n == name else "0" for n in names]))
        (folder / "_classes.csv").write_text("\n".join(lines) + "\n")
    return out


def rest_samples(data: Path, class_names) -> list:
    """catmood Samples of the left-over images next to `data`, labelled in `class_names` order."""
    from catmood.data.layouts import Sample

    folder = data.parent / "rest"
    return [Sample(path, class_names.index(path.stem.rpartition("_")[2]))
            for path in sorted(folder.glob("rest_*.jpg"))]
