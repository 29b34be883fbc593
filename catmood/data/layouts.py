"""Find a dataset's layout, classes and splits, and every problem in it, with the file each problem is in.

Layouts read (auto-detected):
- `roboflow-folders`: train/, valid/ (or val/), test/, each holding one folder per class;
- `roboflow-csv`: split folders holding images plus `_classes.csv` (a `filename` column, then one-hot class
  columns whose names may start with a space, as Roboflow writes them);
- `class-folders`: one folder per class and no splits (or a single `_classes.csv` folder); split here,
  stratified and seeded.

Problems have a severity: `fatal` (the dataset cannot be trained on as it is), `error` (a bad file or CSV
row, left out of the splits; training refuses until told to skip bad files) and `warning` (trainable, but
look). Nothing is changed on disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import DatasetError, ImageError
from .images import NEEDS_CONVERSION, describe_unreadable, is_image_name

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "valid": "valid", "val": "valid", "validation": "valid",
    "test": "test", "testing": "test",
}
CSV_NAME = "_classes.csv"
# Files that operating systems and tools drop into folders; never data, never worth a complaint.
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "readme.txt", "readme.md", "readme.dataset.txt",
                           "readme.roboflow.txt", "data.yaml", "labels.txt"})

FATAL, ERROR, WARNING = "fatal", "error", "warning"
SEVERITY_ORDER = {FATAL: 0, ERROR: 1, WARNING: 2}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


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


# -- reading one split ---------------------------------------------------------------------------------

def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.lower() not in IGNORED_NAMES


def _files_below(folder: Path) -> list[Path]:
    """Every visible file below `folder` (class folders may nest), sorted for determinism."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if _visible(path):
                found.append(path)
    return sorted(found)


def _read_class_folders(folder: Path, problems: list[Problem]) -> dict[str, list[Path]]:
    """{class name: image files} for a folder of class folders. Loose files are reported."""
    by_class: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if not _visible(entry):
            continue
        if entry.is_dir():
            name = entry.name.strip()
            files = by_class.setdefault(name, [])
            for path in _files_below(entry):
                if is_image_name(path):
                    files.append(path)
                else:
                    problems.append(Problem(path, describe_unreadable(path)))
            if not files:
                problems.append(Problem(entry, f"class folder {entry.name!r} holds no images", WARNING))
        elif is_image_name(entry):
            problems.append(Problem(entry, "image outside any class folder: its class is unknown"))
    return by_class


def _read_classes_csv(folder: Path, problems: list[Problem]) -> dict[str, list[Path]] | None:
    """{class name: image files} from a Roboflow one-hot `_classes.csv`; None if the CSV is unusable."""
    csv_path = next(p for p in folder.iterdir() if p.name.lower() == CSV_NAME)
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(Problem(csv_path, f"cannot read the CSV ({exc})", FATAL))
        return None
    if not rows or not any(cell.strip() for cell in rows[0]):
        problems.append(Problem(csv_path, "the CSV is empty (no header row)", FATAL))
        return None
    header = [cell.strip() for cell in rows[0]]
    lowered = [h.lower() for h in header]
    if "filename" not in lowered:
        problems.append(Problem(csv_path, f"no 'filename' column (header: {rows[0]})", FATAL))
        return None
    file_col = lowered.index("filename")
    class_cols = [(i, name) for i, name in enumerate(header) if i != file_col and name]
    names = [name for _, name in class_cols]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(Problem(csv_path, f"class column(s) {dupes} appear twice", FATAL))
        return None
    if not class_cols:
        problems.append(Problem(csv_path, "no class columns after 'filename'", FATAL))
        return None

    by_class: dict[str, list[Path]] = {name: [] for name in names}
    seen: dict[str, int] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{CSV_NAME} line {line_no}"
        if len(row) != len(rows[0]):
            problems.append(Problem(csv_path, f"{where}: {len(row)} fields, the header has {len(rows[0])}"))
            continue
        filename = row[file_col].strip()
        if not filename:
            problems.append(Problem(csv_path, f"{where}: empty filename"))
            continue
        if filename in seen:
            problems.append(Problem(folder / filename, f"listed twice in {CSV_NAME} (lines {seen[filename]} "
                                                       f"and {line_no})"))
            continue
        seen[filename] = line_no
        marked, bad = [], []
        for i, name in class_cols:
            value = row[i].strip()
            if value in ("1", "1.0"):
                marked.append(name)
            elif value not in ("0", "0.0", ""):
                bad.append(f"{name}={value!r}")
        path = folder / filename
        if bad:
            problems.append(Problem(path, f"{where}: values must be 0 or 1, got {', '.join(bad)}"))
        elif not marked:
            problems.append(Problem(path, f"{where}: no class marked (all-zero row)"))
        elif len(marked) > 1:
            problems.append(Problem(path, f"{where}: several classes marked ({', '.join(marked)}); "
                                          "only single-label (multi-class) data is supported"))
        elif not path.is_file():
            problems.append(Problem(path, f"{where} names this file, but it does not exist"))
        else:
            by_class[marked[0]].append(path)

    listed = {(folder / name).resolve() for name in seen}
    for path in _files_below(folder):
        if path.name.lower() == CSV_NAME or path.resolve() in listed:
            continue
        if is_image_name(path) or path.suffix.lower() in NEEDS_CONVERSION:
            problems.append(Problem(path, f"image not listed in {CSV_NAME}: its class is unknown"))
        else:
            problems.append(Problem(path, describe_unreadable(path)))
    return by_class


def _read_split(folder: Path, problems: list[Problem]) -> tuple[str, dict[str, list[Path]] | None]:
    if any(p.name.lower() == CSV_NAME for p in folder.iterdir()):
        return "roboflow-csv", _read_classes_csv(folder, problems)
    return "roboflow-folders", _read_class_folders(folder, problems)


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


# -- checking images ------------------------------------------------------------------------------------

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


def _check_images(paths: Iterable[Path], progress: bool) -> dict[Path, tuple[str | None, str | None]]:
    from tqdm.auto import tqdm

    paths = list(paths)
    workers = min(8, 2 * (os.cpu_count() or 1))
    results = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without holding the GIL
        for path, problem, digest in tqdm(pool.map(_check_image, paths), total=len(paths), unit="img",
                                          desc="checking images", disable=not progress or None, leave=False):
            results[path] = (problem, digest)
    return results


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
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (point --data at the dataset's top folder)")
    if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1 or valid_fraction + test_fraction >= 1:
        raise DatasetError(f"split fractions valid={valid_fraction} test={test_fraction} leave nothing to train on")
    root = root.resolve()
    problems: list[Problem] = []
    notes: list[str] = []

    entries = [e for e in sorted(root.iterdir()) if _visible(e)]
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

    raw: dict[str, dict[str, list[Path]]] = {}
    if split_dirs:
        kinds = set()
        for split in SPLITS:
            if split in split_dirs:
                kind, by_class = _read_split(split_dirs[split], problems)
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
    else:
        has_csv = any(e.name.lower() == CSV_NAME for e in entries)
        if not has_csv and not any(e.is_dir() for e in entries):
            loose = sum(1 for e in entries if is_image_name(e))
            raise DatasetError(f"{root}: no dataset layout found ({loose} loose image(s), no class folders): "
                               "expected train/ valid/ test/ folders, one folder per class, or a _classes.csv")
        kind, by_class = _read_split(root, problems)
        layout = "roboflow-csv" if kind == "roboflow-csv" else "class-folders"
        if by_class is not None:
            raw = {"all": by_class}

    # Decode every image once; bad ones become problems and leave the index.
    images_checked = False
    if check_images and raw:
        all_paths = sorted({p for by_class in raw.values() for files in by_class.values() for p in files})
        results = _check_images(all_paths, progress)
        images_checked = True
        for path in all_paths:
            reason, _ = results[path]
            if reason:
                problems.append(Problem(path, reason))
        bad = {p for p in all_paths if results[p][0]}
        raw = {split: {c: [p for p in files if p not in bad] for c, files in by_class.items()}
               for split, by_class in raw.items()}

    # Split here when the data has no splits (or no validation split).
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

    class_names = tuple(sorted({name for by_class in raw.values() for name in by_class}))
    label = {name: i for i, name in enumerate(class_names)}
    splits = {split: sorted((Sample(p, label[c]) for c, files in raw[split].items() for p in files),
                            key=lambda s: s.path)
              for split in SPLITS if split in raw}

    _check_coverage(root, split_dirs, class_names, splits, problems)
    if images_checked:
        _check_leaks(splits, results, problems)

    problems.sort(key=lambda p: (SEVERITY_ORDER[p.severity], str(p.path), p.reason))
    return DatasetIndex(root=root, layout=layout, class_names=class_names, splits=splits,
                        problems=problems, notes=notes, images_checked=images_checked)


def _check_coverage(root: Path, split_dirs: dict[str, Path], class_names: tuple[str, ...],
                    splits: dict[str, list[Sample]], problems: list[Problem]) -> None:
    where = {s: split_dirs.get(s, root) for s in SPLITS}
    if len(class_names) < 2:
        problems.append(Problem(root, f"found {len(class_names)} class(es) {list(class_names)}; "
                                      "a classifier needs at least 2", FATAL))
    for split, samples in splits.items():
        if not samples:
            problems.append(Problem(where[split], f"the {split} split has no usable images", FATAL))
    present = {split: {s.label for s in samples} for split, samples in splits.items()}
    for label, name in enumerate(class_names):
        in_splits = [s for s in splits if label in present[s]]
        if not in_splits:
            problems.append(Problem(root, f"class {name!r} has no usable images in any split", FATAL))
        elif "train" in splits and label not in present["train"]:
            problems.append(Problem(where["train"], f"class {name!r} has images in {', '.join(in_splits)} but "
                                                    "none in train: the model cannot learn it", FATAL))
        else:
            for split in splits:
                if splits[split] and label not in present[split]:
                    problems.append(Problem(where[split], f"class {name!r} has no images in {split}: its "
                                                          f"{split} metrics will be undefined", WARNING))


def _check_leaks(splits: dict[str, list[Sample]], results: dict, problems: list[Problem]) -> None:
    """The same image in two splits inflates every evaluation; say where."""
    owner: dict[str, tuple[str, Path]] = {}
    seen_pairs = defaultdict(int)
    for split in SPLITS:
        for sample in splits.get(split, []):
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
