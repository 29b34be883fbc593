"""What can be wrong with a dataset, each problem tied to the file (or folder) it is in.

Problems have a severity: `fatal` (the dataset cannot be trained on as it is), `error` (a bad file or CSV
row, left out of the splits; training refuses until told to skip bad files) and `warning` (trainable, but
look). The checks here look at images (each decoded once), class coverage of the splits and images shared
by two splits; the readers in `split_readers.py` report what they meet while reading. Nothing is changed
on disk.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..errors import ImageError

if TYPE_CHECKING:
    from .layouts import Sample

FATAL, ERROR, WARNING = "fatal", "error", "warning"
SEVERITY_ORDER = {FATAL: 0, ERROR: 1, WARNING: 2}


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str
    severity: str = ERROR

    def describe(self, root: Path | None = None) -> str:
        shown = self.path
        if root is not None:
            try:
                shown = self.path.relative_to(root)
            except ValueError:
                pass
        return f"{shown}: {self.reason}"


def sort_problems(problems: list[Problem]) -> None:
    """Most severe first, then by file: the order every report shows."""
    problems.sort(key=lambda p: (SEVERITY_ORDER[p.severity], str(p.path), p.reason))


# -- decoding images ------------------------------------------------------------------------------------

def _check_image(path: Path) -> tuple[Path, str | None, str | None]:
    """(path, problem or None, content hash or None). Reads the bytes once: hash, then decode."""
    from .images import load_rgb

    try:
        data = path.read_bytes()
    except OSError as exc:
        return path, f"cannot read file ({exc.strerror or exc})", None
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        load_rgb(path)
    except ImageError as exc:
        return path, exc.reason, digest
    return path, None, digest


def check_image_files(paths: Iterable[Path], progress: bool) -> dict[Path, tuple[str | None, str | None]]:
    """{path: (problem or None, content hash or None)} for every image, decoded on a few threads."""
    from tqdm.auto import tqdm

    paths = list(paths)
    workers = min(8, 2 * (os.cpu_count() or 1))
    results = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without holding the GIL
        for path, problem, digest in tqdm(pool.map(_check_image, paths), total=len(paths), unit="img",
                                          desc="checking images", disable=not progress or None, leave=False):
            results[path] = (problem, digest)
    return results


# -- the splits as a whole -------------------------------------------------------------------------------

def check_coverage(root: Path, split_dirs: dict[str, Path], class_names: tuple[str, ...],
                   splits: dict[str, list[Sample]], problems: list[Problem]) -> None:
    """Enough classes, no empty split, and every class where training and evaluation need it."""
    if len(class_names) < 2:
        problems.append(Problem(root, f"found {len(class_names)} class(es) {list(class_names)}; "
                                      "a classifier needs at least 2", FATAL))
    for split, samples in splits.items():
        if not samples:
            problems.append(Problem(split_dirs.get(split, root), f"the {split} split has no usable images", FATAL))
    present = {split: {s.label for s in samples} for split, samples in splits.items()}
    for label, name in enumerate(class_names):
        in_splits = [s for s in splits if label in present[s]]
        if not in_splits:
            problems.append(Problem(root, f"class {name!r} has no usable images in any split", FATAL))
        elif "train" in splits and label not in present["train"]:
            problems.append(Problem(split_dirs.get("train", root), f"class {name!r} has images in "
                                    f"{', '.join(in_splits)} but none in train: the model cannot learn it", FATAL))
        else:
            for split in splits:
                if splits[split] and label not in present[split]:
                    problems.append(Problem(split_dirs.get(split, root), f"class {name!r} has no images in "
                                            f"{split}: its {split} metrics will be undefined", WARNING))


def check_leaks(splits: dict[str, list[Sample]], results: dict, problems: list[Problem]) -> None:
    """The same image in two splits inflates every evaluation; say where (`splits` in train, valid, test
    order: the copy in the later split is the one named, at most 20 per pair of splits)."""
    owner: dict[str, tuple[str, Path]] = {}
    seen_pairs = defaultdict(int)
    for split, samples in splits.items():
        for sample in samples:
            digest = results.get(sample.path, (None, None))[1]
            if digest is None:
                continue
            if digest in owner and owner[digest][0] != split:
                first_split, first = owner[digest]
                key = (first_split, split)
                seen_pairs[key] += 1
                if seen_pairs[key] <= 20:
                    problems.append(Problem(sample.path, f"identical to {first_split} image {first.name}: "
                                                         "the same image in two splits inflates metrics",
                                            WARNING))
            else:
                owner.setdefault(digest, (split, sample.path))
