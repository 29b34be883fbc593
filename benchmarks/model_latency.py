"""Batch-1 latency of the models catmood users deploy: PyTorch eager vs ONNX Runtime, same run.

Reproduce:  .venv/bin/python benchmarks/model_latency.py [--models ...] [--batch 1] [--max-seconds 10]
Models are random-initialised (weights do not change speed; no download). Each is saved as a catmood
checkpoint and exported with `catmood export`'s exporter, then measured with `catmood bench`'s code.
Target (issue 6): ONNX Runtime CPU at most 0.75x PyTorch eager CPU latency for resnet18.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
from pathlib import Path

from catmood.bench import BenchOptions, benchmark
from catmood.bench.measure import environment
from catmood.checkpoint import Checkpoint, save_checkpoint
from catmood.export.onnx import export_onnx
from catmood.tables import format_table
from catmood.training.models import create_model

MODELS = ["resnet18", "mobilenetv3_large_100", "tf_efficientnet_lite0", "convnext_tiny", "vit_b_16", "convnext_large"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            created = create_model(name, ("alarmed", "angry", "calm", "pleased"), pretrained=False)
            ckpt = save_checkpoint(Checkpoint(None, created.spec, created.model.state_dict()), Path(tmp) / "m.pt")
            del created
            onnx_path = export_onnx(ckpt, Path(tmp) / "m.onnx")
            report = benchmark([ckpt, onnx_path], BenchOptions(batches=(args.batch,), iterations=args.iterations,
                                                                max_seconds=args.max_seconds, device="cpu"))
        eager = next(r for r in report.rows if r.backend == "torch eager")
        ort = next(r for r in report.rows if r.backend.startswith("onnxruntime"))
        rows.append([name, f"{eager.gflops:.2f}" if eager.gflops else "-", f"{eager.stats.p50_ms:.1f}",
                     f"{eager.stats.p99_ms:.1f}", f"{ort.stats.p50_ms:.1f}", f"{ort.stats.p99_ms:.1f}",
                     f"{ort.vs_eager:.2f}x", f"{ort.stats.images_per_s:.1f}"])
        records.append(dict(model=name, gflops=eager.gflops, eager=eager.stats.__dict__, onnxruntime=ort.stats.__dict__,
                            onnxruntime_vs_eager=ort.vs_eager))
        gc.collect()
    table = format_table(["model", "GFLOPs", "eager p50 ms", "eager p99 ms", "ORT p50 ms", "ORT p99 ms",
                          "ORT/eager (mean)", "ORT img/s"], rows)
    env = environment()
    print(f"{env['cpu']} ({env['cpu_cores']} cores), batch {args.batch}")
    print(table)
    resnet = next((r for r in records if r["model"] == "resnet18"), None)
    if resnet:
        verdict = "PASS" if resnet["onnxruntime_vs_eager"] <= 0.75 else "FAIL"
        print(f"resnet18: ONNX Runtime / PyTorch eager = {resnet['onnxruntime_vs_eager']:.2f}x "
              f"(target <= 0.75x): {verdict}")
    (args.out / "model_latency.json").write_text(json.dumps(dict(environment=env, batch=args.batch,
                                                                 results=records), indent=2))
    (args.out / "model_latency.md").write_text(f"{env['cpu']} ({env['cpu_cores']} cores), batch {args.batch}\n\n"
                                               f"```\n{table}\n```\n")


if __name__ == "__main__":
    main()
