"""Training-step speed of the backbones catmood fine-tunes, per memory format, precision and BatchNorm mode.

Reproduce (repo root):  PYTHONPATH=$PWD python3 benchmarks/train_step.py [--device cuda] [--out DIR]

Why: on an H200 the default recipe fine-tuned tf_efficientnet_lite0 at ~30 images/s while resnet18 trained at
~700 (benchmarks/RESULTS.md). One forward + backward + AdamW step on a fixed batch, timed after a warm-up
(device synchronised, bounded by iterations and seconds), for each variant, so the slow combination shows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from catmood.timing import latency_stats, time_it
from catmood.training.models import create_model
from catmood.training.steps import freeze_batchnorm_stats

MODELS = ("tf_efficientnet_lite0", "mobilenetv3_large_100", "resnet18")
# (name, channels_last, autocast dtype or None, BatchNorm statistics frozen, cudnn.benchmark)
VARIANTS = (("channels-last bf16, BN frozen (catmood's default)", True, torch.bfloat16, True, False),
            ("channels-last bf16, BN training", True, torch.bfloat16, False, False),
            ("contiguous bf16, BN frozen", False, torch.bfloat16, True, False),
            ("channels-last fp32, BN frozen", True, None, True, False),
            ("contiguous fp32, BN frozen", False, None, True, False),
            ("channels-last bf16, BN frozen, cudnn.benchmark", True, torch.bfloat16, True, True))


def step_speed(name: str, variant: tuple, device: torch.device, batch: int, size: int, seconds: float) -> dict:
    label, channels_last, dtype, frozen, benchmark = variant
    torch.backends.cudnn.benchmark = benchmark
    model = create_model(name, ("a", "b", "c", "d"), pretrained=False).model.to(device).train()
    if frozen:
        freeze_batchnorm_stats(model.backbone)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 4, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    samples = time_it(step, warmup=3, iterations=30, max_seconds=seconds, sync=sync)
    stats = latency_stats(samples, batch)
    return dict(model=name, variant=label, batch=batch, size=size, step_p50_ms=round(stats.p50_ms, 2),
                images_per_s=round(stats.images_per_s, 1), n=stats.n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=3.0, help="time bound per variant after its warm-up")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else None
    rows, started = [], time.perf_counter()
    for name in args.models:
        for variant in VARIANTS:
            row = step_speed(name, variant, device, args.batch, args.size, args.seconds)
            rows.append(row)
            print(f"{name:<24} {row['variant']:<50} step p50 {row['step_p50_ms']:8.2f} ms  "
                  f"{row['images_per_s']:8.1f} img/s", flush=True)
    lines = [f"Training step, batch {args.batch} at {args.size} px, on {gpu or args.device}, torch {torch.__version__}",
             "", "| model | variant | step p50 ms | images/s |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['step_p50_ms']} | {r['images_per_s']} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_step.json").write_text(json.dumps(dict(device=gpu or args.device, torch=torch.__version__,
                                                             seconds=time.perf_counter() - started, rows=rows),
                                                        indent=1))
    (args.out / "train_step.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
