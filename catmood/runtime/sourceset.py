"""The run's sources by name: opened from what the user gave, where each one's video goes, and the sources
file's edits applied while the run goes on (cameras added and removed without touching the others)."""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import CatmoodError
from ..fileio import KIND_OF_SUFFIX, check_output, with_article
from .classify import INDEPENDENT_KINDS
from .options import RuntimeOptions
from .scheduler import Scheduler
from .sourcelist import SourceEntry, SourcesFile, collect_sources, display
from .sources import FrameSource, open_source

WATCH_FILE_S = 1.0  # how often the sources file is looked at


class SourceSet:
    """`opened`: name -> FrameSource; `entries`: name -> what the user gave for it. `several`: more than one
    source, or a sources file (then --out is a folder with a video per source)."""

    def __init__(self, options: RuntimeOptions, echo=print, sources_file: Path | None = None):
        self.options, self.echo, self.sources_file = options, echo, sources_file
        self.opened: dict[str, FrameSource] = {}
        self.entries: dict[str, SourceEntry] = {}
        self.several = sources_file is not None
        self.lock = threading.Lock()

    @classmethod
    def open(cls, source, options: RuntimeOptions, echo=print, sources_file: Path | None = None) -> "SourceSet":
        """`source`: a FrameSource, what --source says, a list of them (`name=TARGET` allowed), or
        {name: FrameSource}. A source that cannot be opened among others is one line and is left out."""
        found = cls(options, echo, sources_file)
        if isinstance(source, FrameSource):
            found.opened["cam0"] = source
            return found
        if isinstance(source, dict):
            found.opened.update(source)
            found.several = found.several or len(source) > 1
            return found
        given = [source] if isinstance(source, (str, int, Path)) else list(source or [])
        entries = collect_sources([str(s) for s in given], sources_file, echo)
        found.several = found.several or len(entries) > 1
        for entry in entries:
            found.start(entry, alone=not found.several)
        if not found.opened:
            raise CatmoodError("none of the sources could be opened (each is named above)")
        return found

    def start(self, entry: SourceEntry, alone: bool = False, scheduler: Scheduler | None = None) -> bool:
        """Open `entry` (and hand it to `scheduler`); False, with one line, when it cannot be opened. `alone`:
        the run's only source, whose error is the run's error."""
        try:
            source = open_source(entry.target, realtime=self.options.realtime)
            if source.kind in INDEPENDENT_KINDS and self.several:
                source.close()
                raise CatmoodError(f"{entry.shown}: images are classified with `catmood predict` (or `catmood "
                                   "run` with that one source); several sources are cameras, streams and videos")
        except CatmoodError as exc:
            if alone:
                raise
            self.echo(f"{entry.name}: {exc}; left out")
            return False
        with self.lock:
            self.opened[entry.name], self.entries[entry.name] = source, entry
        if scheduler is not None:
            scheduler.add(entry.name, source)
        return True

    def names(self) -> str:
        return ", ".join(self.opened)

    def shown(self, name: str) -> str:
        source = self.opened.get(name)
        return display(source.name) if source is not None else name

    def fps(self, name: str) -> float | None:
        source = self.opened.get(name)
        return source.fps if source is not None else None

    def video_path(self, name: str) -> Path:
        out = Path(self.options.out)
        return out / f"{name}.mp4" if self.several else out

    def check_out(self, inputs) -> None:
        """--out of several sources, refused before any frame: a folder, with a video per source."""
        out = self.options.out
        if not out:
            return
        names = [source.name for source in self.opened.values()]
        kind = KIND_OF_SUFFIX.get(Path(out).suffix.lower())
        if kind is not None:
            raise CatmoodError(f"{out}: with several sources --out is a folder (a video per source, NAME.mp4), "
                               f"and this name is {with_article(kind)}'s")
        check_output(out, "--out", "folder", inputs=inputs)
        for name in self.opened:
            check_output(self.video_path(name), "--out", "video", inputs=[*inputs, *names])

    def close(self) -> None:
        for source in self.opened.values():
            source.close()

    def follow(self, scheduler: Scheduler) -> "threading.Event":
        """Apply the sources file's edits while the run goes on; set the returned event to stop."""
        stop = threading.Event()
        watched = SourcesFile(self.sources_file, self.echo)

        def loop() -> None:
            while not stop.wait(WATCH_FILE_S):
                running = {entry.target: name for name, entry in self.entries.items()}
                entries = watched.changed(running)
                if entries is not None:
                    self.apply(entries, scheduler)

        threading.Thread(target=loop, name="sources file", daemon=True).start()
        return stop

    def apply(self, entries: list[SourceEntry], scheduler: Scheduler) -> None:
        wanted = {entry.name: entry for entry in entries}
        for name, entry in list(self.entries.items()):
            if wanted.get(name) != entry:
                scheduler.remove(name)
                with self.lock:
                    del self.entries[name]
                self.echo(f"{name}: removed ({self.sources_file} no longer lists {entry.shown})")
        for name, entry in wanted.items():
            if name not in self.entries and self.start(entry, scheduler=scheduler):
                self.echo(f"{name}: added ({entry.shown})")
