"""`catmood demo`: the whole product on synthetic data, offline, through the public library functions.

What exists so far: synthesise a cat-face dataset, inspect it, and draw a preview grid. Later stages
(training, export, runtime, benchmarks) extend this same function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .data.layouts import DatasetIndex, discover_dataset
from .data.report import format_inspection, write_preview
from .data.synth import synthesize_dataset


@dataclass
class DemoResult:
    out: Path
    dataset: DatasetIndex
    artifacts: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(out: str | Path = "demo", *, force: bool = False, per_class: int = 100, size: int = 224,
             seed: int = 0, echo=print) -> DemoResult:
    out = Path(out)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    data_dir = out / "data"
    echo(f"[1/2] synthesising a cat-face dataset in {data_dir} ({per_class} images per mood, {size}px)")
    synthesize_dataset(data_dir, per_class=per_class, size=size, seed=seed, force=force, progress=True)
    timings["synthesise"] = time.perf_counter() - start

    start = time.perf_counter()
    echo(f"[2/2] inspecting {data_dir}")
    index = discover_dataset(data_dir, seed=seed, progress=True)
    echo(format_inspection(index))
    preview = write_preview(index, out / "samples.png")
    timings["inspect"] = time.perf_counter() - start
    index.require_trainable()

    result = DemoResult(out=out, dataset=index, artifacts={"dataset": data_dir, "preview": preview},
                        seconds=timings)
    echo("")
    echo("artifacts:")
    for name, path in result.artifacts.items():
        echo(f"  {name:<8} {path}")
    echo("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return result
