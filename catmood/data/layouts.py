"""Find a dataset's layout, classes and splits, with every problem in it (see `checks.py`).

Layouts read (auto-detected):
- `roboflow-folders`: train/, valid/ (or val/), test/, each holding one folder per class;
- `roboflow-csv`: split folders holding images plus Roboflow's one-hot `_classes.csv`;
- `class-folders`: one folder per class and no splits (or a single `_classes.csv` folder); split here,
  stratified and seeded.

`split_readers.py` reads one folder of either kind; this module finds the splits, splits a dataset that has
none, and puts the result in a `DatasetIndex`. Nothing is changed on disk.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .checks import ERROR, FATAL, WARNING, Problem, check_coverage, check_image_files, check_leaks, sort_problems
from .images import is_image_name
from .split_readers import has_classes_csv, read_split, visible

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "valid": "valid", "val": "valid", "validation": "valid",
    "test": "test", "testing": "test",
}
Found = dict[str, dict[str, list[Path]]]  # {split, or "all" before splitting: {class name: image files}}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class DatasetIndex:
    """What `discover_dataset` found: plain data, cheap to pass around and print."""

    root: Path
    layout: str
    class_names: tuple[str, ...]
    splits: dict[str, list[Sample]]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images_checked: bool = False

    def counts(self) -> dict[str, list[int]]:
        """Images per class (in label order) for each split."""
        out = {}
        for split, samples in self.splits.items():
            per_class = Counter(s.label for s in samples)
            out[split] = [per_class.get(i, 0) for i in range(len(self.class_names))]
        return out

    def problems_of(self, *severities: str) -> list[Problem]:
        return [p for p in self.problems if p.severity in severities]

    def is_trainable(self, skip_bad: bool = False) -> bool:
        blocking = (FATAL,) if skip_bad else (FATAL, ERROR)
        return not self.problems_of(*blocking)

    def require_trainable(self, skip_bad: bool = False) -> None:
        """Raise DatasetError (one line per problem, the first line the summary) unless trainable."""
        if self.is_trainable(skip_bad):
            return
        fatal = self.problems_of(FATAL)
        errors = self.problems_of(ERROR)
        blocking = fatal + ([] if skip_bad else errors)
        head = f"dataset {self.root} cannot be trained on: {len(blocking)} problem(s)"
        if errors and not fatal and not skip_bad:
            head += f" ({len(errors)} bad file(s) or row(s): fix them, or pass --skip-bad to leave them out)"
        shown = [p.describe(self.root) for p in blocking[:20]]
        more = [f"... and {len(blocking) - 20} more (run `catmood data inspect {self.root}`)"] \
            if len(blocking) > 20 else []
        raise DatasetError("\n  ".join([head, *shown, *more]))


# -- splitting ------------------------------------------------------------------------------------------

def stratified_split(by_class: dict[str, list[Path]], fractions: dict[str, float],
                     seed: int) -> dict[str, dict[str, list[Path]]]:
    """Split each class's files by `fractions` (split -> share of the whole, the rest goes to train).

    Deterministic for a seed, whatever order the filesystem lists files in, and stable per class (adding a
    class does not reshuffle the others). A class with at least one image per split gets one in each.
    """
    out: dict[str, dict[str, list[Path]]] = {s: {} for s in ("train", *fractions)}
    for name in sorted(by_class):
        files = sorted(by_class[name])
        random.Random(f"catmood-split:{seed}:{name}").shuffle(files)
        n = len(files)
        start = 0
        for split, fraction in fractions.items():
            k = int(round(n * fraction))
            if n >= len(fractions) + 1:
                k = max(k, 1)
            k = min(k, max(0, n - start - 1))  # train always keeps at least one
            out[split][name] = sorted(files[start:start + k])
            start += k
        out["train"][name] = sorted(files[start:])
    return out


# -- the entry point ------------------------------------------------------------------------------------

def discover_dataset(root: str | os.PathLike, *, check_images: bool = True, seed: int = 0,
                     valid_fraction: float = 0.2, test_fraction: float = 0.1,
                     progress: bool = False) -> DatasetIndex:
    """Read the dataset at `root` whatever its layout; report every problem instead of stopping at one.

    Splits are taken from the data when present; a dataset without them is split here (stratified, by
    `seed`), and one without a validation split gets `valid_fraction` of train held out. With
    `check_images`, every image is decoded once (bad ones become problems and leave the splits) and exact
    duplicates across splits are flagged.
    """
    root = _dataset_folder(root, valid_fraction, test_fraction)
    problems: list[Problem] = []
    entries = [e for e in sorted(root.iterdir()) if visible(e)]
    split_dirs = _find_split_dirs(entries, problems)
    if split_dirs:
        layout, raw = _read_splits(root, entries, split_dirs, problems)
    else:
        layout, raw = _read_unsplit(root, entries, problems)
    decoded = None
    if check_images and raw:
        raw, decoded = _drop_undecodable(raw, problems, progress)
    raw, notes = _split_here(raw, split_dirs, valid_fraction, test_fraction, seed)

    class_names = tuple(sorted({name for by_class in raw.values() for name in by_class}))
    label = {name: i for i, name in enumerate(class_names)}
    splits = {split: sorted((Sample(p, label[c]) for c, files in raw[split].items() for p in files),
                            key=lambda s: s.path)
              for split in SPLITS if split in raw}

    check_coverage(root, split_dirs, class_names, splits, problems)
    if decoded is not None:
        check_leaks(splits, decoded, problems)
    sort_problems(problems)
    return DatasetIndex(root=root, layout=layout, class_names=class_names, splits=splits,
                        problems=problems, notes=notes, images_checked=decoded is not None)


def _dataset_folder(root: str | os.PathLike, valid_fraction: float, test_fraction: float) -> Path:
    """The dataset's folder, resolved; what cannot be a dataset or a split is a DatasetError."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a dataset folder (give the dataset's top folder: the one "
                           "holding train/, a _classes.csv or the class folders)")
    if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1 or valid_fraction + test_fraction >= 1:
        raise DatasetError(f"split fractions valid={valid_fraction} test={test_fraction} leave nothing to train on")
    return root.resolve()


def _find_split_dirs(entries: list[Path], problems: list[Problem]) -> dict[str, Path]:
    """{canonical split: its folder} among the top-level entries (train/, val/, validation/, ...)."""
    split_dirs: dict[str, Path] = {}
    for entry in entries:
        canonical = SPLIT_ALIASES.get(entry.name.lower()) if entry.is_dir() else None
        if canonical is None:
            continue
        if canonical in split_dirs:
            problems.append(Problem(entry, f"both {split_dirs[canonical].name}/ and {entry.name}/ look like the "
                                           f"{canonical} split; keep one", FATAL))
            continue
        split_dirs[canonical] = entry
    return split_dirs


def _read_splits(root: Path, entries: list[Path], split_dirs: dict[str, Path],
                 problems: list[Problem]) -> tuple[str, Found]:
    """(layout, {split: {class: files}}) of a dataset with split folders."""
    raw: Found = {}
    kinds = set()
    for split in SPLITS:
        if split in split_dirs:
            kind, by_class = read_split(split_dirs[split], problems)
            kinds.add(kind)
            if by_class is not None:
                raw[split] = by_class
    layout = kinds.pop() if len(kinds) == 1 else "mixed"
    for entry in entries:
        if entry.is_dir() and entry not in split_dirs.values():
            problems.append(Problem(entry, "folder ignored: not a split (expected train/, valid/, test/)",
                                    WARNING))
    if "train" not in split_dirs:
        problems.append(Problem(root, f"no train/ split (found {', '.join(sorted(split_dirs))})", FATAL))
    return layout, raw


def _read_unsplit(root: Path, entries: list[Path],
                  problems: list[Problem]) -> tuple[str, Found]:
    """(layout, {"all": {class: files}}) of a dataset without split folders, to be split here."""
    if not has_classes_csv(entries) and not any(e.is_dir() for e in entries):
        loose = sum(1 for e in entries if is_image_name(e))
        raise DatasetError(f"{root}: no dataset layout found ({loose} loose image(s), no class folders): "
                           "expected train/ valid/ test/ folders, one folder per class, or a _classes.csv")
    kind, by_class = read_split(root, problems)
    layout = "roboflow-csv" if kind == "roboflow-csv" else "class-folders"
    return layout, ({} if by_class is None else {"all": by_class})


def _drop_undecodable(raw: Found, problems: list[Problem], progress: bool) -> tuple[Found, dict]:
    """Decode every image once; bad ones become problems and leave `raw`. Returns (raw, check results)."""
    all_paths = sorted({p for by_class in raw.values() for files in by_class.values() for p in files})
    results = check_image_files(all_paths, progress)
    for path in all_paths:
        reason, _ = results[path]
        if reason:
            problems.append(Problem(path, reason))
    bad = {p for p in all_paths if results[p][0]}
    raw = {split: {c: [p for p in files if p not in bad] for c, files in by_class.items()}
           for split, by_class in raw.items()}
    return raw, results


def _split_here(raw: Found, split_dirs: dict[str, Path], valid_fraction: float, test_fraction: float,
                seed: int) -> tuple[Found, list[str]]:
    """Split here when the data has no splits (or no validation split); the note says how."""
    notes: list[str] = []
    if "all" in raw:
        total = sum(len(v) for v in raw["all"].values())
        fractions = {"valid": valid_fraction, "test": test_fraction}
        raw = stratified_split(raw.pop("all"), {k: v for k, v in fractions.items() if v > 0}, seed)
        notes.append(f"no splits on disk: {total} images split train/valid/test "
                     f"{1 - valid_fraction - test_fraction:.0%}/{valid_fraction:.0%}/{test_fraction:.0%}, "
                     f"stratified, seed {seed}")
    elif "train" in raw and "valid" not in split_dirs and valid_fraction > 0:
        carved = stratified_split(raw["train"], {"valid": valid_fraction}, seed)
        raw["train"], raw["valid"] = carved["train"], carved["valid"]
        notes.append(f"no valid/ split on disk: {valid_fraction:.0%} of train held out for validation, "
                     f"stratified, seed {seed}")
    return raw, notes
