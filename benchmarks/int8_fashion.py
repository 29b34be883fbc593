"""INT8 accuracy on real photographs: a fine-tuned checkpoint of the Fashion-MNIST quality benchmark exported
as `catmood export --onnx --int8` does it (the gate on its validation split), then PyTorch, the FP32 ONNX and
the INT8 ONNX scored on the test split (200 images) and on the 3040 left-over t10k images of the same classes.

Reproduce (after benchmarks/quality_fashion_mnist.py has trained the run):
    PYTHONPATH=$PWD .venv/bin/python benchmarks/int8_fashion.py /tmp/catmood-quality/runs/finetune_seed_1/best.pt
With `--qat-epochs N` the INT8 file is made after INT8-aware fine-tuning (catmood export --qat-epochs N).
Target (issue 14): accuracy within 1 point of PyTorch and top-1 agreement >= 98%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fashion_mnist_data import rest_samples  # noqa: E402

from catmood.backends import load_classifier  # noqa: E402
from catmood.checkpoint import load_checkpoint  # noqa: E402
from catmood.data.layouts import discover_dataset  # noqa: E402
from catmood.export.options import CALIBRATION_METHODS, WEIGHT_ROUNDINGS, Int8Options  # noqa: E402
from catmood.export.pipeline import export_checkpoint  # noqa: E402
from catmood.metadata import read_onnx_metadata  # noqa: E402
from catmood.training.evaluate import classification_metrics  # noqa: E402

FORMATS = (("onnx", "model.onnx"), ("onnx-int8", "model.int8.onnx"))


def score(checkpoint: Path, folder: Path, samples) -> dict:
    """Accuracy (95% CI) of PyTorch and each exported file on `samples`, and each file's agreement with PyTorch."""
    ckpt = load_checkpoint(checkpoint)
    frames, labels = [cv2.imread(str(s.path)) for s in samples], np.asarray([s.label for s in samples])
    reference = load_classifier(checkpoint, device="cpu").logits_of_frames(frames).argmax(1)
    rows = {"pytorch": dict(metrics=classification_metrics(labels, reference, ckpt.spec.class_names), agreement=1.0)}
    for fmt, name in FORMATS:
        top = load_classifier(folder / name).logits_of_frames(frames).argmax(1)
        rows[fmt] = dict(metrics=classification_metrics(labels, top, ckpt.spec.class_names),
                         agreement=float((top == reference).mean()),
                         flipped=[str(samples[i].path.name) for i in np.flatnonzero(top != reference)][:20])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--calib-method", default=Int8Options().calib_method, choices=CALIBRATION_METHODS)
    parser.add_argument("--calib-images", type=int, default=Int8Options().calib_images)
    parser.add_argument("--weight-rounding", default=Int8Options().weight_rounding, choices=WEIGHT_ROUNDINGS)
    parser.add_argument("--float-first", type=int, default=Int8Options().float_first,
                        help="first layers kept in float (catmood export --float-first)")
    parser.add_argument("--qat-epochs", type=int, default=Int8Options().qat_epochs,
                        help="INT8-aware fine-tuning epochs first (catmood export --qat-epochs)")
    parser.add_argument("--qat-lr", type=float, default=Int8Options().qat_lr)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    options = Int8Options(calib_images=args.calib_images, calib_method=args.calib_method,
                          weight_rounding=args.weight_rounding, float_first=args.float_first,
                          qat_epochs=args.qat_epochs, qat_lr=args.qat_lr)
    ckpt = load_checkpoint(args.checkpoint)
    data = Path(ckpt.config["data"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report = export_checkpoint(args.checkpoint, folder, onnx=True, fp16=False, int8=True,
                                   int8_options=options, latency=False)
        gate = {r.format: dict(agreement=r.parity.agreement if r.parity else None, accuracy=r.accuracy,
                               passed=r.passed) for r in report.results}
        made = {k: v for k, v in read_onnx_metadata(folder / "model.int8.onnx")[1]["quantization"].items()
                if k in ("weight_rounding", "qat")}  # how long the rounding and fine-tuning took, on what
        splits = {"test": discover_dataset(data, check_images=False).splits["test"],
                  "rest": rest_samples(data, list(ckpt.spec.class_names))}
        results = {split: score(args.checkpoint, folder, samples) for split, samples in splits.items()}
    rounding = "error-compensating (GPTQ)" if options.weight_rounding == "gptq" else "nearest"
    rounding += f" weight rounding, the first {options.float_first} layers in float" if options.float_first else \
        " weight rounding"
    qat = f", after {options.qat_epochs} epoch(s) of INT8-aware fine-tuning at lr {options.qat_lr:g}" \
        if options.qat_epochs else ""
    verdicts = ", ".join(f"{k} {'PASS' if v['passed'] else 'FAIL'}" for k, v in gate.items() if v["passed"] is not None)
    took = "".join(f"; {k.replace('_', ' ')} {v['seconds']:.0f} s on {v['device']}" for k, v in made.items() if v)
    lines = [f"`{args.checkpoint}` (INT8: {options.calib_method} calibration on up to {options.calib_images} "
             f"training images, {rounding}{qat}; the gate on {report.n_images} validation images: "
             f"{verdicts}{took})", "", "| format | split | images | accuracy (95% CI) | vs PyTorch | agreement with PyTorch |",
             "|---|---|---|---|---|---|"]
    for split, rows in results.items():
        base = rows["pytorch"]["metrics"]["accuracy"]
        for fmt, row in rows.items():
            m = row["metrics"]
            lines.append(f"| {fmt} | {split} | {m['n']} | {m['accuracy']:.1%} ({m['accuracy_ci95'][0]:.1%}-"
                         f"{m['accuracy_ci95'][1]:.1%}) | {(m['accuracy'] - base) * 100:+.2f} points | "
                         f"{row['agreement']:.2%} |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"int8_fashion_{options.calib_method}_{options.weight_rounding}" \
        + (f"_float{options.float_first}" if options.float_first else "") \
        + (f"_qat{options.qat_epochs}" if options.qat_epochs else "") \
        + (f"_{options.calib_images}img" if options.calib_images != Int8Options().calib_images else "") \
        + (f"_lr{options.qat_lr:g}" if options.qat_epochs and options.qat_lr != Int8Options().qat_lr else "")
    (args.out / f"{name}.json").write_text(json.dumps(dict(checkpoint=str(args.checkpoint), gate=gate,
                                                           calib_method=options.calib_method,
                                                           weight_rounding=options.weight_rounding,
                                                           float_first=options.float_first,
                                                           qat_epochs=options.qat_epochs, qat_lr=options.qat_lr,
                                                           made=made, results=results),
                                                      indent=1, default=str))
    (args.out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
