"""Read one folder of labelled images — a split folder, or the top of a dataset without splits — into
{class name: image files}: either one folder per class, or Roboflow's one-hot `_classes.csv` (a `filename`
column, then one-hot class columns whose names may start with a space, as Roboflow writes them). What does
not fit is reported as a `Problem`, never skipped in silence.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from .checks import FATAL, WARNING, Problem
from .images import NEEDS_CONVERSION, describe_unreadable, is_image_name

CSV_NAME = "_classes.csv"
# Files that operating systems and tools drop into folders; never data, never worth a complaint.
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "readme.txt", "readme.md", "readme.dataset.txt",
                           "readme.roboflow.txt", "data.yaml", "labels.txt"})


def visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name.lower() not in IGNORED_NAMES


def has_classes_csv(entries) -> bool:
    return any(e.name.lower() == CSV_NAME for e in entries)


def read_split(folder: Path, problems: list[Problem]) -> tuple[str, dict[str, list[Path]] | None]:
    """(layout, {class name: files}) of one folder; the files are None when its CSV is unusable."""
    if has_classes_csv(folder.iterdir()):
        return "roboflow-csv", _read_classes_csv(folder, problems)
    return "roboflow-folders", _read_class_folders(folder, problems)


def _files_below(folder: Path) -> list[Path]:
    """Every visible file below `folder` (class folders may nest), sorted for determinism."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if visible(path):
                found.append(path)
    return sorted(found)


def _read_class_folders(folder: Path, problems: list[Problem]) -> dict[str, list[Path]]:
    """{class name: image files} for a folder of class folders. Loose files are reported."""
    by_class: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if not visible(entry):
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


# -- Roboflow's _classes.csv ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _CsvHeader:
    path: Path                              # the CSV file
    width: int                              # fields in the header row, which every row must have
    file_col: int
    class_cols: tuple[tuple[int, str], ...]  # (column, class name)


def _read_classes_csv(folder: Path, problems: list[Problem]) -> dict[str, list[Path]] | None:
    """{class name: image files} from a Roboflow one-hot `_classes.csv`; None if the CSV is unusable."""
    csv_path = next(p for p in folder.iterdir() if p.name.lower() == CSV_NAME)
    rows = _csv_rows(csv_path, problems)
    header = None if rows is None else _csv_header(csv_path, rows[0], problems)
    if header is None:
        return None
    by_class: dict[str, list[Path]] = {name: [] for _, name in header.class_cols}
    seen: dict[str, int] = {}  # filename -> the line that listed it first
    for line_no, row in enumerate(rows[1:], start=2):
        if any(cell.strip() for cell in row):
            found = _csv_row(folder, header, row, line_no, seen, problems)
            if found is not None:
                by_class[found[0]].append(found[1])
    _report_unlisted(folder, seen, problems)
    return by_class


def _csv_rows(csv_path: Path, problems: list[Problem]) -> list[list[str]] | None:
    """Every row, the header first; None (a fatal problem) when unreadable or without a header."""
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(Problem(csv_path, f"cannot read the CSV ({exc})", FATAL))
        return None
    if not rows or not any(cell.strip() for cell in rows[0]):
        problems.append(Problem(csv_path, "the CSV is empty (no header row)", FATAL))
        return None
    return rows


def _csv_header(csv_path: Path, row: list[str], problems: list[Problem]) -> _CsvHeader | None:
    """The filename column and the class columns (names stripped); None (a fatal problem) if unusable."""
    header = [cell.strip() for cell in row]
    lowered = [h.lower() for h in header]
    if "filename" not in lowered:
        problems.append(Problem(csv_path, f"no 'filename' column (header: {row})", FATAL))
        return None
    file_col = lowered.index("filename")
    class_cols = tuple((i, name) for i, name in enumerate(header) if i != file_col and name)
    names = [name for _, name in class_cols]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(Problem(csv_path, f"class column(s) {dupes} appear twice", FATAL))
        return None
    if not class_cols:
        problems.append(Problem(csv_path, "no class columns after 'filename'", FATAL))
        return None
    return _CsvHeader(csv_path, len(row), file_col, class_cols)


def _csv_row(folder: Path, header: _CsvHeader, row: list[str], line_no: int, seen: dict[str, int],
             problems: list[Problem]) -> tuple[str, Path] | None:
    """(class name, image file) of one row; None when the row is reported as a problem instead."""
    where = f"{CSV_NAME} line {line_no}"
    if len(row) != header.width:
        problems.append(Problem(header.path, f"{where}: {len(row)} fields, the header has {header.width}"))
        return None
    filename = row[header.file_col].strip()
    if not filename:
        problems.append(Problem(header.path, f"{where}: empty filename"))
        return None
    if filename in seen:
        problems.append(Problem(folder / filename, f"listed twice in {CSV_NAME} (lines {seen[filename]} "
                                                   f"and {line_no})"))
        return None
    seen[filename] = line_no
    marked, bad = [], []
    for i, name in header.class_cols:
        value = row[i].strip()
        if value in ("1", "1.0"):
            marked.append(name)
        elif value not in ("0", "0.0", ""):
            bad.append(f"{name}={value!r}")
    path = folder / filename
    if bad:
        reason = f"{where}: values must be 0 or 1, got {', '.join(bad)}"
    elif not marked:
        reason = f"{where}: no class marked (all-zero row)"
    elif len(marked) > 1:
        reason = (f"{where}: several classes marked ({', '.join(marked)}); "
                  "only single-label (multi-class) data is supported")
    elif not path.is_file():
        reason = f"{where} names this file, but it does not exist"
    else:
        return marked[0], path
    problems.append(Problem(path, reason))
    return None


def _report_unlisted(folder: Path, listed_names, problems: list[Problem]) -> None:
    """Every other file below the CSV's folder: an image the CSV does not list has no class."""
    listed = {(folder / name).resolve() for name in listed_names}
    for path in _files_below(folder):
        if path.name.lower() == CSV_NAME or path.resolve() in listed:
            continue
        if is_image_name(path) or path.suffix.lower() in NEEDS_CONVERSION:
            problems.append(Problem(path, f"image not listed in {CSV_NAME}: its class is unknown"))
        else:
            problems.append(Problem(path, describe_unreadable(path)))
