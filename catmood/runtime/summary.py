"""What a run did, per source and in total: frames, fps, drops, reconnects, state, why it ended, p50/p99 per
stage; a table for people and a dict for `--summary` JSON (sources shown with any password masked)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..tables import format_table
from ..timing import percentiles

STAGES = ("capture", "detect", "preprocess", "inference", "postprocess")  # detect: only with faces


@dataclass
class SourceSummary:
    name: str
    source: str                # what was opened, password masked
    kind: str = ""
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    state: str = ""
    end_reason: str = ""
    seconds: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    out: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stages_ms"] = data.pop("stages")
        return dict(data, fps=round(self.fps, 3))


@dataclass
class RunSummary:
    source: str
    backend: str
    kind: str = ""
    frames: int = 0
    seconds: float = 0.0
    dropped: int = 0
    end_reason: str = ""
    interrupted: bool = False
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    out: str | None = None
    events: str | None = None
    csv: str | None = None
    sources: list[SourceSummary] = field(default_factory=list)
    batches: dict[int, int] = field(default_factory=dict)  # frames per model call -> how many calls

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        unit, lost = ("images", "unreadable") if self.kind == "images" else ("frames", "dropped")
        head = (f"{self.frames} {unit} in {self.seconds:.1f} s = {self.fps:.1f} fps | {lost} {self.dropped} | "
                f"{self.backend} | {self.end_reason}")
        rows = [[s, f"{v['p50']:.2f}", f"{v['p99']:.2f}", f"{v['mean']:.2f}"] for s, v in self.stages.items()]
        text = head + "\n" + format_table(["stage", "p50 ms", "p99 ms", "mean ms"], rows)
        if len(self.sources) > 1:
            text += "\n" + self.sources_table()
        return text

    def sources_table(self) -> str:
        stages = list(self.stages)
        rows = [[s.name, s.state, s.frames, f"{s.fps:.1f}", s.dropped, s.reconnects,
                 *(_p50_p99(s.stages.get(stage)) for stage in stages), s.end_reason] for s in self.sources]
        rows.append(["total", "", self.frames, f"{self.fps:.1f}", self.dropped,
                     sum(s.reconnects for s in self.sources), *(_p50_p99(self.stages[st]) for st in stages), ""])
        sizes = ", ".join(f"{size}: {count}" for size, count in sorted(self.batches.items()))
        return (format_table(["source", "state", "frames", "fps", "dropped", "reconnects",
                              *(f"{stage} p50/p99 ms" for stage in stages), "end"], rows)
                + f"\nframes per model call (calls): {sizes}")

    def to_dict(self) -> dict:
        return dict(source=self.source, backend=self.backend, kind=self.kind, frames=self.frames,
                    seconds=self.seconds, fps=self.fps, dropped=self.dropped, end_reason=self.end_reason,
                    interrupted=self.interrupted, stages_ms=self.stages, labels=self.labels, out=self.out,
                    events=self.events, csv=self.csv, sources=[s.to_dict() for s in self.sources],
                    batches={str(k): v for k, v in sorted(self.batches.items())})


def _p50_p99(values: dict | None) -> str:
    return f"{values['p50']:.1f}/{values['p99']:.1f}" if values else ""


class StageTimes:
    """Per-stage times of every frame, per source, for the summary."""

    def __init__(self, with_detect: bool):
        self.stages = [s for s in STAGES if s != "detect" or with_detect]
        self.per_source: dict[str, dict[str, list[float]]] = {}
        self.labels: dict[str, dict[str, int]] = {}

    def add(self, name: str, latency_ms: dict[str, float], label: str) -> None:
        times = self.per_source.setdefault(name, {stage: [] for stage in self.stages})
        for stage, value in latency_ms.items():
            times[stage].append(value)
        labels = self.labels.setdefault(name, {})
        labels[label] = labels.get(label, 0) + 1

    def of(self, name: str) -> dict[str, dict[str, float]]:
        times = self.per_source.get(name)
        return {stage: percentiles(values) for stage, values in times.items()} if times else {}

    def total(self) -> dict[str, dict[str, float]]:
        return {stage: percentiles([v for times in self.per_source.values() for v in times[stage]])
                for stage in self.stages}

    def all_labels(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for labels in self.labels.values():
            for label, n in labels.items():
                merged[label] = merged.get(label, 0) + n
        return merged
