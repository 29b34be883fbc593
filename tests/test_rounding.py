"""Error-compensating INT8 weight rounding (catmood.export.rounding): the layer's input rows are what its weights
multiply, the rounding is on ONNX Runtime's grid and ONNX Runtime keeps it, and it moves outputs less than
rounding to nearest on inputs it never saw."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from catmood import cli
from catmood.checkpoint import load_checkpoint, model_from_checkpoint
from catmood.errors import CatmoodError
from catmood.export.int8 import Int8Quantizer, calibration_images, read_images
from catmood.export.options import Int8Options
from catmood.export.rounding import _rows, compensated_rounding, int8_layers, round_layer
from catmood.metadata import read_onnx_metadata


def smooth(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Images that vary slowly from pixel to pixel, as upscaled small photos do: neighbours nearly equal."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, size // 8, size // 8, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def grid_steps(weight: torch.Tensor) -> torch.Tensor:
    """Each weight in steps of ONNX Runtime's per-output-channel symmetric int8 scale (max |w| / 127)."""
    rows = weight.detach().reshape(weight.shape[0], -1).double()
    return rows / (rows.abs().amax(1, keepdim=True) / 127)


LAYERS = {
    "dense 3x3": lambda: nn.Conv2d(6, 8, 3, padding=1),
    "depthwise, stride 2": lambda: nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),
    "grouped 1x1": lambda: nn.Conv2d(6, 4, 1, groups=2),
    "pointwise": lambda: nn.Conv2d(6, 5, 1),
    "linear": lambda: nn.Linear(6, 5),
}


@pytest.mark.parametrize("name", [*LAYERS, "tf same, stride 2"])
def test_input_rows_are_what_the_weights_multiply(name):
    torch.manual_seed(0)
    if name in LAYERS:
        layer = LAYERS[name]()
    else:
        from timm.layers import Conv2dSame
        layer = Conv2dSame(6, 6, 3, stride=2, groups=6)  # pads inside its forward, unevenly
    x = torch.randn(2, 6, 11, 11)
    x = x.permute(0, 2, 3, 1) if isinstance(layer, nn.Linear) else x
    rows = _rows(layer, x)  # [groups, samples, inputs per group]
    groups = rows.shape[0]
    w = layer.weight.reshape(groups, layer.weight.shape[0] // groups, -1)
    got = torch.einsum("gnd,grd->gnr", rows, w)  # every output channel of every position
    with torch.no_grad():
        want = layer(x) - (layer.bias.view(-1, *[1] * (x.dim() - 2)) if not isinstance(layer, nn.Linear)
                           else layer.bias)
    want = want.reshape(-1, want.shape[-1]) if isinstance(layer, nn.Linear) else \
        want.permute(0, 2, 3, 1).reshape(-1, want.shape[1])
    assert torch.allclose(got.permute(1, 0, 2).reshape(want.shape), want, atol=1e-5)


@pytest.mark.parametrize("name", ["dense 3x3", "depthwise, stride 2"])
def test_compensated_rounding_moves_unseen_outputs_less_than_nearest(name):
    torch.manual_seed(1)
    layer = LAYERS[name]()
    seen, unseen = smooth(16, 6, 32, seed=2), smooth(16, 6, 32, seed=3)
    rows = _rows(layer, seen).double()
    moments = torch.einsum("gni,gnj->gij", rows, rows) / rows.shape[1]
    nearest, compensated = LAYERS[name](), LAYERS[name]()
    nearest.load_state_dict(layer.state_dict())
    compensated.load_state_dict(layer.state_dict())
    steps = grid_steps(layer.weight)
    scale = layer.weight.detach().reshape(layer.weight.shape[0], -1).abs().amax(1) / 127
    nearest.weight.data = (torch.round(steps) * scale.double()[:, None]).reshape(layer.weight.shape).float()
    round_layer(compensated, moments)

    on_grid = grid_steps(compensated.weight)
    assert torch.allclose(on_grid, torch.round(on_grid), atol=1e-3)  # ONNX Runtime's rounding leaves it be
    assert torch.equal(on_grid.abs().amax(1).round(), torch.full((on_grid.shape[0],), 127.0, dtype=torch.float64))
    assert not torch.equal(compensated.weight, nearest.weight)
    with torch.no_grad():
        exact = layer(unseen)
        error = {n: float((m(unseen) - exact).pow(2).mean()) for n, m in (("nearest", nearest),
                                                                          ("compensated", compensated))}
    assert error["compensated"] < 0.5 * error["nearest"], error


def test_onnx_runtime_keeps_the_compensated_rounding(models, tmp_path):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from catmood.export.onnx import export_onnx

    ckpt = load_checkpoint(models[0])
    images = calibration_images(ckpt, Int8Options())
    model = model_from_checkpoint(ckpt)
    first = 2  # the first two layers stay in float (--float-first 2), with the checkpoint's own weights
    rounded, facts = compensated_rounding(model, read_images(images.paths, ckpt.spec), torch.device("cpu"), first)
    assert facts["layers"] == len(int8_layers(model, first)) == 13 and facts["images"] == 72
    for original, changed in zip(int8_layers(model), int8_layers(rounded)):
        steps = grid_steps(changed.weight)
        if original in int8_layers(model, first):
            assert torch.allclose(steps, torch.round(steps), atol=1e-3)
            assert (steps - grid_steps(original.weight)).abs().max() < 8  # a few steps at most
        else:
            assert torch.equal(changed.weight, original.weight)

    folded = {}
    for name, state in (("nearest", model.state_dict()), ("compensated", rounded.state_dict())):
        src = export_onnx(dataclasses.replace(ckpt, state_dict=state), tmp_path / f"{name}.onnx")
        quant_pre_process(str(src), str(tmp_path / f"{name}.prepared.onnx"))  # folds normalisation, as int8.py
        prepared = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / f"{name}.prepared.onnx"))
                    .graph.initializer}
        options = Int8Options(weight_rounding=name.replace("compensated", "gptq"), float_first=first)
        out = Int8Quantizer(images, options)(src, tmp_path / f"{name}.int8.onnx")
        tensors = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
        moved = []
        for key, q in tensors.items():
            if q.dtype != np.int8 or not key.endswith("_quantized"):
                continue
            weight = prepared[key.removesuffix("_quantized")]
            scale = tensors[key.replace("_quantized", "_scale")].reshape(-1, *[1] * (q.ndim - 1))
            moved.append(float(np.abs(q * scale - weight).max() / np.abs(weight).max()))
        folded[name] = moved
    assert len(folded["compensated"]) == len(int8_layers(model, first))
    assert max(folded["compensated"]) < 1e-5          # ONNX Runtime found every weight on its grid already
    assert max(folded["nearest"]) > 1e-3              # where it rounds the checkpoint's own weights itself


def test_export_rounds_with_compensation_by_default_and_says_so(models, tmp_path, capsys):
    """The defaults (compensated rounding, every layer but the head in INT8), then nearest rounding with the first
    two layers in float, from the command line."""
    checkpoint = str(models[0])
    assert cli.main(["export", checkpoint, "--int8", "--out", str(tmp_path / "gptq"), "--no-latency"]) == 0
    printed = capsys.readouterr().out
    assert "rounding weights to int8 so that each layer's outputs on 72 images" in printed
    q = read_onnx_metadata(tmp_path / "gptq/model.int8.onnx")[1]["quantization"]
    assert q["weight_rounding"]["layers"] == q["int8_layers"] == 15 and q["weight_rounding"]["images"] == 72
    assert q["qat"] is None and [n["why"] for n in q["float_nodes"]] == ["classifier head"]
    assert cli.main(["export", checkpoint, "--int8", "--weight-rounding", "nearest", "--float-first", "2", "--out",
                     str(tmp_path / "nearest"), "--no-latency"]) == 0
    q = read_onnx_metadata(tmp_path / "nearest/model.int8.onnx")[1]["quantization"]
    assert q["weight_rounding"] is None and q["int8_layers"] == 13
    assert sum(n["op"] == "Conv" and n["why"] == "first layers, on the image" for n in q["float_nodes"]) == 2
    with pytest.raises(CatmoodError, match="--weight-rounding must be one of gptq, nearest, got 'up'"):
        Int8Options(weight_rounding="up")
    with pytest.raises(CatmoodError, match=r"--float-first must be 0 \(every layer but the head in INT8\) or more, "
                                           "got -1"):
        Int8Options(float_first=-1)


def test_a_small_memory_budget_rounds_in_more_passes_each_after_the_last(models, monkeypatch):
    from test_progress import drawn, on_terminal

    from catmood.export import rounding

    ckpt = load_checkpoint(models[0])
    images = read_images(calibration_images(ckpt, Int8Options()).paths[:16], ckpt.spec)
    model = model_from_checkpoint(ckpt)
    terminal = on_terminal(monkeypatch)
    _, one = compensated_rounding(model, images, torch.device("cpu"))
    assert re.search(drawn("INT8 weight rounding", 16, "img"), terminal.getvalue())  # a bar: rate, time left
    monkeypatch.setattr(rounding, "HESSIAN_BUDGET_BYTES", 1)  # one layer per pass
    sequential, facts = compensated_rounding(model, images, torch.device("cpu"), progress=False)
    assert one["passes"] == 1 and facts["passes"] == facts["layers"] == len(int8_layers(model))
    assert re.search(drawn("INT8 weight rounding", 16 * facts["passes"], "img"), terminal.getvalue()) is None
    for layer in int8_layers(sequential):
        steps = grid_steps(layer.weight)
        assert torch.allclose(steps, torch.round(steps), atol=1e-3)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
def test_the_first_layers_the_file_keeps_in_float_are_the_ones_the_rounding_leaves(name, tmp_path):
    """The INT8 file counts its first layers in graph order, the rounding and the fine-tuning in the model's own
    order: for these backbones (timm's with TF-style padding, torchvision's) they agree."""
    from catmood.checkpoint import Checkpoint
    from catmood.export.int8 import COMPUTE_OPS, FIRST_LAYERS, float_nodes
    from catmood.export.onnx import export_onnx
    from catmood.training.models import create_model

    created = create_model(name, ("a", "b"), pretrained=False, input_size=64)
    graph = onnx.load(str(export_onnx(Checkpoint(None, created.spec, created.model.state_dict()),
                                      tmp_path / "model.onnx", model=created.model))).graph
    kept = float_nodes(graph, first=3)
    in_graph = [n.input[1] for n in graph.node
                if n.op_type in COMPUTE_OPS and kept.get(n.name, ("", ""))[1] == FIRST_LAYERS]
    names = {module: name for name, module in created.model.named_modules()}
    skipped = [m for m in int8_layers(created.model) if m not in int8_layers(created.model, 3)]
    assert in_graph == [f"{names[m]}.weight" for m in skipped] and len(skipped) == 3

