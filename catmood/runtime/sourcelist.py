"""What the user names as sources: `--source` (repeatable) and `--sources FILE`, each with a short name.

A line of a sources file is `name=URL` or a bare URL, path, camera index or GStreamer pipeline; `#` starts a
comment; blank lines are skipped. Every source gets a name (given, or the first free `cam0`, `cam1`, ...),
which names it everywhere: console lines, events, CSV, videos, the live view, metrics. Names are file-safe,
since they become file names. A URL's password is never printed, served or written: `display` masks it.

`SourcesFile` re-reads the file when it changes, so cameras can be added and removed while a run goes on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CatmoodError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_FILE_BYTES = 1 << 20
# scheme://user:password@ anywhere in the text (a GStreamer pipeline may hold a URL in `location=`).
PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")


def display(target: str) -> str:
    """What may be shown of a source: its text with any URL password replaced by ***."""
    return PASSWORD.sub(r"\1:***@", str(target))


@dataclass(frozen=True)
class SourceEntry:
    name: str
    target: str            # what opens it: index, path, URL or pipeline (may hold a password: never print it)

    @property
    def shown(self) -> str:
        return display(self.target)


def parse_line(line: str) -> tuple[str | None, str] | None:
    """(name or None, target) of one line; None for a blank or comment line."""
    text = line.strip()
    if " #" in text:
        text = text[:text.index(" #")].strip()
    if not text or text.startswith("#"):
        return None
    head, sep, rest = text.partition("=")
    if sep and not any(ch in head for ch in "/\\:!"):  # a URL, path or pipeline holding '=' has one of these first
        name, target = head.strip(), rest.strip()
        if not NAME.fullmatch(name):
            raise CatmoodError(f"source name {name!r} is not file-safe: use letters, digits, '.', '_' and '-' "
                               "(at most 64, starting with a letter or digit)")
        if not target:
            raise CatmoodError(f"source {name!r} names nothing after '='")
        return name, target
    return None, text


def name_entries(parsed: list[tuple[str | None, str]], known: dict[str, str] | None = None,
                 where: list[str] | None = None, report=None) -> list[SourceEntry]:
    """Entries with names: given ones kept; an unnamed target already running (`known`: target -> name) keeps
    its name; others get the first free `camN`. A repeated name or target is reported (`report(line)`) and
    skipped; without `report` it is an error."""
    known = known or {}
    given = {name.lower() for name, _ in parsed if name}
    taken: set[str] = set()
    targets: set[str] = set()
    entries = []
    for i, (name, target) in enumerate(parsed):
        at = where[i] if where else f"source {i + 1}"
        problem = None
        if name and name.lower() in taken:  # names are compared as lower case: Hall.mp4 is hall.mp4 on some disks
            problem = f"{at}: the name {name!r} is used twice"
        elif target in targets:
            problem = f"{at}: {display(target)} is listed twice"
        if problem:
            if report is None:
                raise CatmoodError(problem + "; give each source once, with its own name")
            report(problem + "; this one is skipped")
            continue
        if not name:
            name = known.get(target)
            if name is None or name.lower() in given or name.lower() in taken:
                name = next(f"cam{k}" for k in range(len(parsed) + len(given) + 1)
                            if f"cam{k}" not in given and f"cam{k}" not in taken)
        taken.add(name.lower())
        targets.add(target)
        entries.append(SourceEntry(name, target))
    return entries


def read_sources_file(path: Path, report) -> list[tuple[str | None, str, str]]:
    """(name or None, target, 'FILE:LINE') per good line; each bad line is `report`ed and skipped."""
    try:
        with open(path, "rb") as file:  # read to the limit only: /dev/zero or a huge video has no end in sight
            raw = file.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise CatmoodError(f"{path}: over {MAX_FILE_BYTES // 1024} KiB is not a sources file (one camera a "
                               "line)")
    except OSError as exc:
        raise CatmoodError(f"{path}: cannot read the sources file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatmoodError(f"{path}: the sources file is not UTF-8 text (byte {exc.start})") from None
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            parsed = parse_line(line)
        except CatmoodError as exc:
            report(f"{path}:{number}: {exc}; line skipped")
            continue
        if parsed is not None:
            found.append((*parsed, f"{path}:{number}"))
    return found


def collect_sources(sources: list[str] | None, sources_file: Path | None, report) -> list[SourceEntry]:
    """The run's sources: `--source` values (each may be `name=TARGET`), then the file's lines."""
    parsed, where = [], []
    for i, text in enumerate(sources or []):
        entry = parse_line(str(text))
        if entry is None:
            raise CatmoodError(f"--source {display(text)!r} names no source")
        parsed.append(entry)
        where.append(f"--source {display(text)}")
    if sources_file is not None:
        for name, target, at in read_sources_file(sources_file, report):
            parsed.append((name, target))
            where.append(at)
    entries = name_entries(parsed, where=where, report=report if sources_file is not None else None)
    if not entries:
        raise CatmoodError(f"{sources_file}: the sources file lists no source" if sources_file
                           else "no source given: --source or --sources FILE")
    return entries


class SourcesFile:
    """A sources file watched for edits: `changed()` gives the new entries when the file's content changed
    since the last look (None otherwise). A file that disappears or cannot be read is reported once and its
    sources kept, so a half-saved edit never stops every camera."""

    def __init__(self, path: Path, report):
        self.path, self.report = Path(path), report
        self.seen = self._stamp()
        self.failed = False

    def _stamp(self):
        try:
            stat = os.stat(self.path)
            return stat.st_mtime_ns, stat.st_size, stat.st_ino
        except OSError:
            return None

    def changed(self, running: dict[str, str]) -> list[SourceEntry] | None:
        """`running`: target -> name of the sources now running (unnamed lines keep their names)."""
        stamp = self._stamp()
        if stamp == self.seen:
            return None
        self.seen = stamp
        try:
            found = read_sources_file(self.path, self.report)
        except CatmoodError as exc:
            if not self.failed:
                self.report(f"{exc}; the running sources are kept")
            self.failed = True
            return None
        self.failed = False
        return name_entries([(n, t) for n, t, _ in found], running, [at for *_, at in found], self.report)
