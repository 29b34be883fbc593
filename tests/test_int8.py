"""INT8 (Q/DQ) export: the file round-trips with its spec and calibration facts, calibration sees real
preprocessed training images, the gate judges INT8 by agreement and accuracy and catches a broken
quantization, bench and the runtime take the file, and every refusal is one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from catmood import cli
from catmood.backends import select_classifier
from catmood.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from catmood.errors import CatmoodError
from catmood.export import int8 as int8_module
from catmood.export.int8 import CalibrationImages, Int8Quantizer
from catmood.export.options import GATES, Gate, Int8Options
from catmood.export.pipeline import export_checkpoint
from catmood.export.verify import ParityImages, compare
from catmood.metadata import PROVENANCE_KEY, SPEC_KEY, read_onnx_metadata
from catmood.preprocess import preprocess
from catmood.spec import ModelSpec

QUIET = dict(latency=False, echo=lambda *a: None)


@pytest.fixture(scope="module")
def int8_export(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    options = Int8Options(float_first=2)  # the first two layers in float; every other test takes the default 0
    return export_checkpoint(models[0], out, onnx=False, fp16=False, int8=True, int8_options=options, **QUIET), out


def test_the_int8_file_round_trips_with_spec_precision_and_calibration(int8_export, models):
    report, out = int8_export
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "export_report.md", "model.int8.onnx",
                                                     "model.onnx"]  # the FP32 source is exported and gated too
    spec, info = read_onnx_metadata(out / "model.int8.onnx")
    assert spec == read_onnx_metadata(out / "model.onnx")[0] == load_checkpoint(models[0]).spec
    assert info["precision"] == "int8" and info["checkpoint_sha256"] == file_sha256(models[0])
    q = info["quantization"]
    # The weights it quantized were the checkpoint's rounded with error compensation, exported apart from model.onnx.
    assert q["weight_rounding"]["images"] == 72 and info["source_onnx_sha256"] != file_sha256(out / "model.onnx")
    assert q["format"] == "QDQ" and q["activations"] == "uint8 asymmetric"
    assert q["weights"] == "int8 symmetric per output channel"
    data = Path(load_checkpoint(models[0]).config["data"])
    assert q["calibration"] == {"method": "minmax", "images": 72, "unreadable": 0,  # all 3 x 24 training images
                                "source": f"training split of {data}", "batch": 8,
                                "input": "catmood.preprocess with the graph's spec"}
    first = "first layers, on the image"  # the stem, the next convolution, and the ReLU between
    assert [(n["op"], n["why"]) for n in q["float_nodes"]] == [
        ("Conv", first), ("Conv", first), ("Relu", first), ("Gemm", "classifier head")]

    graph = onnx.load(str(out / "model.int8.onnx")).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert q["int8_layers"] == len(convs) - 2 == 13
    weights = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    assert convs[0].input[0] == graph.input[0].name  # the image goes into the stem as it is, not rounded to 8 bits
    source = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out / "model.onnx")).graph.initializer}
    for conv in convs[:2]:  # float, with the checkpoint's weights: the error-compensated rounding left them alone
        np.testing.assert_array_equal(numpy_helper.to_array(weights[conv.input[1]]), source[conv.input[1]])
    for conv in convs[2:]:  # every other convolution's weight arrives as int8 through a DequantizeLinear
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and weights[dq.input[0]].data_type == onnx.TensorProto.INT8
    head = next(n for n in graph.node if n.op_type == "Gemm")
    assert head.input[1] in weights and weights[head.input[1]].data_type == onnx.TensorProto.FLOAT

    rows = {r.format: r for r in report.results}
    row = rows["onnx-int8"]
    assert (row.precision, row.runs_on) == ("int8", "cpu (CPU EP, int8)")
    assert row.gate == GATES["int8"] and row.gate.describe() == "agreement >= 98.0%, accuracy drop <= 1 pt"
    assert 0 < row.parity.max_logit_diff < 0.1 and row.parity.agreement >= 0.9
    assert row.parity.reference_accuracy == rows["pytorch"].accuracy
    assert row.size_mb < 0.4 * rows["onnx"].size_mb  # int8 weights
    assert row.notes[0] == f"calibrated (minmax) on 72 images of the training split of {data}; activations uint8 " \
                           "asymmetric, weights int8 symmetric per output channel; 13 layers in INT8"
    assert re.fullmatch(r"kept in float \(first layers, on the image\): \w+ \(Conv\), \w+ \(Conv\), \w+ \(Relu\)",
                        row.notes[1])
    assert row.notes[2] == "kept in float (classifier head): node_linear (Gemm)"
    markdown = (out / "export_report.md").read_text()
    assert f"- onnx-int8: calibrated (minmax) on 72 images of the training split of {data}" in markdown
    saved = next(f for f in json.loads((out / "export_report.json").read_text())["formats"]
                 if f["format"] == "onnx-int8")
    assert saved["precision"] == "int8" and saved["reference_accuracy"] == rows["pytorch"].accuracy


def test_calibration_feeds_real_training_images_through_the_specs_preprocessing(models, tmp_path, monkeypatch):
    """Spy on ONNX Runtime's data reader: every batch it gets is `preprocess` of training-split images."""
    seen = []
    real = int8_module.CalibrationReader.get_next

    def spy(self):
        index = self.next
        batch = real(self)
        if batch is not None:
            seen.append((self.batches[index], batch[self.input_name], self.spec))
        return batch

    monkeypatch.setattr(int8_module.CalibrationReader, "get_next", spy)
    export_checkpoint(models[0], tmp_path, onnx=False, fp16=False, int8=True, input_dtype="uint8", **QUIET)
    data = Path(load_checkpoint(models[0]).config["data"])
    paths = [p for batch, _, _ in seen for p in batch]
    assert len(paths) == len(set(paths)) == 72 and {p.parent.parent for p in paths} == {data / "train"}
    assert {p.parent.name for p in paths} == {"circle", "square", "stripes"}
    for batch, array, spec in seen:
        assert spec.input_dtype == "uint8" and array.dtype == np.uint8 and array.shape[1:] == (48, 48, 3)
        np.testing.assert_array_equal(array, preprocess([cv2.imread(str(p)) for p in batch], spec))
    # raw-frame graphs keep their own input preparation (cast, colour swap, normalisation) in float
    _, info = read_onnx_metadata(tmp_path / "model.uint8.int8.onnx")
    prepared = {n["op"] for n in info["quantization"]["float_nodes"] if n["why"] == "input preparation"}
    assert {"Cast", "Mul", "Sub"} <= prepared


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_takes_any_number_of_images_and_an_unreadable_one(models, tmp_path, method):
    """ONNX Runtime's histogram calibrators stack every batch of a stride: 29 readable images (not a multiple
    of 8, with a broken file among them) once failed there with an 'inhomogeneous shape' error."""
    train = Path(load_checkpoint(models[0]).config["data"]) / "train"
    calib = tmp_path / "calib"
    calib.mkdir()
    for path in sorted(train.rglob("*.png"))[:29]:
        shutil.copy(path, calib / f"{path.parent.name}_{path.name}")
    (calib / "broken.png").write_bytes(b"not a png")
    options = Int8Options(calib_images=30, calib_method=method, calib_dir=str(calib))
    export_checkpoint(models[0], tmp_path / "out", onnx=False, fp16=False, int8=True, int8_options=options, **QUIET)
    q = read_onnx_metadata(tmp_path / "out" / "model.int8.onnx")[1]["quantization"]
    assert (q["calibration"]["method"], q["calibration"]["images"], q["calibration"]["unreadable"]) == (method, 29, 1)
    assert q["calibration"]["batch"] == 1 and q["int8_layers"] == 15


def _corrupt_scales(path: Path) -> None:
    """A broken quantization: the per-channel weight scales shuffled across channels and scaled up."""
    model = onnx.load(str(path))
    weights = {t.name: t for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    for node in model.graph.node:
        source = weights.get(node.input[0])
        if node.op_type == "DequantizeLinear" and source is not None and source.data_type == onnx.TensorProto.INT8:
            scale = numpy_helper.to_array(weights[node.input[1]])
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(rng.permutation(scale) * 4, node.input[1]))
    onnx.save(model, str(path))


def test_the_gate_catches_a_broken_quantization_and_names_the_flips(models, tmp_path, monkeypatch, capsys):
    checkpoint = str(models[0])
    lenient = ["--int8-agreement", "0.8", "--int8-max-drop", "0.2"]
    assert cli.main(["export", checkpoint, "--int8", "--out", str(tmp_path / "ok"), "--no-latency", *lenient]) == 0
    assert "agreement >= 80.0%, accuracy drop <= 20 pt" in (tmp_path / "ok" / "export_report.md").read_text()
    capsys.readouterr()

    real = Int8Quantizer.__call__

    def broken(self, src, out, **kwargs):
        path = real(self, src, out, **kwargs)
        _corrupt_scales(path)
        return path

    monkeypatch.setattr(Int8Quantizer, "__call__", broken)
    code = cli.main(["export", checkpoint, "--int8", "--out", str(tmp_path / "bad"), "--no-latency", *lenient])
    printed = capsys.readouterr().out
    assert code == 1 and "onnx-int8: " in printed and "verdict: FAIL" in printed
    assert "onnx-int8: post-training quantization flips too many answers: --float-first 2 keeps the layers that " \
           "read the image in float; --qat-epochs 6 fine-tunes a copy" in printed
    flips = re.search(r"onnx-int8 flips: (.*)", printed).group(1)
    assert re.search(r"valid/\w+/\d+\.png \((circle|square|stripes) -> (circle|square|stripes)\)", flips)
    saved = json.loads((tmp_path / "bad" / "export_report.json").read_text())
    row = next(f for f in saved["formats"] if f["format"] == "onnx-int8")
    assert row["passed"] is False and len(row["flips"]) >= 6 and row["agreement"] < 0.8
    onnx_row = next(f for f in saved["formats"] if f["format"] == "onnx")
    assert onnx_row["passed"] is True  # only the quantized file is broken
    assert "## onnx-int8: images whose label flips" in (tmp_path / "bad" / "export_report.md").read_text()


def test_the_int8_gate_needs_agreement_and_at_most_the_allowed_accuracy_drop():
    gate = Gate(None, 0.98, max_accuracy_drop=0.01)
    labels = np.arange(100) % 3
    reference = np.eye(3, dtype=np.float32)[labels]  # PyTorch right on all 100 images
    images = ParityImages([None] * 100, [f"i{i}" for i in range(100)], list(labels), "test")

    def artifact(wrong: int):
        logits = reference.copy()
        logits[:wrong] = np.roll(logits[:wrong], 1, axis=1)
        return compare(reference, logits, images, ("a", "b", "c"))

    one, two = artifact(1), artifact(2)
    assert (one.agreement, one.accuracy_drop, one.passes(gate)) == (0.99, pytest.approx(0.01), True)
    assert (two.agreement, two.accuracy_drop, two.passes(gate)) == (0.98, pytest.approx(0.02), False)
    assert two.passes(Gate(None, 0.98, max_accuracy_drop=0.02)) and two.passes(Gate(None, 0.98))
    unlabelled = compare(reference, reference, ParityImages(images.frames, images.names, None, "t"), ("a", "b", "c"))
    assert unlabelled.accuracy_drop is None and unlabelled.passes(gate)
    with pytest.raises(CatmoodError, match="max accuracy drop must be between 0 and 1, got 2"):
        Gate(None, 0.98, max_accuracy_drop=2)


def test_bench_and_the_runtime_take_the_int8_file(int8_export, models, tmp_path):
    from catmood.bench import BenchOptions, benchmark

    _, out = int8_export
    data = load_checkpoint(models[0]).config["data"]
    report = benchmark([out / "model.int8.onnx"], BenchOptions(batches=(1, 8), warmup=1, iterations=2, device="cpu"),
                       data=data, echo=lambda *a: None)
    assert [(r.backend, r.precision, r.batch) for r in report.rows] == [("onnxruntime CPU", "int8", 1),
                                                                        ("onnxruntime CPU", "int8", 8)]
    (accuracy,) = report.accuracy
    assert accuracy["backend"] == "onnxruntime CPU int8" and accuracy["n"] == 24
    classifier = select_classifier(out / "model.int8.onnx", device="cpu")
    frames = [cv2.imread(str(p)) for p in sorted((Path(data) / "valid").rglob("*.png"))]
    logits = classifier.logits_of_frames(frames)
    labels = [("circle", "square", "stripes").index(Path(p).parent.name)
              for p in sorted((Path(data) / "valid").rglob("*.png"))]
    assert accuracy["accuracy"] == pytest.approx(float((logits.argmax(1) == np.asarray(labels)).mean()))
    assert cli.main(["run", str(out / "model.int8.onnx"), "--source", str(Path(data) / "valid" / "circle"),
                     "--device", "cpu", "--max-frames", "3", "--summary", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 3


def test_too_few_or_missing_calibration_images_are_refused_before_any_work(models, tmp_path, capsys):
    checkpoint = models[0]
    few = tmp_path / "few"
    for i, source in enumerate(sorted((Path(load_checkpoint(checkpoint).config["data"]) / "train").rglob("*.png"))[:5]):
        few.mkdir(exist_ok=True)
        shutil.copy(source, few / f"{i}.png")
    ckpt = load_checkpoint(checkpoint)
    ckpt.config["data"] = str(tmp_path / "moved")
    moved = save_checkpoint(ckpt, tmp_path / "moved.pt")
    for args, words in (([str(checkpoint), "--calib-dir", str(few)], f"{few}: 5 image(s) for INT8 calibration; at "
                                                                      "least 16 are needed"),
                        ([str(checkpoint), "--calib-images", "4"], "--calib-images must be at least 16, got 4"),
                        ([str(checkpoint), "--calib-dir", str(tmp_path / "none")], "--calib-dir folder not found"),
                        ([str(moved)], f"{moved}: INT8 calibration needs real images, and the training split of its "
                                       f"dataset ({tmp_path / 'moved'}) is not there or has other classes; pass "
                                       "--calib-dir DIR")):
        out = tmp_path / "out"
        assert cli.main(["export", *args, "--int8", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == f"catmood: error: {err[len('catmood: error: '):]}" and words in err and err.count("\n") == 1, err
        assert not (out.exists() and any(out.iterdir()))  # refused before any work: nothing written
    with pytest.raises(SystemExit):
        cli.main(["export", str(checkpoint), "--int8", "--calib-method", "mse"])
    assert "--calib-method: invalid choice: 'mse'" in capsys.readouterr().err


def _foreign_graph(path: Path, nodes, spec: ModelSpec) -> Path:
    """A graph with catmood metadata: images (N x 3 x 8 x 8) in, logits (N x 3) out."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT,
                                                                          ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("my.ops", 1)])
    for key, value in ((SPEC_KEY, spec.to_json()), (PROVENANCE_KEY, json.dumps({"precision": "fp32"}))):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_a_model_with_nothing_to_quantize_is_one_clear_line(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec("pooled", ("circle", "square", "stripes"), input_size=8, resize_size=8, crop="none")
    data = Path(load_checkpoint(models[0]).config["data"]) / "train"
    quantize = Int8Quantizer(CalibrationImages(sorted(data.rglob("*.png"))[:16], "test images"), Int8Options())
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    pooled = _foreign_graph(tmp_path / "pooled.onnx", [helper.make_node("Constant", [], ["axes"], value=axes),
                                                       helper.make_node("ReduceMean", ["images", "axes"], ["logits"],
                                                                        keepdims=0)], spec)
    with pytest.raises(CatmoodError) as err:
        quantize(pooled, tmp_path / "pooled.int8.onnx")
    assert str(err.value) == (f"{pooled}: ONNX Runtime quantized none of its convolutions or matrix products "
                              "(ops: ReduceMean): an INT8 copy would gain nothing")
    custom = _foreign_graph(tmp_path / "custom.onnx", [helper.make_node("Pool", ["images"], ["logits"],
                                                                        domain="my.ops")], spec)
    with pytest.raises(CatmoodError, match=rf"^{re.escape(str(custom))}: ONNX Runtime's quantization pre-processing "
                                           r"failed \(.+\)$") as err:
        quantize(custom, tmp_path / "custom.int8.onnx")
    assert "\n" not in str(err.value) and not (tmp_path / "pooled.int8.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["custom.onnx", "pooled.onnx"]  # nothing left in the cwd
