"""The export stage: ONNX and FP16 round trips, raw-frame graphs, metadata, the parity gate catching a
broken export, Triton, TensorRT argument and sidecar handling, clear errors."""

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from catmood import cli
from catmood.backends import load_classifier
from catmood.checkpoint import file_sha256, load_checkpoint
from catmood.errors import CatmoodError
from catmood.export import pipeline
from catmood.export.pipeline import export_checkpoint
from catmood.export.options import EngineOptions, parse_batch_profile
from catmood.export.tensorrt import tensorrt_unavailable
from catmood.export.verify import collect_images
from catmood.metadata import ArtifactError, EngineTarget, check_engine_target, read_onnx_metadata, read_sidecar
from catmood.preprocess import preprocess
from catmood.training.config import resolve_config
from catmood.training.loop import train

QUIET = dict(echo=lambda *a: None)


@pytest.fixture(scope="module")
def trained(shapes_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = resolve_config("finetune", None, dict(data=str(shapes_data), out=str(out), model="test_resnet",
                                                   pretrained=False, epochs=3, batch_size=8, lr=3e-3, workers=0,
                                                   input_size=48, augment="none"))
    train(config, progress=False, echo=lambda *a: None)
    return out / "best.pt"


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return export_checkpoint(trained, out, onnx=True, fp16=True, **QUIET), out


def test_onnx_and_fp16_pass_the_gate_on_real_validation_images(exported, trained):
    report, out = exported
    assert report.passed and report.n_images == 24 and "validation split" in report.images_source
    rows = {r.format: r for r in report.results}
    assert set(rows) == {"pytorch", "onnx", "onnx-fp16"}
    assert rows["onnx"].parity.max_logit_diff <= 1e-4 and rows["onnx"].parity.agreement == 1.0
    assert rows["onnx-fp16"].parity.agreement >= 0.995 and rows["onnx-fp16"].size_mb < rows["onnx"].size_mb
    assert rows["onnx"].accuracy == rows["pytorch"].accuracy
    assert sorted(p.name for p in out.iterdir()) == ["export_report.json", "export_report.md", "model.fp16.onnx",
                                                     "model.onnx"]  # self-contained: no stray .data file
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["passed"] is True and [f["format"] for f in saved["formats"]] == ["pytorch", "onnx", "onnx-fp16"]
    assert "| onnx | `model.onnx` |" in (out / "export_report.md").read_text()


def test_onnx_graph_is_valid_with_named_io_dynamic_batch_and_metadata(exported, trained):
    _, out = exported
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model)
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in model.opset_import)
    (graph_input,) = model.graph.input
    assert graph_input.name == "images" and [o.name for o in model.graph.output] == ["logits"]
    batch_dim = graph_input.type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic
    spec, info = read_onnx_metadata(out / "model.onnx")
    assert spec == load_checkpoint(trained).spec
    assert info["checkpoint_sha256"] == file_sha256(trained) and info["precision"] == "fp32"
    assert {"catmood", "torch", "timm", "onnx", "exporter"} <= set(info)
    half_spec, half_info = read_onnx_metadata(out / "model.fp16.onnx")
    assert half_spec == spec and half_info["precision"] == "fp16" and "LayerNormalization" in half_info["fp32_ops"]
    classifier = load_classifier(out / "model.fp16.onnx")
    probs = classifier.predict(np.zeros((5, 3, 48, 48), np.float32))
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_uint8_frame_graph_equals_the_float_graph(trained, exported, tmp_path):
    _, out = exported
    report = export_checkpoint(trained, tmp_path, onnx=True, fp16=False, input_dtype="uint8", probs=True,
                               latency=False, **QUIET)
    assert report.passed
    raw = load_classifier(tmp_path / "model.uint8.onnx")
    assert raw.spec.input_dtype == "uint8" and raw.spec.input_layout == "NHWC"
    assert [o.name for o in raw.session.get_outputs()] == ["logits", "probs"]
    floats = load_classifier(out / "model.onnx")
    frames = [cv2.imread(str(p)) for p in sorted(Path(load_checkpoint(trained).config["data"]).rglob("*.png"))[:12]]
    raw_in, float_in = preprocess(frames, raw.spec), preprocess(frames, floats.spec)
    assert raw_in.dtype == np.uint8 and raw_in.shape == (12, 48, 48, 3)
    np.testing.assert_allclose(raw.logits(raw_in), floats.logits(float_in), atol=1e-4)
    probs = raw.session.run(["probs"], {"images": raw_in})[0]
    np.testing.assert_allclose(probs, floats.predict(float_in), atol=1e-5)


def _permute_head(path: Path, num_classes: int) -> None:
    """Break an exported model the way a bad export would: the classifier's rows in the wrong order."""
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        if array.ndim == 2 and num_classes in array.shape and max(array.shape) > num_classes:
            axis = array.shape.index(num_classes)
            init.CopyFrom(onnx.numpy_helper.from_array(np.roll(array, 1, axis=axis), init.name))
            onnx.save(model, str(path))
            return
    raise AssertionError("no classifier weight found")


def test_the_gate_catches_a_broken_export_and_names_the_flips(trained, tmp_path, monkeypatch, capsys):
    real = pipeline.export_onnx

    def broken_export(checkpoint, out, **kwargs):
        path = real(checkpoint, out, **kwargs)
        _permute_head(path, 3)
        return path

    monkeypatch.setattr(pipeline, "export_onnx", broken_export)
    code = cli.main(["export", str(trained), "--onnx", "--out", str(tmp_path), "--no-latency"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "onnx: " in printed and "-> FAIL" in printed and "verdict: FAIL" in printed
    flips = re.search(r"onnx flips: (.*)", printed).group(1)
    assert re.search(r"valid/\w+/\d+\.png \((circle|square|stripes) -> (circle|square|stripes)\)", flips)
    saved = json.loads((tmp_path / "export_report.json").read_text())
    onnx_row = next(f for f in saved["formats"] if f["format"] == "onnx")
    assert onnx_row["passed"] is False and len(onnx_row["flips"]) >= 8
    assert {"image", "pytorch", "artifact"} == set(onnx_row["flips"][0])
    assert "images whose label flips" in (tmp_path / "export_report.md").read_text()


def _parse_pbtxt(text: str):
    """Enough of protobuf text format for a Triton config: nested blocks, lists, scalars."""
    tokens = re.findall(r'"[^"]*"|[\[\]{},:]|[^\s\[\]{},:]+', text)
    pos = 0

    def value():
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "{":
            return block("}")
        if token == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        return token.strip('"') if token.startswith('"') else (int(token) if re.fullmatch(r"-?\d+", token) else token)

    def block(end):
        nonlocal pos
        out = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            out[key] = value()
            if pos < len(tokens) and tokens[pos] == ",":
                pos += 1
        pos += 1
        return out

    return block(None)


def test_triton_repository_parses_with_the_right_dims(trained, tmp_path):
    export_checkpoint(trained, tmp_path / "x", onnx=True, fp16=False, triton=tmp_path / "repo", latency=False,
                      **QUIET)
    folder = tmp_path / "repo" / "catmood"
    config = _parse_pbtxt((folder / "config.pbtxt").read_text())
    assert config["name"] == "catmood" and config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] == 32
    (inp,) = config["input"]
    (out,) = config["output"]
    assert (inp["name"], inp["data_type"], inp["dims"]) == ("images", "TYPE_FP32", [3, 48, 48])
    assert (out["name"], out["dims"], out["label_filename"]) == ("logits", [3], "labels.txt")
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8, 16, 32]
    assert (folder / "labels.txt").read_text().split() == ["circle", "square", "stripes"]
    assert (folder / "1" / "model.onnx").read_bytes() == (tmp_path / "x" / "model.onnx").read_bytes()

    from catmood.export.triton import triton_config

    raw = _parse_pbtxt(triton_config(load_checkpoint(trained).spec.replace(input_dtype="uint8", input_layout="NHWC"),
                                     name="m", platform="tensorrt_plan", outputs=["logits", "probs"], max_batch=8))
    assert raw["input"][0]["dims"] == [48, 48, 3] and raw["input"][0]["data_type"] == "TYPE_UINT8"
    assert [o["name"] for o in raw["output"]] == ["logits", "probs"]


def test_an_independent_reader_needs_only_the_onnx_file(exported, trained):
    """What an outside script does: metadata -> its own preprocessing -> onnxruntime -> accuracy."""
    import onnxruntime as ort

    report, out = exported
    path = out / "model.onnx"
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    spec = json.loads(meta["catmood.spec"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    root = Path(load_checkpoint(trained).config["data"]) / "valid"
    correct = total = 0
    for image_path in sorted(root.rglob("*.png")):
        bgr = cv2.imread(str(image_path))
        h, w = bgr.shape[:2]
        short = spec["resize_size"]
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        resized = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        top = int(round((resized.shape[0] - spec["input_size"]) / 2))
        left = int(round((resized.shape[1] - spec["input_size"]) / 2))
        crop = resized[top:top + spec["input_size"], left:left + spec["input_size"], ::-1]  # RGB
        x = (crop.astype(np.float32) / 255 - spec["mean"]) / spec["std"]
        logits = session.run(["logits"], {"images": x.transpose(2, 0, 1)[None].astype(np.float32)})[0]
        correct += spec["class_names"][int(logits.argmax())] == image_path.parent.name
        total += 1
    pytorch_accuracy = next(r.accuracy for r in report.results if r.format == "pytorch")
    assert total == 24 and correct / total == pytest.approx(pytorch_accuracy)


def test_parity_images_fall_back_to_folders_and_generated(tmp_path):
    (tmp_path / "imgs" / "square").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "imgs" / "square" / "a.png"), np.zeros((30, 40, 3), np.uint8))
    labelled = collect_images(("circle", "square"), images_dir=tmp_path / "imgs")
    assert labelled.labels == [1] and labelled.names == ["square/a.png"]
    generated = collect_images(("circle", "square"), dataset=tmp_path / "gone", max_images=5)
    assert len(generated.frames) == 5 and generated.labels is None and "generated" in generated.source
    with pytest.raises(CatmoodError, match="no images found"):
        collect_images(("a", "b"), images_dir=tmp_path / "imgs" / "square" / "..", max_images=0)


def test_tensorrt_arguments_and_missing_library(trained, tmp_path, capsys):
    assert parse_batch_profile("1,8,32") == (1, 8, 32) and parse_batch_profile("4") == (4, 4, 4)
    for bad in ("8,1,32", "1,8", "a,b,c", "0,1,2"):
        with pytest.raises(CatmoodError, match="--batch must be"):
            parse_batch_profile(bad)
    reason = tensorrt_unavailable()
    if reason is None:
        pytest.skip("TensorRT and a GPU are here: the gpu test builds a real engine")
    code = cli.main(["export", str(trained), "--onnx", "--trt", "--out", str(tmp_path), "--no-latency"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"catmood: error: --trt: {reason} (onnx exported and gated)" in captured.out
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "export_report.md").is_file()
    assert f"error: --trt: {reason}" in (tmp_path / "export_report.md").read_text()


def test_engine_sidecar_checks(tmp_path, trained):
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(ArtifactError, match="sidecar model.fp16.engine.json is missing"):
        read_sidecar(engine)
    spec = load_checkpoint(trained).spec
    built = {"spec": spec.to_dict(), "tensorrt": "10.3.0", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    (tmp_path / "model.fp16.engine.json").write_text(json.dumps(built))
    read_spec, sidecar = read_sidecar(engine)
    assert read_spec == spec
    h100 = EngineTarget("10.3.0", "NVIDIA H100 80GB HBM3", "9.0")
    assert check_engine_target(engine, sidecar, h100) == []
    with pytest.raises(ArtifactError) as err:
        check_engine_target(engine, sidecar, EngineTarget("10.3.0", "NVIDIA GeForce RTX 4090", "8.9"))
    assert "built for NVIDIA H100 80GB HBM3 (compute 9.0) with TensorRT 10.3.0, but this machine has NVIDIA " \
           "GeForce RTX 4090" in str(err.value) and "(different GPU compute capability)" in str(err.value)
    for release in ("10.8.0", "10.3.1", "11.0.0", "10.2.0"):
        with pytest.raises(ArtifactError, match="different TensorRT version"):
            check_engine_target(engine, sidecar, EngineTarget(release, "NVIDIA H100 80GB HBM3", "9.0"))
    # build numbers are not part of a release; another SKU of the same chip runs the engine, with a warning
    assert check_engine_target(engine, sidecar, EngineTarget("10.3.0.26", "NVIDIA H100 80GB HBM3", "9.0")) == []
    (warning,) = check_engine_target(engine, sidecar, EngineTarget("10.3.0", "NVIDIA H100 NVL", "9.0"))
    assert "built on NVIDIA H100 80GB HBM3, this is NVIDIA H100 NVL" in warning
    # version compatible: later releases of the same major; hardware compatible: any Ampere or newer GPU
    portable = {**sidecar, "version_compatible": True, "hardware_compatible": True}
    assert check_engine_target(engine, portable, EngineTarget("10.8.0", "NVIDIA A10", "8.6"))
    for release, capability in (("10.2.0", "9.0"), ("11.0.0", "9.0"), ("10.3.0", "7.5")):
        with pytest.raises(ArtifactError, match="different"):
            check_engine_target(engine, portable, EngineTarget(release, "some GPU", capability))
    with pytest.raises(ArtifactError, match="TensorRT engine not found"):
        read_sidecar(tmp_path / "nope.engine")


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_unavailable() is not None, reason=f"TensorRT engine build: {tensorrt_unavailable()}")
def test_tensorrt_engine_passes_the_gate(trained, tmp_path):
    report = export_checkpoint(trained, tmp_path, onnx=False, fp16=False, trt=True, engine=EngineOptions("1,4,8"), **QUIET)
    assert report.passed
    row = next(r for r in report.results if r.format == "tensorrt-fp16")
    assert row.parity.agreement >= 0.995
    spec, sidecar = read_sidecar(tmp_path / "model.fp16.engine")
    assert sidecar["profile"] == {"min": 1, "opt": 4, "max": 8} and spec == load_checkpoint(trained).spec


def test_bad_inputs_are_one_clear_line(tmp_path, trained):
    exe = str(Path(sys.executable).parent / "catmood-export")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    for args, words in (([str(tmp_path / "missing.pt")], "checkpoint not found"),
                        ([str(tmp_path / "junk.pt")], "not a readable PyTorch checkpoint"),
                        ([str(trained), "--images", str(tmp_path / "none")], "--images folder not found")):
        result = subprocess.run([exe, *args], capture_output=True, text=True)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
    with pytest.raises(ArtifactError, match="no catmood model spec"):
        foreign = onnx.helper.make_model(onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
        onnx.save(foreign, str(tmp_path / "foreign.onnx"))
        load_classifier(tmp_path / "foreign.onnx")
    with pytest.raises(CatmoodError, match="unknown model kind .tflite"):
        load_classifier(tmp_path / "model.tflite")
