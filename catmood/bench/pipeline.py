"""`catmood bench`: every artifact on every backend this machine has, per precision and batch size; the
runtime pipeline end to end on a video; accuracy per format. One call: `benchmark(models, options)`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CatmoodError
from .accuracy import format_accuracy
from .measure import classifiers_for, environment, latency_rows, ratios_to_eager
from .options import BenchOptions
from .report import BenchReport

# Variants that only re-time the same model: the end-to-end run takes the plain one.
RETIMED = ("torch compile", "torch cuda graph", "tensorrt cuda graph")


def benchmark(models: list[str | os.PathLike], options: BenchOptions | None = None, *, video: str | None = None,
              data: str | os.PathLike | None = None, echo=print) -> BenchReport:
    """Measure every artifact in `models` (checkpoints, .onnx, engines) as `options` says; with `video`, also
    the runtime pipeline end to end; with `data`, top-1 accuracy per format on its validation split."""
    options = options or BenchOptions()
    if not models:
        raise CatmoodError("give at least one model to benchmark (checkpoint, .onnx or .engine)")
    for model in models:
        if not Path(model).exists():
            raise CatmoodError(f"{model}: model not found")
    report = BenchReport(environment(), settings=dict(batches=list(options.batches), warmup=options.warmup,
                                                       iterations=options.iterations,
                                                       max_seconds=options.max_seconds, device=options.device))
    per_model = []
    for model in models:
        path = Path(model)
        classifiers = classifiers_for(path, options, echo)
        # Rows are named by architecture, so a checkpoint and its exports compare with each other.
        per_model.append((path, classifiers[0][2].spec.architecture.split(":")[-1], classifiers))
    for path, name, classifiers in per_model:
        report.rows += latency_rows(name, path, classifiers, options, echo)
    ratios_to_eager(report.rows)
    if video:
        for _, name, classifiers in per_model:
            report.end_to_end.append(end_to_end(name, classifiers, video, options.max_frames, echo))
    if data:
        for _, name, classifiers in per_model:
            for backend, precision, classifier in classifiers:
                accuracy, n, split = format_accuracy(classifier, data)
                report.accuracy.append(dict(model=name, backend=f"{backend} {precision}", split=split, n=n,
                                            accuracy=accuracy))
    return report


def end_to_end(name: str, classifiers, video: str, max_frames: int | None, echo) -> dict:
    """The runtime pipeline on `video` with the last (fastest-device) plain way of running the model."""
    from ..runtime.options import RuntimeOptions
    from ..runtime.pipeline import run_pipeline

    classifier = next(c for b, _, c in reversed(classifiers) if b not in RETIMED)
    summary = run_pipeline(classifier, video, RuntimeOptions(max_frames=max_frames), echo=lambda *a: None)
    echo(f"{name:<24} end to end on {video}: {summary.fps:.1f} fps, {summary.dropped} dropped")
    return dict(model=name, backend=classifier.describe(), source=str(video), frames=summary.frames,
                fps=summary.fps, dropped=summary.dropped, stages_ms=summary.stages)
