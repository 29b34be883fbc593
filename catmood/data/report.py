"""What `catmood data inspect` shows: a counts table, notes, problems and a verdict; a preview grid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError
from ..fileio import atomic_path
from ..tables import format_table
from .images import load_rgb
from .checks import ERROR, FATAL, WARNING
from .layouts import DatasetIndex


def inspection_dict(index: DatasetIndex, skip_bad: bool = False) -> dict:
    """JSON-safe summary of an index (for `inspect --json` and for machines)."""
    return {
        "root": str(index.root),
        "layout": index.layout,
        "class_names": list(index.class_names),
        "counts": index.counts(),
        "images_checked": index.images_checked,
        "notes": list(index.notes),
        "problems": [{"severity": p.severity, "path": str(p.path), "reason": p.reason} for p in index.problems],
        "trainable": index.is_trainable(skip_bad),
    }


def format_inspection(index: DatasetIndex, skip_bad: bool = False, max_problems: int = 200) -> str:
    counts = index.counts()
    splits = list(counts)
    checked = "every image decoded" if index.images_checked else "images not decoded"
    lines = [
        f"dataset  {index.root}",
        f"layout   {index.layout} ({checked})",
        f"classes  {len(index.class_names)}: {', '.join(index.class_names) or '-'}",
        "",
    ]
    if index.class_names:
        rows = [[name, *(counts[s][i] for s in splits), sum(counts[s][i] for s in splits)]
                for i, name in enumerate(index.class_names)]
        rows.append(["total", *(sum(counts[s]) for s in splits), sum(sum(c) for c in counts.values())])
        lines += [format_table(["class", *splits, "total"], rows), ""]
    if index.notes:
        lines += ["notes:", *(f"  {n}" for n in index.notes), ""]
    n = {sev: len(index.problems_of(sev)) for sev in (FATAL, ERROR, WARNING)}
    if index.problems:
        lines.append(f"problems: {n[FATAL]} fatal, {n[ERROR]} error(s), {n[WARNING]} warning(s)")
        for p in index.problems[:max_problems]:
            lines.append(f"  {p.severity:<7} {p.describe(index.root)}")
        if len(index.problems) > max_problems:
            lines.append(f"  ... and {len(index.problems) - max_problems} more (see --json)")
        lines.append("")
    if n[FATAL]:
        verdict = "CANNOT be trained on: fix the fatal problems above"
    elif n[ERROR] and not skip_bad:
        verdict = (f"NOT ready: {n[ERROR]} bad file(s) or row(s); fix them, or train with --skip-bad "
                   "to leave them out")
    elif n[ERROR]:
        verdict = f"ready to train with --skip-bad ({n[ERROR]} bad file(s) or row(s) left out)"
    else:
        verdict = "ready to train"
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def write_preview(index: DatasetIndex, out: str | Path, split: str = "train", per_class: int = 8,
                  cell: int = 128) -> Path:
    """A PNG grid: one row per class (its name on the left), `per_class` images of `split`."""
    samples = index.splits.get(split) or next((s for s in index.splits.values() if s), [])
    label_w = 150
    grid = np.full((cell * max(1, len(index.class_names)), label_w + cell * per_class, 3), 255, np.uint8)
    for row, name in enumerate(index.class_names):
        y = row * cell
        cv2.putText(grid, name[:14], (8, y + cell // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 1,
                    cv2.LINE_AA)
        mine = [s for s in samples if s.label == row][:per_class]
        for col, sample in enumerate(mine):
            try:
                rgb = load_rgb(sample.path)
            except ImageError:
                continue
            h, w = rgb.shape[:2]
            scale = cell / max(h, w)
            thumb = cv2.resize(rgb[:, :, ::-1], (max(1, int(w * scale)), max(1, int(h * scale))),
                               interpolation=cv2.INTER_AREA)
            x0 = label_w + col * cell + (cell - thumb.shape[1]) // 2
            y0 = y + (cell - thumb.shape[0]) // 2
            grid[y0:y0 + thumb.shape[0], x0:x0 + thumb.shape[1]] = thumb
    out = Path(out)
    with atomic_path(out) as tmp:
        if not cv2.imwrite(str(tmp), grid):
            raise ImageError(out, "could not write the preview PNG")
    return out
