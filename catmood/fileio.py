"""Atomic writes: a reader sees the old file or the new one, never half of one, and a crash loses nothing."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    For writers that insist on a file name (torch.save, savefig, cv2.imwrite). `suffix` defaults to the
    target's own, because some writers pick the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp_path = temporary_path(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def temporary_path(path: Path, suffix: str | None = None) -> Path:
    """A unique temporary name beside `path`, of the form `remove_stale_temporaries` cleans up. Not mkstemp:
    its 0600 mode would survive the rename; a name the writer creates itself keeps the user's umask. The
    real suffix stays last because writers choose the format from it."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
                          f"{path.suffix if suffix is None else suffix}")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Temporary files of `path` left by a process that no longer runs (killed with -9, power lost)."""
    removed = []
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*-*.tmp*"):
        pid = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# What a file is, by its suffix. An output may replace a file of its own kind (last run's events), never a
# file of another kind (a model, a video, a dataset image) that happens to sit at the path given.
KIND_OF_SUFFIX = {
    **dict.fromkeys((".pt", ".pth", ".safetensors"), "checkpoint"),
    **dict.fromkeys((".onnx", ".engine", ".plan", ".trt", ".data"), "model"),
    **dict.fromkeys((".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"), "video"),
    **dict.fromkeys((".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"), "image"),
    ".json": "JSON file", ".jsonl": "JSON lines file", ".csv": "CSV file", ".yaml": "YAML file",
    ".yml": "YAML file", ".md": "markdown file", ".txt": "text file",
}


# Kinds whose writers pick the format from the suffix, and kinds no text output should be named as.
WRITERS_BY_SUFFIX = {"image": (".png", ".jpg"), "video": (".mp4",), "model": (), "checkpoint": ()}


def check_output(path: str | os.PathLike, what: str, kind: str, *, inputs=()) -> Path:
    """Refuse, before any work is done, an output that would destroy something or cannot be written: one
    of the command's `inputs`, an existing file of another kind than this output's `kind` (by its suffix or
    its content), a folder where a file goes (or a file where a folder goes), a place inside a file, or an
    unwritable place. `what` names the option in the one-line error (e.g. "--events"); `kind` is one of
    the KIND_OF_SUFFIX values, or "folder"."""
    from .errors import CatmoodError

    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise CatmoodError(f"{path}: {what} would overwrite this command's input; choose another path")
    if kind == "folder":
        if path.exists() and not path.is_dir():
            raise CatmoodError(f"{path}: {what} must be a folder, and this is a file")
    elif path.is_dir():
        raise CatmoodError(f"{path}: {what} must be a file name, and this is a folder")
    named = KIND_OF_SUFFIX.get(path.suffix.lower())
    if kind != "folder" and (kind in WRITERS_BY_SUFFIX or named in WRITERS_BY_SUFFIX) and named != kind:
        raise CatmoodError(f"{path}: {what} writes {with_article(kind)}, and this name is "
                           f"{with_article(named or 'file of no known kind')}"
                           f"'s; use a {' or '.join(WRITERS_BY_SUFFIX.get(kind, ('matching',)))} name")
    elif path.is_file():
        found = KIND_OF_SUFFIX.get(path.suffix.lower()) or _kind_of_content(path)
        if found is not None and found != kind:
            raise CatmoodError(f"{path}: exists and is {with_article(found)}, not {with_article(kind)}; "
                               f"{what} will not replace it")
    _check_writable(path if kind == "folder" else path.parent, path, what)
    return path


def with_article(noun: str) -> str:
    """'a video', 'an image'."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _kind_of_content(path: Path) -> str | None:
    """A checkpoint, image or video under a name whose suffix says nothing is still not ours to replace."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "checkpoint"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff")):
        return "image"
    return "video" if head[4:8] == b"ftyp" else None


def _check_writable(folder: Path, path: Path, what: str) -> None:
    from .errors import CatmoodError

    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise CatmoodError(f"{path}: {what} cannot be written: {parent} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CatmoodError(f"{path}: {what} cannot be written there ({exc.strerror or exc})") from None
