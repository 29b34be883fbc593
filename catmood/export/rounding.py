"""Error-compensating INT8 weight rounding: weights on ONNX Runtime's own int8 grid, rounded so that each
layer's outputs on the calibration images move as little as possible (GPTQ: Frantar et al. 2022, after Optimal
Brain Quantization).

ONNX Runtime rounds each weight to its nearest int8 value. The errors add up in a layer's output, and where a
layer's inputs are strongly correlated they add up the same way every time: the first depthwise filters of an
edge model sum nine nearly equal pixels on smooth images (upscaled small photos, plain backgrounds), so their
rounding errors pass straight through, and one such layer flipped 4% of a Fashion-MNIST model's answers on its
own (benchmarks/RESULTS.md). Here each layer's weights are rounded one input column at a time, and the error
of each column is spread over the columns not yet rounded through the inverse of the inputs' second moments
H = E[x x^T], which cancels the errors that correlated inputs would sum.

The grid is the one ONNX Runtime derives from the weights: per output channel, symmetric, max |w| / 127. Each
channel's largest weight is kept where it is (+-127 steps), so ONNX Runtime finds the same scale and its own
rounding leaves these weights unchanged; batch normalisation folded into a convolution scales whole channels,
which keeps them on the grid. The classifier head, and the first `float_first` layers, stay in float with the
checkpoint's weights, as in the INT8 file. Layers are rounded in forward order, a memory budget of second-moment
matrices at a time; each group's inputs come from the already rounded layers before it.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CatmoodError

HESSIAN_BUDGET_BYTES = 1 << 30  # second-moment matrices gathered in one pass over the images (float64)
DAMPING = 0.01                  # of the mean diagonal, added to it: keeps H invertible, barely moves the answer
BATCH = 8                       # images per forward pass (unfolded early activations are large)
INT8_MAX = 127                  # ONNX Runtime's symmetric int8 weights: -127..127, max |w| of a channel at 127


def weight_scale(weight: torch.Tensor) -> torch.Tensor:
    """ONNX Runtime's int8 grid of a layer's weights: per output channel, max |w| / 127 (one value per channel)."""
    return weight.detach().abs().flatten(1).amax(1) / INT8_MAX


def int8_layers(model: nn.Module, float_first: int = 0) -> list[nn.Module]:
    """The convolutions and linear layers that run in INT8: all but the model's head and its first `float_first`
    (kept in float, see catmood.export.int8), in the order the model defines them: its forward order."""
    head = set(model.head.modules())
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in head][float_first:]


def _padded(module: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple | int]:
    """The input as the convolution's weights see it, and the padding left to apply. timm's TensorFlow-style
    'same' convolutions pad inside their forward, after the hook."""
    from timm.layers import Conv2dSame
    from timm.layers.padding import pad_same

    if isinstance(module, Conv2dSame):
        return pad_same(x, module.kernel_size, module.stride, module.dilation), 0
    return x, module.padding


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[groups, samples, inputs per group]: the layer's input, one row per output position."""
    if isinstance(module, nn.Linear):
        return x.reshape(1, -1, x.shape[-1])
    if module.kernel_size == (1, 1) and module.stride == (1, 1) and module.groups == 1 and module.padding == (0, 0):
        return x.permute(0, 2, 3, 1).reshape(1, -1, x.shape[1])  # a matrix product: no unfolding needed
    x, padding = _padded(module, x)
    cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
    n, d, positions = cols.shape
    g = module.groups
    return cols.view(n, g, d // g, positions).permute(1, 0, 3, 2).reshape(g, n * positions, d // g)


def _supported(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.padding_mode == "zeros"
                                             and not isinstance(module.padding, str))


class _SecondMoments:
    """E[x x^T] of each layer's input rows, per group, gathered by forward pre-hooks."""

    def __init__(self, layers: list[nn.Module]):
        self.sums: dict[nn.Module, torch.Tensor] = {}
        self.counts: dict[nn.Module, int] = {}
        self.hooks = [m.register_forward_pre_hook(self._hook) for m in layers]

    def _hook(self, module, args):
        rows = _rows(module, args[0].detach().float())
        total = torch.einsum("gni,gnj->gij", rows, rows).double()
        self.sums[module] = self.sums.get(module, 0) + total
        self.counts[module] = self.counts.get(module, 0) + rows.shape[1]

    def matrix(self, module: nn.Module) -> torch.Tensor:
        return self.sums[module] / self.counts[module]

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def round_layer(module: nn.Module, moments: torch.Tensor) -> None:
    """Put `module.weight` on its per-output-channel int8 grid, column by column, each rounding error spread
    over the columns still to come (GPTQ); `moments` [groups, D, D] are its inputs' second moments."""
    weight = module.weight.data
    groups, rows = moments.shape[0], weight.shape[0]
    w = weight.reshape(groups, rows // groups, -1).double()
    scale = weight_scale(weight).double().reshape(groups, rows // groups)
    anchor = w.abs().argmax(2)     # each row's largest weight stays on +-127: ONNX Runtime's scale then matches
    h = moments.clone()
    diagonal = torch.diagonal(h, dim1=1, dim2=2)
    diagonal += DAMPING * diagonal.mean(1, keepdim=True)
    diagonal[diagonal == 0] = 1  # inputs that were always zero: any rounding of their weights is as good
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row stays zero
    todo, out = w.clone(), torch.empty_like(w)
    for i in range(w.shape[2]):
        column = todo[:, :, i]
        rounded = torch.clamp(torch.round(column / safe), -INT8_MAX, INT8_MAX)
        rounded = torch.where(anchor == i, torch.sign(w[:, :, i]) * INT8_MAX, rounded) * scale
        out[:, :, i] = rounded
        error = (column - rounded) / inverse[:, i, i].unsqueeze(1)
        todo[:, :, i + 1:] -= error.unsqueeze(2) * inverse[:, i, i + 1:].unsqueeze(1)
    module.weight.data = out.reshape(weight.shape).to(weight.dtype)


def compensated_rounding(model: nn.Module, images: torch.Tensor, device: torch.device, float_first: int = 0,
                         progress: bool = True) -> tuple[nn.Module, dict]:
    """A copy of `model` (FP32, eval) whose INT8 layers (see `int8_layers`) have their weights rounded with
    error compensation on `images` (preprocessed, N x C x H x W); with what the INT8 file's metadata says."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    rounded = copy.deepcopy(model).to(device).eval()
    layers = [m for m in int8_layers(rounded, float_first) if _supported(m)]
    if not layers:
        raise CatmoodError("INT8 weight rounding: the model has no convolution or linear layer besides its head")
    groups, budget = [[]], 0
    for layer in layers:
        if groups[-1] and budget + _moment_bytes(layer) > HESSIAN_BUDGET_BYTES:
            groups, budget = groups + [[]], 0
        groups[-1].append(layer)
        budget += _moment_bytes(layer)
    with tqdm(total=len(groups) * len(images), desc="INT8 weight rounding", unit="img", leave=False,
              disable=not progress or None) as bar:
        for group in groups:
            moments = _SecondMoments(group)
            try:
                with torch.no_grad():
                    for i in range(0, len(images), BATCH):
                        rounded(images[i:i + BATCH].to(device))
                        bar.update(len(images[i:i + BATCH]))
            finally:
                moments.remove()
            for layer in group:
                if layer in moments.sums:  # a layer the forward never reached keeps ONNX Runtime's rounding
                    round_layer(layer, moments.matrix(layer))
    facts = {"method": "GPTQ (error-compensating, per output channel)", "layers": len(layers),
             "images": len(images), "passes": len(groups), "device": str(device),
             "seconds": round(time.perf_counter() - started, 1)}
    return rounded.cpu(), facts


def _moment_bytes(module: nn.Module) -> int:
    inputs = module.weight[0].numel()  # inputs per group
    groups = getattr(module, "groups", 1)
    return 8 * groups * inputs * inputs
