"""The runtime's text records: JSON lines and CSV rows, one per frame or image (per face with faces).

Both are written under a temporary name beside the target and renamed when the run ends (the end of the
source, Ctrl-C, q, or an error), so a file under the target's name is always a whole run's record.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..fileio import remove_stale_temporaries, temporary_path
from .classify import NO_FACE, FrameResult


class LinesFile:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        self.tmp = temporary_path(self.path)
        self.file = open(self.tmp, "x", buffering=1 << 16, newline="", encoding="utf-8")

    def write(self, line: str) -> None:
        self.file.write(line + "\n")

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)


class CsvRecords:
    """Columns: source (its name), file (the image, or what the source is), frame, time, face (its id), x, y,
    w, h (its box), label, confidence, one p_<class> per class (this frame's own probabilities), error (why an
    image could not be read)."""

    def __init__(self, path: str | os.PathLike, class_names):
        self.out = LinesFile(path)
        self.class_names = list(class_names)
        self.writer = csv.writer(self.out.file, lineterminator="\n")
        self.writer.writerow(["source", "file", "frame", "time", "face", "x", "y", "w", "h", "label", "confidence",
                              *(f"p_{name}" for name in self.class_names), "error"])

    def write(self, result: FrameResult, file: str) -> None:
        head = [result.source, file, result.frame.index, round(result.frame.timestamp, 4)]
        if not result.faces:
            self.writer.writerow([*head, "", "", "", "", "", NO_FACE, "", *[""] * len(self.class_names), ""])
        for face in result.faces:
            box = list(map(int, face.box)) if face.box is not None else [""] * 4
            self.writer.writerow([*head, "" if face.track_id is None else face.track_id, *box, face.decision.label,
                                  round(face.decision.confidence, 4), *(round(float(p), 5) for p in face.probs), ""])

    def skipped(self, file: str, reason: str, source: str = "cam0") -> None:
        self.writer.writerow([source, file, *[""] * (9 + len(self.class_names)), reason])

    def close(self) -> None:
        self.out.close()
