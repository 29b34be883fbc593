"""Where INT8 flips answers: the INT8 simulation of catmood.export.qat (ONNX Runtime's scheme) on unseen photos,
with weights only, activations only or both rounded, and optionally one layer's weights at a time.

Reproduce (after benchmarks/quality_fashion_mnist.py has trained the run):
    PYTHONPATH=$PWD .venv/bin/python benchmarks/int8_sensitivity.py /tmp/catmood-quality/runs/finetune_seed_1/best.pt \
        [--images 1000] [--weight-rounding nearest|gptq] [--per-layer]
Prints top-1 agreement with the checkpoint and KL divergence for each case (benchmarks/RESULTS.md, INT8).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from fashion_mnist_data import rest_samples  # noqa: E402

from catmood.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from catmood.export.int8 import calibration_images, read_images  # noqa: E402
from catmood.export.options import WEIGHT_ROUNDINGS, Int8Options  # noqa: E402
from catmood.export.qat import _SimulatedInt8  # noqa: E402
from catmood.export.rounding import compensated_rounding  # noqa: E402


def logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + 32]) for i in range(0, len(x), 32)])


def closeness(got: torch.Tensor, want: torch.Tensor) -> str:
    agreement = float((got.argmax(1) == want.argmax(1)).float().mean())
    kl = float(F.kl_div(got.log_softmax(1), want.log_softmax(1), reduction="batchmean", log_target=True))
    return f"agreement {agreement:.2%}, KL {kl:.5f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--images", type=int, default=1000, help="unseen photos (spread over the left-over t10k)")
    parser.add_argument("--weight-rounding", default="nearest", choices=WEIGHT_ROUNDINGS)
    parser.add_argument("--per-layer", action="store_true", help="also each layer's weights alone (slow; nearest)")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt).eval()
    calibration = read_images(calibration_images(ckpt, Int8Options()).paths, ckpt.spec)
    rest = rest_samples(Path(ckpt.config["data"]), list(ckpt.spec.class_names))
    unseen = read_images([s.path for s in rest[::max(1, len(rest) // args.images)][:args.images]], ckpt.spec)
    want = logits(model, unseen)
    student = compensated_rounding(model, calibration, torch.device("cpu"))[0] if args.weight_rounding == "gptq" \
        else model_from_checkpoint(ckpt).eval()
    simulated = _SimulatedInt8(student)
    logits(student, calibration)  # the activation ranges, as calibration observes them
    simulated.hold_ranges()
    ranges = list(simulated.ranges.values())
    fused = [r.fused for r in ranges]
    weights = [m.parametrizations.weight[0] for m in simulated.layers]

    def case(name: str, weights_on: list[bool], activations_on: bool) -> None:
        for rounding, on in zip(weights, weights_on):
            if on:
                rounding.__dict__.pop("forward", None)  # the class's rounding again
            else:
                rounding.forward = lambda w: w
        for r, was in zip(ranges, fused):
            r.fused = was if activations_on else True
        print(f"{name}: {closeness(logits(student, unseen), want)}", flush=True)

    print(f"`{args.checkpoint}`, {len(unseen)} unseen photos, weights rounded {args.weight_rounding}, "
          f"ranges from {len(calibration)} training images")
    case("weights and activations", [True] * len(weights), True)
    case("weights only", [True] * len(weights), False)
    if args.weight_rounding == "gptq":
        return  # its weights are already rounded: "activations only" and per-layer runs are the checkpoint's (nearest)
    case("activations only", [False] * len(weights), True)
    if args.per_layer:
        names = {m: n for n, m in student.named_modules()}
        for i, layer in enumerate(simulated.layers):
            case(f"weights of {names[layer]} only", [j == i for j in range(len(weights))], False)


if __name__ == "__main__":
    main()
