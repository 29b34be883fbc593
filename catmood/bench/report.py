"""The bench report: rows of latency, end-to-end and accuracy results, as a table, markdown, JSON and a chart."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_path, atomic_write_json, atomic_write_text
from ..tables import format_table
from ..timing import LatencyStats


@dataclass
class BenchRow:
    model: str
    artifact: str
    backend: str
    device: str
    precision: str
    batch: int
    stats: LatencyStats
    gpu_ms: float | None = None          # CUDA-event time of the model alone (torch on CUDA)
    vs_eager: float | None = None        # latency / PyTorch eager latency, same device and batch
    gflops: float | None = None          # per image
    device_type: str = "cpu"             # what vs_eager compares within


@dataclass
class BenchReport:
    environment: dict
    rows: list[BenchRow] = field(default_factory=list)
    end_to_end: list[dict] = field(default_factory=list)
    accuracy: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(environment=self.environment, settings=self.settings,
                    latency=[{**asdict(r), **asdict(r.stats)} for r in self.rows],
                    end_to_end=self.end_to_end, accuracy=self.accuracy)

    def markdown(self) -> str:
        env = self.environment
        lines = ["# catmood benchmark", "",
                 f"- CPU: {env['cpu']} ({env['cpu_cores']} cores); GPU: {env['gpu'] or 'none'}"
                 + (f" (driver {env['driver']})" if env.get("driver") else ""),
                 "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
                 f"- settings: {self.settings}", "", "## Model latency", "",
                 "| model | backend | device | precision | batch | p50 ms | p90 ms | p99 ms | mean ms | images/s | "
                 "vs PyTorch eager | GFLOPs/img |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            s = r.stats
            lines.append(f"| {r.model} | {r.backend} | {r.device} | {r.precision} | {r.batch} | {s.p50_ms:.2f} | "
                         f"{s.p90_ms:.2f} | {s.p99_ms:.2f} | {s.mean_ms:.2f} | {s.images_per_s:.1f} | "
                         f"{'-' if r.vs_eager is None else f'{r.vs_eager:.2f}x'} | "
                         f"{'-' if r.gflops is None else f'{r.gflops:.2f}'} |")
        if self.end_to_end:
            lines += ["", "## End to end (the runtime pipeline)", "",
                      "| model | backend | source | frames | fps | dropped | capture p50/p99 | preprocess p50/p99 | "
                      "inference p50/p99 | postprocess p50/p99 |", "|---|---|---|---|---|---|---|---|---|---|"]
            for e in self.end_to_end:
                st = e["stages_ms"]
                lines.append(f"| {e['model']} | {e['backend']} | {e['source']} | {e['frames']} | {e['fps']:.1f} | "
                             f"{e['dropped']} | " + " | ".join(f"{st[k]['p50']:.2f}/{st[k]['p99']:.2f}" for k in
                                                              ("capture", "preprocess", "inference", "postprocess"))
                             + " |")
        if self.accuracy:
            lines += ["", "## Accuracy per format", "", "| model | backend | split | images | top-1 accuracy |",
                      "|---|---|---|---|---|"]
            lines += [f"| {a['model']} | {a['backend']} | {a['split']} | {a['n']} | {a['accuracy']:.1%} |"
                      for a in self.accuracy]
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        rows = [[r.model, r.backend, r.device, r.precision, r.batch, f"{r.stats.p50_ms:.2f}", f"{r.stats.p99_ms:.2f}",
                 f"{r.stats.images_per_s:.1f}", "-" if r.vs_eager is None else f"{r.vs_eager:.2f}x"] for r in self.rows]
        out = format_table(["model", "backend", "device", "precision", "batch", "p50 ms", "p99 ms", "img/s",
                            "vs eager"], rows)
        if self.end_to_end:
            out += "\n\n" + format_table(
                ["model", "backend", "frames", "fps", "dropped", "inference p50 ms"],
                [[e["model"], e["backend"], e["frames"], f"{e['fps']:.1f}", e["dropped"],
                  f"{e['stages_ms']['inference']['p50']:.2f}"] for e in self.end_to_end])
        if self.accuracy:
            out += "\n\n" + format_table(["model", "backend", "images", "accuracy"],
                                         [[a["model"], a["backend"], a["n"], f"{a['accuracy']:.1%}"]
                                          for a in self.accuracy])
        return out


def plot_latency(report: BenchReport, path: str | Path) -> Path:
    """Grouped bars: p50 latency per model/backend/precision, one bar per batch size (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(f"{r.model}\n{r.backend} {r.precision}\n{r.device[:28]}" for r in report.rows))
    batches = sorted({r.batch for r in report.rows})
    width = 0.8 / len(batches)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(keys)), 4.5))
    for j, batch in enumerate(batches):
        values = []
        for key in keys:
            match = [r for r in report.rows if f"{r.model}\n{r.backend} {r.precision}\n{r.device[:28]}" == key
                     and r.batch == batch]
            values.append(match[0].stats.p50_ms if match else 0)
        bars = ax.bar(np.arange(len(keys)) + j * width - 0.4 + width / 2, values, width, label=f"batch {batch}")
        ax.bar_label(bars, [f"{v:.1f}" if v else "" for v in values], fontsize=7)
    ax.set_xticks(range(len(keys)), keys, fontsize=7)
    ax.set_ylabel("p50 latency per batch (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title(f"catmood bench on {report.environment['gpu'] or report.environment['cpu']}")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def write_report(report: BenchReport, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "png": out / "bench.png"}
    atomic_write_json(paths["json"], report.to_dict())
    atomic_write_text(paths["markdown"], report.markdown())
    plot_latency(report, paths["png"])
    return paths
