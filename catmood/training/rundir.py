"""The run folder a training writes: its default name (runs/<model>, runs/<model>-2, ... as Ultralytics users
expect), a lock that keeps a second writer out, and no training over a run that is already there."""

from __future__ import annotations

import json
import os
from itertools import count
from pathlib import Path

from ..errors import CatmoodError
from ..fileio import check_output, pid_alive

try:
    import fcntl
except ImportError:  # Windows: the lock falls back to a pid file
    fcntl = None

LOCK_NAME = ".train.lock"
# What makes a folder a training run: a folder holding only config.yaml saw a run stop before it trained.
RUN_FILES = ("best.pt", "last.pt", "metrics.json")


class RunLock:
    """Held while a process writes a run folder. The kernel drops the lock of a process that dies (even
    killed with -9), so a lock file left behind by a dead process is simply taken over by the next one."""

    def __init__(self, folder: Path, fd: int | None, created: bool):
        self.folder, self.fd, self.created = folder, fd, created

    def release(self) -> None:
        if self.fd is None:
            return
        (self.folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None
        if self.created:
            try:
                self.folder.rmdir()  # a run that stopped before writing anything leaves no empty folder
            except OSError:
                pass


def claim_run_dir(out: str | os.PathLike | None, model: str, *, resuming: bool = False, exist_ok: bool = False,
                  dataset: str | os.PathLike | None = None, inputs=()) -> RunLock:
    """Lock the run folder: `out`, or the first free runs/<model>[-N]. Refused, with one line: an `out` inside
    the `dataset` or on one of the `inputs`, one another live process writes, and one that holds a run
    already (unless `exist_ok`, or `resuming` it)."""
    if out is None:
        return _claim_default(model)
    folder = Path(out)
    created = not folder.exists()
    if not resuming:
        if dataset and folder.resolve().is_relative_to(Path(dataset).resolve()):
            raise CatmoodError(f"{folder}: --out is inside the dataset {dataset}; its files would be read as "
                               "part of it: choose a folder outside")
        check_output(folder, "--out", "folder", inputs=[dataset, *inputs])
    lock = _lock(folder, created)
    if lock is None:
        raise CatmoodError(f"{folder}: another catmood train (pid {_holder(folder)}) is writing this run folder; "
                           "wait for it to finish or choose another --out")
    held = _existing_run(folder) if not (resuming or exist_ok) else None
    if held:
        lock.release()
        raise CatmoodError(f"{folder}: holds {held}; choose another --out, or pass --exist-ok to train over it")
    return lock


def _claim_default(model: str) -> RunLock:
    runs = check_output(Path("runs"), "runs/ (where runs go without --out)", "folder")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model.split(":")[-1])
    for n in count(1):
        # A dash before the number: `resnet18-2`, where Ultralytics' `resnet182` would read as another model.
        folder = runs / (safe if n == 1 else f"{safe}-{n}")
        if folder.exists() and (not folder.is_dir() or _contents(folder)):
            continue
        lock = _lock(folder, created=not folder.exists())
        if lock is not None and not _contents(folder):  # a concurrent run may have claimed it first
            return lock
        if lock is not None:
            lock.release()
    raise AssertionError("unreachable")


def _contents(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name != LOCK_NAME]


def _existing_run(folder: Path) -> str | None:
    """What kind of run `folder` holds, or None when it holds none."""
    found = [name for name in RUN_FILES if (folder / name).exists()]
    if not found:
        return None
    try:
        finished = bool(json.loads((folder / "metrics.json").read_text()).get("final"))
    except (OSError, ValueError, AttributeError):
        finished = False
    if finished:
        return f"a finished training run ({', '.join(found)})"
    return (f"an unfinished training run ({', '.join(found)}); continue it with `catmood train --resume {folder}`"
            if "last.pt" in found else f"files of a training run ({', '.join(found)})")


def _lock(folder: Path, created: bool) -> RunLock | None:
    """The lock of `folder` (created if missing), or None while another live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    if fcntl is None:
        return _pid_file_lock(folder, path, created)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # The previous holder removes the file as it finishes: a lock on a removed file guards nothing.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return RunLock(folder, fd, created)


def _pid_file_lock(folder: Path, path: Path, created: bool) -> RunLock | None:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _holder(folder)
            if pid.isdigit() and pid_alive(int(pid)):
                return None
            path.unlink(missing_ok=True)  # left by a process that no longer runs
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        return RunLock(folder, fd, created)
    return None


def _holder(folder: Path) -> str:
    try:
        return (folder / LOCK_NAME).read_text().strip() or "?"
    except OSError:
        return "?"
