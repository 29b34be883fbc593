"""Quantization-aware fine-tuning: INT8 weights that give the checkpoint's answers where calibration alone does not.

Post-training quantization rounds every weight and activation once; a model with many near-ties (look-alike
classes) then flips a few percent of its answers. Here a copy of the checkpoint's model learns to give the
checkpoint's own answers *through* simulated INT8, then ONNX Runtime quantizes the copy as usual. The simulation is
the scheme ONNX Runtime applies afterwards: int8 weights per output channel (symmetric, -127..127) and uint8
activations over their min/max on the calibration images, at the inputs of the quantized convolutions and matrix
products and at the outputs of normalisation layers (where ONNX Runtime quantizes its folded convolutions) and
of activations; a normalisation layer that feeds an activation is not rounded itself, as ONNX Runtime fuses the
two. Ranges are calibrated once and then held, as the INT8 file's will be. Before any fine-tuning the simulation
predicted ONNX Runtime's agreement on 1000 unseen photos within 0.3 points (benchmarks/RESULTS.md).

The copy starts from the weights the INT8 file would otherwise carry (by default already rounded with error
compensation, catmood.export.rounding, which puts them on the grid the simulation rounds to).

The target is the checkpoint's logits (distillation by KL divergence) on the calibration images and their mirror
images: no labels are needed, and the INT8 file is gated against the checkpoint, never against the copy.
Normalisation statistics and dropout stay as trained (eval mode); the classifier head, and with `float_first`
everything that runs before the first INT8 layer, stay in float, as they do in the INT8 file. Ops that are not
modules (residual additions, attention products) are not simulated: the simulation covers most of the rounding,
and the gate on real images decides.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoint import Checkpoint
from ..errors import CatmoodError
from .rounding import INT8_MAX, int8_layers, weight_scale

QAT_BATCH = 32
QAT_EPOCHS_HINT = 6  # what a failed INT8 gate suggests: what the real-image benchmark ran (benchmarks/RESULTS.md)
WARMUP_FRACTION = 0.1  # of the steps, before the cosine decay


@dataclass
class QatOutcome:
    checkpoint: Checkpoint  # the fine-tuned weights under the original's spec, path and config
    facts: dict             # what the INT8 file's metadata and the report say about it


class _ActivationRange:
    """Min/max of a tensor while observing; afterwards uint8 fake quantization over that range. `fused`: the
    tensor goes straight into an activation, which ONNX Runtime fuses: only the activation's output is rounded."""

    def __init__(self):
        self.low, self.high, self.fused = 0.0, 0.0, False

    def __call__(self, x: torch.Tensor, observing: bool) -> torch.Tensor:
        if observing:
            self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))
            return x
        if self.fused:
            return x
        scale = max(self.high - self.low, 1e-8) / 255
        return torch.fake_quantize_per_tensor_affine(x, scale, round(-self.low / scale), 0, 255)


class _PerChannelInt8(nn.Module):
    """Weights rounded to int8 per output channel, symmetric; the gradient passes straight through."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = weight_scale(weight).clamp_min(1e-8).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -INT8_MAX, INT8_MAX)


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.GELU)


class _SimulatedInt8:
    """Hooks and weight parametrizations on a catmood model (`model.head` excepted); `remove()` leaves float weights.
    A module called more than once per forward (torchvision's shared ReLU) gets a range per call, as each call
    is its own node in the ONNX graph."""

    def __init__(self, model: nn.Module, float_first: int = 0):
        layers = set(int8_layers(model, float_first))
        self.observing, self.ranges, self.calls, self.hooks, self.layers = True, {}, {}, [], []
        self.norm_output: tuple[torch.Tensor, _ActivationRange] | None = None
        # What runs before the first INT8 layer stays in float, as the file keeps it (--float-first).
        self.float_first, self.reached = float_first, True
        self.hooks.append(model.register_forward_pre_hook(self._forward_starts))
        for module in model.modules():
            if module in layers:
                self.hooks.append(module.register_forward_pre_hook(self._layer_input))
                parametrize.register_parametrization(module, "weight", _PerChannelInt8())
                self.layers.append(module)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                self.hooks.append(module.register_forward_hook(self._norm_output))
            elif isinstance(module, ACTIVATIONS):
                self.hooks.append(module.register_forward_pre_hook(self._activation_input))
                self.hooks.append(module.register_forward_hook(self._output))
        if not self.layers:
            raise CatmoodError("INT8-aware fine-tuning: the model has no convolution or linear layer besides its head")

    def _range(self, module: nn.Module) -> _ActivationRange:
        call = self.calls[id(module)] = self.calls.get(id(module), -1) + 1
        return self.ranges.setdefault((id(module), call), _ActivationRange())

    def _forward_starts(self, *_):
        self.calls.clear()
        self.reached = not self.float_first

    def _layer_input(self, module, args):
        self.reached = True
        return (self._range(module)(args[0], self.observing), *args[1:])

    def _output(self, module, args, out):
        return self._range(module)(out, self.observing) if self.reached else None

    def _norm_output(self, module, args, out):
        if not self.reached:
            return None
        seen = self._range(module)
        out = seen(out, self.observing)
        self.norm_output = (out, seen)
        return out

    def _activation_input(self, module, args):
        if self.reached and self.observing and self.norm_output is not None and args[0] is self.norm_output[0]:
            self.norm_output[1].fused = True

    def hold_ranges(self) -> None:
        self.observing = False

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        for module in self.layers:  # the latent float weights, which ONNX Runtime rounds as simulated
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def quantization_aware(ckpt: Checkpoint, model: nn.Module, images: torch.Tensor, *, epochs: int, lr: float,
                       start: nn.Module | None = None, float_first: int = 0, device: str = "auto",
                       progress: bool = True) -> QatOutcome:
    """Fine-tune a copy of `start` (default: `model`, the checkpoint's, FP32, eval) for `epochs` over `images`
    (preprocessed) with INT8 simulated on all layers but the head and the first `float_first`, to give `model`'s
    logits. Peak learning rate `lr`, warm-up then cosine."""
    from tqdm.auto import tqdm

    from ..training.devices import pick_device

    started = time.perf_counter()
    where = pick_device(device)
    teacher = model.to(where).eval()
    student = copy.deepcopy(start if start is not None else teacher).to(where).eval()
    simulated = _SimulatedInt8(student, float_first)
    views = torch.stack([images, images.flip(3)])  # each image as it is and mirrored
    batches = [slice(i, i + QAT_BATCH) for i in range(0, len(images), QAT_BATCH)]
    with torch.no_grad():  # the teacher's answers are fixed: computed once for both views
        targets = torch.stack([torch.cat([F.log_softmax(teacher(v[b].to(where)), 1).cpu() for b in batches])
                               for v in views])
        for b in batches:
            student(images[b].to(where))  # the simulation's ranges: min/max over the images, then held
    simulated.hold_ranges()
    before = _closeness(student, images, targets[0], batches, where)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=0.0)  # the weights should stay where they are
    steps = epochs * len(batches)
    warmup = max(1, int(WARMUP_FRACTION * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * max(0, s + 1 - warmup) / max(1, steps - warmup)))))
    generator = torch.Generator().manual_seed(int(ckpt.config.get("seed", 0)))
    with tqdm(total=epochs * len(images), desc="INT8-aware fine-tuning", unit="img", leave=False,
              disable=not progress or None) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator)
            view = torch.randint(0, 2, (len(images),), generator=generator)
            for b in batches:
                pick, side = order[b], view[order[b]]
                x, target = views[side, pick].to(where), targets[side, pick].to(where)
                loss = F.kl_div(F.log_softmax(student(x), 1), target, reduction="batchmean", log_target=True)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(len(pick))
                bar.set_postfix(kl=f"{loss.item():.4f}")
    after = _closeness(student, images, targets[0], batches, where)
    simulated.remove()
    teacher.cpu()
    facts = {"epochs": epochs, "lr": lr, "images": len(images), "mirrored": True, "target": "the checkpoint's logits",
             "device": str(where), "seconds": round(time.perf_counter() - started, 1),
             "simulated_agreement": {"before": before[0], "after": after[0]},
             "simulated_kl": {"before": before[1], "after": after[1]}}
    return QatOutcome(ckpt.with_weights(student), facts)


def _closeness(student: nn.Module, images: torch.Tensor, targets: torch.Tensor, batches, where) -> tuple[float, float]:
    """(top-1 agreement, mean KL divergence) of the simulated INT8 student with the teacher's log-probabilities."""
    with torch.no_grad():
        got = torch.cat([F.log_softmax(student(images[b].to(where)), 1).cpu() for b in batches])
    agreement = float((got.argmax(1) == targets.argmax(1)).float().mean())
    return agreement, float(F.kl_div(got, targets, reduction="batchmean", log_target=True))
