"""A synthetic cat-face dataset in the Roboflow folder layout: deterministic for a seed, safe to rerun."""

from __future__ import annotations

import json
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ...errors import DatasetError
from ...fileio import atomic_write_bytes, atomic_write_json
from .draw import render_cat
from .face import DEFAULT_MOODS, mood_ranges

SYNTH_VERSION = 1
MARKER = "synth.json"


def _image_rng(seed: int, mood: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(mood.encode()), index])


def synthesize_dataset(out: str | Path, *, per_class: int = 100, size: int = 224, seed: int = 0,
                       moods: tuple[str, ...] = DEFAULT_MOODS, fractions=(0.7, 0.15, 0.15),
                       force: bool = False, progress: bool = False) -> dict:
    """Write a synthetic dataset in the Roboflow folder layout (OUT/{train,valid,test}/<mood>/*.jpg).

    `per_class` images per mood in all, split by `fractions`. Deterministic for a seed. A folder already
    holding the same synthetic dataset is left as it is; anything else already in `out` is never deleted
    (another synthetic dataset is replaced only with `force`). Returns the parameters written to synth.json.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    _check_arguments(per_class, size, moods)
    params = dict(generator="catmood.synth", version=SYNTH_VERSION, per_class=per_class, size=size, seed=seed,
                  moods=sorted(moods), fractions=list(fractions))
    if _already_there(out, params, force):
        return params

    n_valid = int(round(per_class * fractions[1]))
    n_test = int(round(per_class * fractions[2]))
    n_valid, n_test = max(1, n_valid), max(1, n_test)
    jobs = []
    for mood in sorted(moods):
        for i in range(per_class):
            split = "valid" if i < n_valid else "test" if i < n_valid + n_test else "train"
            jobs.append((mood, i, out / split / mood / f"{mood}_{i:05d}.jpg"))

    def write(job) -> None:
        mood, i, path = job
        rng = _image_rng(seed, mood, i)
        image = render_cat(rng, mood, size)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
        if not ok:
            raise DatasetError(f"{path}: JPEG encoding failed")
        atomic_write_bytes(path, data.tobytes())

    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in tqdm(pool.map(write, jobs), total=len(jobs), unit="img", desc="drawing cats",
                      disable=not progress or None):
            pass
    atomic_write_json(out / MARKER, params)  # written last: its presence means the dataset is complete
    return params


def _check_arguments(per_class: int, size: int, moods: tuple[str, ...]) -> None:
    if per_class < 3:
        raise DatasetError(f"--per-class must be at least 3 (one image per split), got {per_class}")
    if size < 32:
        raise DatasetError(f"--size must be at least 32 pixels, got {size}")
    for mood in moods:
        mood_ranges(mood)
    if len(set(moods)) < 2:
        raise DatasetError("a synthetic dataset needs at least 2 different moods")


def _already_there(out: Path, params: dict, force: bool) -> bool:
    """True when `out` holds this very dataset; clears another synthetic dataset when forced; refuses the rest."""
    marker = out / MARKER
    if out.exists() and any(out.iterdir()):
        try:
            existing = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise DatasetError(f"{out}: folder is not empty and holds no catmood synthetic dataset; "
                               "choose a new folder") from None
        if existing == params:
            return True
        if not force:
            raise DatasetError(f"{out}: holds a synthetic dataset made with other settings; "
                               "pass --force to replace it, or choose a new folder")
        for split in ("train", "valid", "test"):
            shutil.rmtree(out / split, ignore_errors=True)
        marker.unlink()
    return False
