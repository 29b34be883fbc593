"""INT8-aware fine-tuning (`catmood export --int8 --qat-epochs N`): its simulation is the quantization ONNX Runtime
applies, it moves the simulated INT8 model towards the checkpoint's answers, only the INT8 files carry its weights,
they are gated against the checkpoint itself, and the report and metadata say what was done."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from catmood import cli
from catmood.backends import select_classifier
from catmood.checkpoint import file_sha256, load_checkpoint, model_from_checkpoint
from catmood.export.int8 import Int8Quantizer, calibration_images, read_images
from catmood.export.options import Int8Options
from catmood.export.qat import _SimulatedInt8, quantization_aware
from catmood.export.rounding import int8_layers
from catmood.metadata import read_onnx_metadata
from catmood.preprocess import preprocess


@pytest.fixture(scope="module")
def calibration(models):
    ckpt = load_checkpoint(models[0])
    return ckpt, calibration_images(ckpt, Int8Options())


# With the first layers in float ONNX Runtime rounds less than half as much; what the simulation leaves out
# (residual additions) stays the same, so it predicts a smaller share of what is left.
@pytest.mark.parametrize("float_first, share", [(0, 0.35), (2, 0.6)])
def test_the_simulation_is_the_quantization_onnx_runtime_applies(models, calibration, tmp_path, float_first, share):
    ckpt, images = calibration
    options = Int8Options(float_first=float_first)
    int8 = Int8Quantizer(images, options)(models[1], tmp_path / "model.int8.onnx")
    x = torch.from_numpy(preprocess([cv2.imread(str(p)) for p in images.paths], ckpt.spec))
    model = model_from_checkpoint(ckpt)
    with torch.no_grad():
        fp32 = model(x).numpy()
        simulated = _SimulatedInt8(model, options.float_first)
        model(x)  # observe the ranges, as calibration does
        simulated.hold_ranges()
        sim = model(x).numpy()
    ort = select_classifier(int8).logits(x.numpy())
    rounding = np.abs(fp32 - ort).mean()
    assert rounding > 1e-3  # INT8 does change the logits...
    assert np.abs(sim - ort).mean() < share * rounding  # ...and the simulation predicts most of how
    assert simulated.layers == int8_layers(model, float_first)  # the first layers keep float weights
    simulated.remove()
    with torch.no_grad():
        assert np.allclose(model(x).numpy(), fp32, atol=1e-5)  # removing it leaves the float model as it was


def test_fine_tuning_moves_the_simulated_int8_model_towards_the_checkpoint(models, calibration):
    ckpt, images = calibration
    model = model_from_checkpoint(ckpt)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    outcome = quantization_aware(ckpt, model, read_images(images.paths, ckpt.spec), epochs=3, lr=1e-5, device="cpu", progress=False)
    kl, agreement = outcome.facts["simulated_kl"], outcome.facts["simulated_agreement"]
    assert kl["after"] < 0.7 * kl["before"]
    assert agreement["after"] >= agreement["before"] and outcome.facts["images"] == len(images.paths) == 72
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the teacher is untouched
    tuned = outcome.checkpoint.state_dict
    assert tuned.keys() == before.keys() and not any("parametrizations" in k for k in tuned)
    changed = [k for k in tuned if tuned[k].is_floating_point() and not torch.equal(tuned[k], before[k])]
    assert any(k.endswith("weight") for k in changed)
    assert outcome.checkpoint.path == ckpt.path and outcome.checkpoint.spec == ckpt.spec


def test_export_with_qat_gates_int8_against_the_checkpoint_and_says_so(models, tmp_path, capsys):
    checkpoint = str(models[0])
    plain, tuned = tmp_path / "plain", tmp_path / "qat"
    assert cli.main(["export", checkpoint, "--int8", "--out", str(plain), "--no-latency"]) == 0
    code = cli.main(["export", checkpoint, "--int8", "--qat-epochs", "2", "--qat-lr", "1e-4", "--out", str(tuned),
                     "--no-latency"])
    printed = capsys.readouterr().out
    assert code == 0 and "INT8-aware fine-tuning: 2 epoch(s) over 72 images" in printed
    # The FP32 file is the checkpoint's own; only the INT8 file carries the fine-tuned weights.
    assert file_sha256(tuned / "model.onnx") == file_sha256(plain / "model.onnx")

    def weights(path):
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
                if t.data_type == onnx.TensorProto.INT8}

    a, b = weights(plain / "model.int8.onnx"), weights(tuned / "model.int8.onnx")
    assert a.keys() == b.keys() and any(not np.array_equal(a[k], b[k]) for k in a)
    q = read_onnx_metadata(tuned / "model.int8.onnx")[1]["quantization"]
    assert q["qat"]["epochs"] == 2 and q["qat"]["images"] == 72 and q["qat"]["lr"] == 1e-4
    assert read_onnx_metadata(plain / "model.int8.onnx")[1]["quantization"]["qat"] is None
    report = json.loads((tuned / "export_report.json").read_text())
    rows = {r["format"]: r for r in report["formats"]}
    assert rows["pytorch"]["path"] == checkpoint  # the reference is the checkpoint, not the fine-tuned copy
    assert any(n.startswith("INT8-aware fine-tuning first: 2 epoch(s) over 72 images")
               for n in rows["onnx-int8"]["notes"])


def test_bad_qat_options_are_one_line(models, tmp_path, capsys):
    for flags, message in ((["--qat-epochs", "-1"], "--qat-epochs must be 0 (off) or more, got -1"),
                           (["--qat-epochs", "1", "--qat-lr", "0"], "--qat-lr must be between 0 and 1, got 0")):
        assert cli.main(["export", str(models[0]), "--int8", *flags, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
