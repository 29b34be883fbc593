"""`catmood export`: checkpoint -> ONNX, FP16 ONNX, INT8 ONNX, TensorRT engines, each through the parity gate, and
a report (export_report.json, export_report.md). One call does it all: `export_checkpoint(...)`."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import select_classifier
from ..backends.torch_backend import TorchBackend
from ..checkpoint import Checkpoint, load_checkpoint
from ..data.report import format_table
from ..errors import CatmoodError
from ..fileio import atomic_write_json, atomic_write_text
from ..metadata import LOGITS_NAME, PROBS_NAME, read_onnx_metadata
from ..backends.tensorrt_api import STRONGLY_TYPED, tensorrt_api
from .int8 import FLOAT_FIRST_HINT, Int8Quantizer, calibration_images, quantization_notes, read_images
from .onnx import export_fp16, export_onnx
from .options import DEFAULT_OPSET, GATES, EngineOptions, Gate, Int8Options, check_opset
from .qat import QAT_EPOCHS_HINT, quantization_aware
from .rounding import compensated_rounding
from .tensorrt import EngineBuildError, EngineSources, gated_engine, tensorrt_unavailable
from .verify import Parity, batch1_latency_ms, collect_images, compare, logits_with_progress


@dataclass
class FormatResult:
    format: str
    path: Path
    precision: str
    runs_on: str
    size_mb: float
    parity: Parity | None = None       # None for the PyTorch reference itself
    gate: Gate | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool | None:
        return None if self.parity is None else self.parity.passes(self.gate)


@dataclass
class ExportReport:
    checkpoint: Path
    out_dir: Path
    images_source: str
    n_images: int
    results: list[FormatResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    triton: Path | None = None
    checkpoint_sha256: str | None = None
    earlier: list[dict] = field(default_factory=list)   # rows an earlier export of the same checkpoint wrote

    @property
    def passed(self) -> bool:
        return not self.errors and all(r.passed is not False for r in self.results)

    def to_dict(self) -> dict:
        rows = []
        for r in self.results:
            row = dict(format=r.format, path=str(r.path), precision=r.precision, runs_on=r.runs_on,
                       size_mb=round(r.size_mb, 3), accuracy=r.accuracy, latency_ms_batch1=r.latency_ms,
                       notes=r.notes, passed=r.passed, gate=r.gate.describe() if r.gate else None)
            if r.parity is not None:
                row.update(dataclasses.asdict(r.parity))
            rows.append(row)
        return dict(checkpoint=str(self.checkpoint), checkpoint_sha256=self.checkpoint_sha256, out_dir=str(self.out_dir),
                    images=self.images_source, n_images=self.n_images, passed=self.passed, errors=self.errors,
                    formats=rows + self.earlier, triton=str(self.triton) if self.triton else None)

    def table(self) -> str:
        rows = []
        for r in self.results:
            p = r.parity
            rows.append([r.format, f"{r.size_mb:.1f} MB",
                         "reference" if p is None else f"{p.max_logit_diff:.2e}",
                         "-" if p is None else f"{p.max_prob_diff:.2e}",
                         "-" if p is None else f"{p.agreement:.2%}",
                         "-" if p is None else str(len(p.flips)),
                         "-" if r.accuracy is None else f"{r.accuracy:.1%}",
                         "-" if r.latency_ms is None else f"{r.latency_ms:.2f}",
                         "-" if r.passed is None else ("PASS" if r.passed else "FAIL")])
        return format_table(["format", "size", "max|dlogit|", "max|dprob|", "agreement", "flips", "accuracy",
                             "ms (batch 1)", "gate"], rows)

    def markdown(self) -> str:
        lines = ["# catmood export report", "",
                 f"- checkpoint: `{self.checkpoint}`",
                 f"- parity images: {self.n_images} from {self.images_source}",
                 f"- verdict: **{'PASS' if self.passed else 'FAIL'}**", "",
                 "| format | file | size | max abs logit diff | mean abs logit diff | max abs prob diff | "
                 "top-1 agreement | flips | accuracy | latency batch 1 (ms) | runs on | gate | result |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.results:
            p = r.parity
            cells = [r.format, f"`{r.path.name}`", f"{r.size_mb:.1f} MB",
                     "reference" if p is None else f"{p.max_logit_diff:.2e}",
                     "-" if p is None else f"{p.mean_logit_diff:.2e}",
                     "-" if p is None else f"{p.max_prob_diff:.2e}",
                     "-" if p is None else f"{p.agreement:.2%}", "-" if p is None else str(len(p.flips)),
                     "-" if r.accuracy is None else f"{r.accuracy:.1%}",
                     "-" if r.latency_ms is None else f"{r.latency_ms:.2f}", r.runs_on,
                     r.gate.describe() if r.gate else "-",
                     "-" if r.passed is None else ("PASS" if r.passed else "**FAIL**")]
            lines.append("| " + " | ".join(cells) + " |")
        for r in self.results:
            if r.parity is not None and r.parity.flips:
                lines += ["", f"## {r.format}: images whose label flips", "", "| image | PyTorch | artifact |",
                          "|---|---|---|"]
                lines += [f"| `{f['image']}` | {f['pytorch']} | {f['artifact']} |" for f in r.parity.flips]
        notes = [(r.format, n) for r in self.results for n in r.notes]
        if notes or self.errors:
            lines += ["", "## Notes", ""]
            lines += [f"- {fmt}: {n}" for fmt, n in notes] + [f"- error: {e}" for e in self.errors]
        if self.triton:
            lines += ["", f"Triton model repository: `{self.triton}`"]
        if self.earlier:
            lines += ["", "## From an earlier export of the same checkpoint into this folder", ""]
            lines += [f"- {e['format']} `{Path(e['path']).name}`: agreement {e.get('agreement', 0):.2%}, max abs logit "
                      f"diff {e.get('max_logit_diff', 0):.2e}, {'PASS' if e.get('passed') else 'FAIL'}"
                      for e in self.earlier]
        return "\n".join(lines) + "\n"


def _size_mb(path: Path) -> float:
    extra = Path(str(path) + ".data")
    return (path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)) / 1e6


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                      onnx: bool = True, fp16: bool = True, int8: bool = False, trt: bool = False,
                      input_dtype: str = "float32", probs: bool = False, opset: int = DEFAULT_OPSET,
                      engine: EngineOptions = EngineOptions(), int8_options: Int8Options = Int8Options(),
                      images: str | os.PathLike | None = None, max_images: int = 200,
                      triton: str | os.PathLike | None = None, gates: dict[str, Gate] | None = None,
                      latency: bool = True, echo=print, progress: bool = True) -> ExportReport:
    """Export and verify; the report says PASS only when every requested artifact passes its gate.

    `engine`: the TensorRT build options; its batch profile also gives Triton's max batch. With `trt`, an
    engine is built for each precision asked for: INT8 with `int8`, FP16 with `fp16` or without `int8`.
    `progress`: bars (rate, time left) for the gate's images and the latency runs, in a terminal."""
    if not (onnx or fp16 or int8 or trt):
        raise CatmoodError("nothing to export: ask for --onnx, --fp16, --int8 and/or --trt")
    if max_images < 1:
        raise CatmoodError(f"--max-images must be at least 1, got {max_images}")
    check_opset(opset)
    engine.profile  # a bad --batch is refused before any work
    ckpt = load_checkpoint(checkpoint)
    calibration = calibration_images(ckpt, int8_options) if int8 else None  # no training images: refused now
    out = Path(out_dir) if out_dir else ckpt.path.parent / "export"
    out.mkdir(parents=True, exist_ok=True)
    trt_problem = tensorrt_unavailable() if trt else None
    trt_api = tensorrt_api() if trt and not trt_problem else None
    engines = [p for p, wanted in (("fp16", fp16 or not int8), ("int8", int8)) if wanted] if trt_api else []
    # Strongly typed FP16 engines are built from the gated FP16 ONNX, so --trt alone makes and gates it too.
    fp16 = fp16 or ("fp16" in engines and STRONGLY_TYPED in trt_api.precision_modes("fp16"))

    images_found = collect_images(ckpt.spec.class_names, images_dir=images, dataset=ckpt.config.get("data"),
                                  seed=int(ckpt.config.get("seed", 0)), max_images=max_images)
    echo(f"parity images: {len(images_found.frames)} from {images_found.source}")
    report = ExportReport(ckpt.path, out, images_found.source, len(images_found.frames),
                          checkpoint_sha256=ckpt.sha256)
    gate = _Gatekeeper(ckpt, images_found, {**GATES, **(gates or {})}, latency, echo, progress)
    report.results.append(gate.reference_row)

    suffix = ".uint8" if input_dtype == "uint8" else ""
    sources = EngineSources(ckpt, out / f"model{suffix}.onnx", out / f"model{suffix}.fp16.onnx", input_dtype, probs)
    if onnx or fp16 or int8 or trt_api:
        echo(f"exporting ONNX (opset {opset}, {input_dtype} input) -> {sources.fp32}")
        export_onnx(ckpt, sources.fp32, input_dtype=input_dtype, probs=probs, opset=opset, model=gate.reference.model)
        report.results.append(gate.check("onnx", sources.fp32))
    if fp16:
        echo(f"converting to FP16 (LayerNorm, softmax and reductions kept FP32) -> {sources.typed}")
        export_fp16(sources.fp32, sources.typed)
        report.results.append(gate.check("onnx-fp16", sources.typed))
    int8_sources = _int8_files(report, gate, sources, Int8Quantizer(calibration, int8_options), "int8" in engines,
                               opset, echo) if int8 else None
    if trt_problem:
        _no_engines(report, trt_problem, echo)
    for precision in engines:
        _engine(report, int8_sources if precision == "int8" else sources, out / f"model{suffix}.{precision}.engine",
                gate, engine, trt_api, echo)
    if triton:
        from .triton import write_triton_repository

        # The spec from the file's metadata: opening a session here could start a TensorRT engine build.
        report.triton = write_triton_repository(triton, sources.fp32, read_onnx_metadata(sources.fp32)[0],
                                                outputs=[LOGITS_NAME, PROBS_NAME] if probs else [LOGITS_NAME],
                                                max_batch=engine.profile[2])
        echo(f"Triton model repository: {report.triton}")
    _write_report(report, echo)
    return report


def _int8_files(report: ExportReport, gate: "_Gatekeeper", sources: EngineSources, quantizer: Int8Quantizer,
                for_engine: bool, opset: int, echo) -> EngineSources:
    """The CPU INT8 file, gated; for an INT8 engine also the symmetric one TensorRT takes, gated. Returns the
    engine sources for INT8 builds (they quantize an older-opset export with the same calibration). With
    INT8-aware fine-tuning both quantize the fine-tuned copy's export; the gate's reference stays the checkpoint."""
    cpu, symmetric = (sources.fp32.with_name(sources.fp32.name.replace(".onnx", f".{kind}.onnx"))
                      for kind in ("int8", "int8-sym"))
    images, options = quantizer.images, quantizer.options
    with tempfile.TemporaryDirectory(prefix="catmood-qat-") as tmp:
        source, (weights, before) = sources.fp32, _weights_for_int8(sources, gate, images, options, echo)
        if weights is not None:
            sources = dataclasses.replace(sources, checkpoint=weights)
            source = export_onnx(sources.checkpoint, Path(tmp) / sources.fp32.name, input_dtype=sources.input_dtype,
                                 probs=sources.probs, opset=opset)
        echo(f"quantizing to INT8 (QDQ, calibrated on {len(images.paths)} images of the {images.source}) -> {cpu}")
        quantizer(source, cpu, before=before)
        report.results.append(gate.check("onnx-int8", cpu, notes=quantization_notes(cpu)))
        if report.results[-1].passed is False:
            tries = []  # what the user has not tried yet, cheapest first
            if not options.float_first:
                tries.append(f"--float-first {FLOAT_FIRST_HINT} keeps the layers that read the image in float")
            if not options.qat_epochs:
                tries.append(f"--qat-epochs {QAT_EPOCHS_HINT} fine-tunes a copy to give them through INT8")
            if tries:
                hint = f"post-training quantization flips too many answers: {'; '.join(tries)} (see the README)"
                report.results[-1].notes.append(hint)
                echo(f"onnx-int8: {hint}")
        if for_engine:
            echo(f"quantizing with symmetric int8 activations for TensorRT (same calibration) -> {symmetric}")
            quantizer(source, symmetric, symmetric=True, before=before)
            report.results.append(gate.check("onnx-int8-sym", symmetric, notes=quantization_notes(symmetric)))
    return dataclasses.replace(sources, typed=symmetric, precision="int8",
                               quantize=functools.partial(quantizer, symmetric=True, before=before))


def _weights_for_int8(sources: EngineSources, gate: "_Gatekeeper", images, options: Int8Options,
                      echo) -> tuple[Checkpoint | None, dict]:
    """The weights the INT8 files quantize when they are not the checkpoint's: rounded with error compensation
    and/or fine-tuned through simulated INT8. (those weights under the checkpoint's spec, what the metadata
    records of them: "weight_rounding", "qat"); (None, {}) for the checkpoint's own weights."""
    if options.weight_rounding == "nearest" and not options.qat_epochs:
        return None, {}
    from ..training.devices import pick_device

    reference, tensors, facts = gate.reference.model, read_images(images.paths, sources.checkpoint.spec), {}
    start = reference
    if options.weight_rounding == "gptq":
        echo(f"rounding weights to int8 so that each layer's outputs on {len(tensors)} images of the "
             f"{images.source} move least (GPTQ)")
        start, facts["weight_rounding"] = compensated_rounding(reference, tensors, pick_device("auto"),
                                                                options.float_first, progress=gate.progress)
    ckpt = sources.checkpoint
    if options.qat_epochs:
        echo(f"INT8-aware fine-tuning: {options.qat_epochs} epoch(s) over {len(tensors)} images of the "
             f"{images.source}, to give the checkpoint's answers through simulated INT8")
        tuned = quantization_aware(ckpt, reference, tensors, epochs=options.qat_epochs, lr=options.qat_lr,
                                   start=start, float_first=options.float_first, progress=gate.progress)
        qat = facts["qat"] = tuned.facts
        echo(f"simulated INT8 agreement with the checkpoint on those images: "
             f"{qat['simulated_agreement']['before']:.2%} -> {qat['simulated_agreement']['after']:.2%} "
             f"({qat['seconds']:.0f} s on {qat['device']})")
        return tuned.checkpoint, facts
    return ckpt.with_weights(start), facts


def _no_engines(report: ExportReport, problem: str, echo) -> None:
    report.errors.append(f"--trt: {problem}")
    exported = [r.format for r in report.results if r.parity is not None]
    echo(f"catmood: error: --trt: {problem}"
         + (f" ({', '.join(exported)} exported and gated)" if exported else " (nothing was exported)"))


def _engine(report: ExportReport, sources: EngineSources, path: Path, gate: "_Gatekeeper", options: EngineOptions,
            api, echo) -> None:
    try:
        report.results.append(gated_engine(sources, path, gate.check, options=options, api=api, echo=echo))
    except EngineBuildError as exc:
        report.errors.append(f"--trt: {exc}")
        echo(f"catmood: error: --trt: {exc}")


class _Gatekeeper:
    """The PyTorch reference (FP32, CPU) on the parity images, and the gate every artifact goes through."""

    def __init__(self, ckpt, images, gates: dict[str, Gate], latency: bool, echo, progress: bool):
        self.images, self.gates, self.latency, self.echo, self.progress = images, gates, latency, echo, progress
        self.class_names = ckpt.spec.class_names
        self.reference = TorchBackend(ckpt, device="cpu", fp16=False)
        self.logits = logits_with_progress(self.reference, images.frames, progress, "pytorch: reference logits")
        row = FormatResult("pytorch", ckpt.path, "fp32", self.reference.device, _size_mb(ckpt.path))
        if images.labels is not None:
            row.accuracy = float((self.logits.argmax(1) == images.labels).mean())
        if latency:
            row.latency_ms = batch1_latency_ms(self.reference, images.frames[0], progress=progress,
                                               desc="pytorch: latency")
        self.reference_row = row

    def check(self, fmt: str, path: Path, notes: list[str] = ()) -> FormatResult:
        """Gate `path` loaded exactly as `catmood run` loads it, by the precision it really runs in there."""
        classifier = select_classifier(path)
        logits = logits_with_progress(classifier, self.images.frames, self.progress, f"{fmt}: parity gate")
        parity = compare(self.logits, logits, self.images, self.class_names)
        precision = classifier.precision
        gate = self.gates[precision]
        row = FormatResult(fmt, path, precision, classifier.device, _size_mb(path), parity, gate, parity.accuracy,
                           notes=[*notes, *classifier.notes])
        drop = parity.accuracy_drop
        if gate.max_accuracy_drop is not None and drop is None:
            row.notes.append("accuracy drop not checked: the parity images have no labels (agreement only)")
        if self.latency:
            row.latency_ms = batch1_latency_ms(classifier, self.images.frames[0], progress=self.progress,
                                               desc=f"{fmt}: latency")
        self.echo(f"{fmt}: max |logit diff| {parity.max_logit_diff:.2e}, agreement {parity.agreement:.2%}, "
                  + (f"accuracy {parity.accuracy:.1%} vs PyTorch {parity.reference_accuracy:.1%}, "
                     if gate.max_accuracy_drop is not None and drop is not None else "")
                  + f"{len(parity.flips)} flip(s) -> {'PASS' if row.passed else 'FAIL'} ({gate.describe()})")
        return row


def _earlier_rows(report: ExportReport) -> list[dict]:
    """The rows of an earlier export of the same checkpoint into this folder whose files this run did not
    redo and that still exist: a second export adds to the report instead of replacing it."""
    try:
        old = json.loads((report.out_dir / "export_report.json").read_text())
    except (OSError, ValueError):
        return []
    if not report.checkpoint_sha256 or old.get("checkpoint_sha256") != report.checkpoint_sha256:
        return []
    redone = {str(r.path) for r in report.results}
    return [{**row, "earlier": True} for row in old.get("formats", [])
            if row.get("path") not in redone and Path(str(row.get("path"))).is_file()]


def _write_report(report: ExportReport, echo) -> None:
    report.earlier = _earlier_rows(report)
    atomic_write_json(report.out_dir / "export_report.json", report.to_dict())
    atomic_write_text(report.out_dir / "export_report.md", report.markdown())
    echo("")
    echo(report.table())
    for row in report.results:
        if row.parity is not None and row.parity.flips:
            shown = ", ".join(f"{f['image']} ({f['pytorch']} -> {f['artifact']})" for f in row.parity.flips[:10])
            more = f" and {len(row.parity.flips) - 10} more" if len(row.parity.flips) > 10 else ""
            echo(f"{row.format} flips: {shown}{more}")
    echo(f"report: {report.out_dir / 'export_report.md'} | verdict: {'PASS' if report.passed else 'FAIL'}")
