"""Contract tests: catmood's TensorRT build and run code against each release's real API surface.

They check API use, not numerics: TensorRT cannot be installed here, so `tests/trt_standin.py` stands in
for it, limited to the names one release defines (tests/data/tensorrt_api/*.json, read from NVIDIA's
bindings wheels by tools/tensorrt_api_surface.py). Every JSON file there is a test case, so a release added
to that folder is checked too. What TensorRT itself would compute never runs here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import catmood.backends as catmood_backends
import catmood.backends.tensorrt_api as tensorrt_api_module
import catmood.backends.tensorrt_backend as tensorrt_backend_module
import trt_standin
from catmood.backends.tensorrt_api import (STRONGLY_TYPED, WEAK_FP16, WEAK_FP16_PINNED, WEAK_INT8, TensorRTApi,
                                           parse_version, tensorrt_api)
from catmood.backends.tensorrt_backend import TensorRTBackend
from catmood.checkpoint import load_checkpoint
from catmood.errors import CatmoodError
from catmood.export.pipeline import export_checkpoint
from catmood.export.options import EngineOptions, Gate, Int8Options
from catmood.export.tensorrt import EngineBuildError, EngineSources, build_engine, gated_engine
from catmood.metadata import read_onnx_metadata, read_sidecar
from conftest import natural_image

QUIET = dict(latency=False, echo=lambda *a: None)
TENSORRT_NETWORK_FLAGS = TensorRTApi.network_flags
SURFACES = trt_standin.surface_files()


def test_the_surfaces_cover_the_releases_people_run():
    versions = {p.stem.split(".")[0] for p in SURFACES}
    assert {"8", "10", "11"} <= versions, f"surfaces for TensorRT 8.6, 10.x and 11.x are needed, found {versions}"


def surface_facts(path) -> dict:
    names = json.loads(path.read_text())["names"]
    major = int(path.stem.split(".")[0])
    return dict(major=major, strongly_typed=major >= 11 or "STRONGLY_TYPED" in names["NetworkDefinitionCreationFlag"]["values"],
                weak_fp16="FP16" in names["BuilderFlag"]["values"], weak_int8="INT8" in names["BuilderFlag"]["values"])


def releases(**wanted):
    """The surfaces whose facts match `wanted` (e.g. strongly_typed=True), as pytest parameters."""
    return [pytest.param(p, id=p.stem) for p in SURFACES
            if all(surface_facts(p)[k] == v for k, v in wanted.items())]


@pytest.fixture
def trt(request, monkeypatch):
    """catmood sees the stand-in of one release (the test's `release` parameter) as `tensorrt`, and the
    fake driver as the GPU."""
    cuda = trt_standin.FakeCuda()
    module = trt_standin.load(request.param, cuda)
    monkeypatch.setattr(tensorrt_api_module, "import_tensorrt", lambda: module)
    monkeypatch.setattr(tensorrt_backend_module, "CudaDriver", lambda index=0: cuda)
    return module


EVERY_RELEASE = pytest.mark.parametrize("trt", releases(), indirect=True)


def has(module, enum: str, member: str) -> bool:
    return member in getattr(module, enum).__members__


@pytest.fixture(scope="module")
def onnx_files(models, tmp_path_factory):
    """The tiny model as FP32 (opset 18 and 17), FP16 and uint8-input ONNX files."""
    checkpoint, fp32, uint8 = models
    out = tmp_path_factory.mktemp("trt-onnx")
    from catmood.export.onnx import export_fp16, export_onnx

    return dict(checkpoint=checkpoint, fp32=fp32, uint8=uint8, fp16=export_fp16(fp32, out / "model.fp16.onnx"),
                opset17=export_onnx(checkpoint, out / "model.opset17.onnx", opset=17),
                uint8_opset17=export_onnx(checkpoint, out / "model.uint8.opset17.onnx", input_dtype="uint8", opset=17))


def first_mode_source(module, onnx_files):
    mode = tensorrt_api().precision_modes()[0]
    return mode, onnx_files["fp16" if mode == STRONGLY_TYPED else "opset17"]


@EVERY_RELEASE
def test_export_builds_the_engine_each_release_can_build_and_gates_it(trt, models, tmp_path):
    checkpoint = models[0]
    report = export_checkpoint(checkpoint, tmp_path, onnx=True, fp16=False, trt=True,
                               engine=EngineOptions("1,2,4"), **QUIET)
    assert report.passed, report.errors
    row = next(r for r in report.results if r.format == "tensorrt-fp16")
    assert row.parity.agreement == 1.0 and row.runs_on.startswith("cuda:0 (NVIDIA H100")
    spec, sidecar = read_sidecar(tmp_path / "model.fp16.engine")
    built = trt._built[-1]
    strongly = has(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED") or trt._major >= 11
    if strongly:  # 10.x, 11.x: from the gated FP16 ONNX, precision from its types, no precision flags
        assert sidecar["precision_mode"] == STRONGLY_TYPED and sidecar["onnx"] == "model.fp16.onnx"
        assert built["strongly_typed"] and not {"FP16", "INT8", "BF16"} & set(built["flags"])
        assert "onnx-fp16" in [r.format for r in report.results], "the FP16 ONNX is gated before it is built from"
    else:  # 8.6: weakly typed FP16 from an opset-17 ONNX on an explicit-batch network
        assert sidecar["precision_mode"] == WEAK_FP16 and built["flags"] == ["FP16"]
        assert sidecar["onnx"] == "model.opset17.onnx" and sidecar["onnx_opset"] == 17
    source = tmp_path / sidecar["onnx"]
    assert sidecar["onnx_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert sidecar["tensorrt"] == trt.__version__ and sidecar["compute_capability"] == "9.0"
    assert sidecar["profile"] == {"min": 1, "opt": 2, "max": 4} and built["profile"][2][0] == 4
    assert spec == read_onnx_metadata(tmp_path / "model.onnx")[0].replace(input_dtype="float32")
    assert trt._log == [] and trt._used_deprecated == set(), trt._used_deprecated


def gate_against(onnx_files):
    """The gate's `check`, with ONNX Runtime on the FP32 ONNX as the reference (as export's check does with
    PyTorch): one FormatResult per engine."""
    from catmood.export.pipeline import FormatResult
    from catmood.export.options import GATES
    from catmood.export.verify import ParityImages, compare

    frames = [natural_image(70 + 5 * i, 90, seed=i) for i in range(8)]
    reference = catmood_backends.load_classifier(onnx_files["fp32"])
    images = ParityImages(frames, [f"f{i}" for i in range(8)], None, "test frames")
    ref = reference.logits_of_frames(frames)

    def check(fmt, path):
        engine = TensorRTBackend(path)
        parity = compare(ref, engine.logits_of_frames(frames), images, reference.spec.class_names)
        return FormatResult(fmt, path, engine.precision, engine.device, 0.0, parity, GATES[engine.precision])
    return check


def sources(onnx_files):
    return EngineSources(onnx_files["checkpoint"], onnx_files["opset17"], onnx_files["fp16"])


@EVERY_RELEASE
def test_an_engine_that_fails_the_gate_is_rebuilt_once_the_way_its_release_allows(trt, onnx_files, tmp_path):
    trt._corrupt_builds = 1  # the first engine reverses its classes: every label flips
    engine = tmp_path / "model.fp16.engine"
    row = gated_engine(sources(onnx_files), engine, gate_against(onnx_files), echo=lambda *a: None)
    assert row.passed and len(trt._built) == 2
    assert any("failed the gate" in note for note in row.notes), row.notes
    _, sidecar = read_sidecar(engine)
    if sidecar["precision_mode"] == STRONGLY_TYPED:  # more ops kept in FP32, still strongly typed
        assert sidecar["onnx"] == "model.fp16-safe.onnx"
        assert "Gemm" in read_onnx_metadata(onnx_files["fp16"].with_name("model.fp16-safe.onnx"))[1]["fp32_ops"]
    else:
        assert sidecar["precision_mode"] == WEAK_FP16_PINNED and trt._built[-1]["flags"] == \
            ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
        assert sidecar["fp32_layers_pinned"] == len(trt._built[-1]["pinned"]) > 0

    trt._corrupt_builds = 2
    failed = gated_engine(sources(onnx_files), engine, gate_against(onnx_files), echo=lambda *a: None)
    assert failed.passed is False and len(trt._built) == 4


@pytest.mark.parametrize("trt", releases(strongly_typed=True), indirect=True)
def test_a_failed_strongly_typed_build_falls_back_only_where_weak_fp16_exists(trt, onnx_files, tmp_path):
    trt._fail_builds["strongly"] = True
    engine = tmp_path / "model.fp16.engine"
    if has(trt, "BuilderFlag", "FP16"):  # 10.x
        row = gated_engine(sources(onnx_files), engine, gate_against(onnx_files), echo=lambda *a: None)
        assert row.passed and read_sidecar(engine)[1]["precision_mode"] == WEAK_FP16
        assert any("build failed" in n and WEAK_FP16 in n for n in row.notes), row.notes
    else:  # 11.x: nothing weaker exists; export reports it as an error
        with pytest.raises(EngineBuildError, match="could not build a strongly-typed engine"):
            gated_engine(sources(onnx_files), engine, gate_against(onnx_files), echo=lambda *a: None)
        assert not engine.exists()


@pytest.mark.parametrize("trt", releases(strongly_typed=True), indirect=True)
def test_putting_back_the_old_unguarded_fp16_flag_fails_wherever_networks_are_strongly_typed(trt, onnx_files,
                                                                                             tmp_path, monkeypatch):
    """The build code before this contract: `config.set_flag(trt.BuilderFlag.FP16)` whatever the release."""
    api = tensorrt_api()
    monkeypatch.setattr(TensorRTApi, "set_precision", lambda self, config, mode: config.set_flag(self.trt.BuilderFlag.FP16))
    expected = EngineBuildError if has(trt, "BuilderFlag", "FP16") else AttributeError
    with pytest.raises(expected):
        build_engine(onnx_files["fp16"], tmp_path / "m.engine", mode=STRONGLY_TYPED, api=api, echo=lambda *a: None)


@pytest.mark.parametrize("trt", releases(major=8), indirect=True)
def test_8x_networks_need_the_explicit_batch_flag(trt, onnx_files, tmp_path, monkeypatch):
    monkeypatch.setattr(TensorRTApi, "network_flags", lambda self, mode: 0)  # the TensorRT 10 idiom
    with pytest.raises(EngineBuildError, match="explicit batch"):
        build_engine(onnx_files["opset17"], tmp_path / "m.engine", mode=WEAK_FP16, echo=lambda *a: None)
    monkeypatch.setattr(TensorRTApi, "network_flags", TENSORRT_NETWORK_FLAGS)
    with pytest.raises(EngineBuildError, match="opset 18"):  # the right flags; the 8.x parser's opset limit
        build_engine(onnx_files["fp32"], tmp_path / "m.engine", mode=WEAK_FP16, echo=lambda *a: None)


@EVERY_RELEASE
@pytest.mark.parametrize("graph", ["fp32", "uint8"])
def test_the_engine_backend_queues_everything_on_one_stream_and_allocates_once(trt, onnx_files, tmp_path, graph):
    mode, source = first_mode_source(trt, onnx_files)
    if graph == "uint8":  # raw frames in: the engine's input buffer is uint8
        source = onnx_files["uint8" if mode == STRONGLY_TYPED else "uint8_opset17"]
    engine = build_engine(source, tmp_path / "m.engine", mode=mode, options=EngineOptions("1,2,4"),
                          echo=lambda *a: None)
    backend = TensorRTBackend(engine)
    cuda = trt._cuda
    from catmood.preprocess import preprocess

    frames = [natural_image(90 + 7 * i, 120, seed=i) for i in range(6)]
    x = preprocess(frames, backend.spec)
    assert backend.input.dtype == x.dtype and backend.input.host.shape[0] == 4  # engine dtype, max batch rows
    setup = len(cuda.ops)
    logits = backend.logits(x)  # 6 rows through a max-batch-4 engine: two runs
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(logits, session.run(["logits"], {"images": x})[0], rtol=1e-5, atol=1e-5)
    ops = cuda.ops[setup:]
    assert not [op for op in ops if op[0] in ("alloc", "host_alloc")], "allocation per call"
    streams = {op[1] for op in ops if len(op) > 1}
    assert streams == {backend.stream}, f"work on several streams: {streams}"
    run = [op[0] for op in ops if op[0] != "make_current"]
    assert run == ["copy_to_device", "execute", "copy_to_host", "synchronize"] * 2, run


@EVERY_RELEASE
def test_cuda_graphs_replay_each_batch_size_after_its_first_run(trt, onnx_files, tmp_path):
    mode, source = first_mode_source(trt, onnx_files)
    engine = build_engine(source, tmp_path / "m.engine", mode=mode, options=EngineOptions("1,2,4"),
                          echo=lambda *a: None)
    backend = TensorRTBackend(engine, cuda_graphs=True)
    from catmood.preprocess import preprocess

    x = preprocess([natural_image(80, 100, seed=s) for s in range(3)], backend.spec)
    first = backend.logits(x[:2])
    setup = len(trt._cuda.ops)
    again = backend.logits(x[:2])
    one = backend.logits(x[2:])
    kinds = [op[0] for op in trt._cuda.ops[setup:]]
    assert kinds.count("graph") == 1 and kinds.count("execute") == 2  # batch 2 replayed; batch 1 run, then captured
    np.testing.assert_array_equal(first, again)
    assert set(backend.graphs) == {1, 2} and one.shape == (1, len(backend.spec.class_names))


@EVERY_RELEASE
def test_gpu_detection_needs_no_torch_cuda(trt, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: pytest.fail("torch.cuda consulted"))
    target = tensorrt_backend_module.current_target()
    assert (target.tensorrt, target.gpu, target.compute_capability) == (trt.__version__, "NVIDIA H100 80GB HBM3",
                                                                         "9.0")


def test_an_engine_is_refused_by_another_release_before_it_is_deserialised(models, onnx_files, tmp_path, monkeypatch):
    builders = {p.stem: trt_standin.load(p, trt_standin.FakeCuda()) for p in SURFACES}
    old, new = builders[SURFACES[0].stem], builders[SURFACES[-1].stem]
    monkeypatch.setattr(tensorrt_api_module, "import_tensorrt", lambda: old)
    monkeypatch.setattr(tensorrt_backend_module, "CudaDriver", lambda index=0: old._cuda)
    mode, source = first_mode_source(old, onnx_files)
    engine = build_engine(source, tmp_path / "m.engine", mode=mode, echo=lambda *a: None)
    monkeypatch.setattr(tensorrt_api_module, "import_tensorrt", lambda: new)
    with pytest.raises(CatmoodError, match=f"built for .* TensorRT {old.__version__}.*different TensorRT version"):
        TensorRTBackend(engine)
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert sidecar["tensorrt"] == old.__version__


def test_no_nvidia_driver_is_one_clear_line(monkeypatch):
    import ctypes

    from catmood.backends import cuda_driver

    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    with pytest.raises(cuda_driver.CudaError, match=r"^no NVIDIA driver found \(libcuda.so.1\): TensorRT needs"):
        cuda_driver.CudaDriver()


# --- INT8: explicit quantization (Q/DQ), one calibration, per release -------------------------------------------
# The stand-in's "engine" runs the Q/DQ ONNX in ONNX Runtime, so the INT8 gate's tolerance for this tiny model is
# not what these tests are about (tests/test_int8.py is); an honest but lenient gate keeps them on API use.
INT8_GATE = {"int8": Gate(None, 0.9, max_accuracy_drop=0.1)}


@pytest.fixture(scope="module")
def int8_files(onnx_files, tmp_path_factory):
    """Q/DQ files of the tiny model: the CPU one (uint8 activations) and TensorRT's (symmetric int8), each at
    opset 18 and 17, from one set of calibration images."""
    from catmood.export.int8 import Int8Quantizer, calibration_images

    out = tmp_path_factory.mktemp("trt-int8")
    checkpoint = load_checkpoint(onnx_files["checkpoint"])
    quantize = Int8Quantizer(calibration_images(checkpoint, Int8Options()))
    return dict(cpu=quantize(onnx_files["fp32"], out / "model.int8.onnx"),
                cpu17=quantize(onnx_files["opset17"], out / "model.int8.opset17.onnx"),
                sym=quantize(onnx_files["fp32"], out / "model.int8-sym.onnx", symmetric=True),
                sym17=quantize(onnx_files["opset17"], out / "model.int8-sym.opset17.onnx", symmetric=True))


def int8_source(int8_files, kind: str = "sym") -> Path:
    """The file of `kind` this release's parser reads (8.6: opset 17)."""
    return int8_files[kind + ("17" if tensorrt_api().max_onnx_opset else "")]


@EVERY_RELEASE
def test_export_builds_the_int8_engine_each_release_can_build_from_the_gated_symmetric_qdq_onnx(trt, models,
                                                                                               tmp_path):
    report = export_checkpoint(models[0], tmp_path, onnx=False, fp16=False, int8=True, trt=True,
                               engine=EngineOptions("1,2,4"), gates=INT8_GATE, **QUIET)
    assert report.passed, report.errors
    assert [r.format for r in report.results] == ["pytorch", "onnx", "onnx-int8", "onnx-int8-sym", "tensorrt-int8"]
    assert not (tmp_path / "model.fp16.engine").exists() and not (tmp_path / "model.fp16.onnx").exists()
    spec, sidecar = read_sidecar(tmp_path / "model.int8.engine")
    built = trt._built[-1]
    assert sidecar["precision"] == "int8" and next(r for r in report.results if r.format == "tensorrt-int8").precision \
        == "int8"
    if has(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED") or trt._major >= 11:
        # 10.x, 11.x: precision from the Q/DQ types; no builder flag at all
        assert sidecar["precision_mode"] == STRONGLY_TYPED and sidecar["onnx"] == "model.int8-sym.onnx"
        assert built["strongly_typed"] and built["flags"] == []
    else:  # 8.6: the INT8 flag honours the Q/DQ nodes, FP16 serves the layers left in float; opset-17 Q/DQ copy
        assert sidecar["precision_mode"] == WEAK_INT8 and built["flags"] == ["FP16", "INT8"]
        assert sidecar["onnx"] == "model.int8-sym.opset17.onnx" and sidecar["onnx_opset"] == 17
    source = tmp_path / sidecar["onnx"]
    assert sidecar["onnx_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    quantization = sidecar["onnx_provenance"]["quantization"]
    assert quantization["activations"] == "int8 symmetric (zero point 0)"
    assert quantization["calibration"]["images"] == read_onnx_metadata(tmp_path / "model.int8.onnx")[1][
        "quantization"]["calibration"]["images"] == 72  # the opset-17 copy saw the same images
    assert spec == read_onnx_metadata(tmp_path / "model.onnx")[0]
    assert trt._log == [] and trt._used_deprecated == set(), trt._used_deprecated


@pytest.mark.parametrize("trt", releases(strongly_typed=False), indirect=True)
def test_after_int8_aware_fine_tuning_the_older_opset_engine_source_is_the_fine_tuned_copy_too(trt, models,
                                                                                               tmp_path):
    """8.6 re-exports at opset 17 and quantizes again: that copy must carry the fine-tuned weights as well."""
    report = export_checkpoint(models[0], tmp_path, onnx=False, fp16=False, int8=True, trt=True,
                               engine=EngineOptions("1,2,4"), int8_options=Int8Options(qat_epochs=1, qat_lr=1e-4),
                               gates=INT8_GATE, **QUIET)
    assert report.passed, report.errors
    sidecar = read_sidecar(tmp_path / "model.int8.engine")[1]
    assert sidecar["onnx"] == "model.int8-sym.opset17.onnx"
    qat = sidecar["onnx_provenance"]["quantization"]["qat"]
    assert qat is not None and qat == read_onnx_metadata(tmp_path / "model.int8.onnx")[1]["quantization"]["qat"]
    plain = export_checkpoint(models[0], tmp_path / "plain", onnx=False, fp16=False, int8=True, trt=True,
                              engine=EngineOptions("1,2,4"), gates=INT8_GATE, **QUIET)
    assert plain.passed, plain.errors

    def int8_weights(path):
        import onnx
        from onnx import numpy_helper

        return sorted((numpy_helper.to_array(t).tobytes() for t in onnx.load(str(path)).graph.initializer
                       if t.data_type == onnx.TensorProto.INT8), key=len)

    tuned, original = (int8_weights(folder / "model.int8-sym.opset17.onnx") for folder in (tmp_path, tmp_path / "plain"))
    assert len(tuned) == len(original) and tuned != original


@EVERY_RELEASE
def test_the_cpu_int8_file_is_not_for_tensorrt_and_the_symmetric_one_is(trt, int8_files, tmp_path):
    mode = tensorrt_api().precision_modes("int8")[0]
    with pytest.raises(EngineBuildError, match="TensorRT quantization is symmetric INT8 only"):
        build_engine(int8_source(int8_files, "cpu"), tmp_path / "m.engine", mode=mode, echo=lambda *a: None)
    engine = build_engine(int8_source(int8_files), tmp_path / "m.engine", mode=mode, options=EngineOptions("1,2,4"),
                          echo=lambda *a: None)
    backend = TensorRTBackend(engine)
    from catmood.preprocess import preprocess

    x = preprocess([natural_image(60 + 9 * i, 80, seed=i) for i in range(3)], backend.spec)
    session = ort.InferenceSession(str(int8_source(int8_files)), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(backend.logits(x), session.run(["logits"], {"images": x})[0], rtol=1e-5, atol=1e-5)
    assert backend.precision == "int8" and backend.sidecar["precision_mode"] == mode


@pytest.mark.parametrize("trt", releases(weak_int8=True), indirect=True)
def test_weakly_typed_int8_needs_the_int8_flag_on_every_release_that_has_it(trt, int8_files, tmp_path, monkeypatch):
    api = tensorrt_api()
    engine = build_engine(int8_source(int8_files), tmp_path / "m.engine", mode=WEAK_INT8, echo=lambda *a: None)
    assert trt._built[-1]["flags"] == ["FP16", "INT8"] and not trt._built[-1]["strongly_typed"]
    assert read_sidecar(engine)[1]["precision_mode"] == WEAK_INT8
    deprecated = {n.split(":")[0] for n in trt._used_deprecated}
    # both flags are deprecated from 10.12 (superseded by strong typing); catmood uses them only where needed
    assert deprecated == ({"BuilderFlag.FP16", "BuilderFlag.INT8"} if parse_version(trt.__version__) >= (10, 12, 0)
                          else set())
    monkeypatch.setattr(TensorRTApi, "set_precision", lambda self, config, mode: config.set_flag(self.trt.BuilderFlag.FP16))
    with pytest.raises(EngineBuildError, match="could not build a weak-int8 engine"):
        build_engine(int8_source(int8_files), tmp_path / "m2.engine", mode=WEAK_INT8, api=api, echo=lambda *a: None)
    assert "Q/DQ layers in a weakly typed network without the INT8 builder flag" in trt._log


@pytest.mark.parametrize("trt", releases(strongly_typed=True), indirect=True)
def test_a_failed_strongly_typed_int8_build_falls_back_only_where_the_int8_flag_exists(trt, onnx_files, int8_files,
                                                                                        tmp_path):
    trt._fail_builds["strongly"] = True
    engine = tmp_path / "model.int8.engine"
    sources = EngineSources(onnx_files["checkpoint"], onnx_files["fp32"], int8_files["sym"], precision="int8")
    check = gate_against(onnx_files)
    if has(trt, "BuilderFlag", "INT8"):  # 10.x
        row = gated_engine(sources, engine, check, echo=lambda *a: None)
        assert row.format == "tensorrt-int8" and read_sidecar(engine)[1]["precision_mode"] == WEAK_INT8
        assert read_sidecar(engine)[1]["onnx"] == "model.int8-sym.onnx"  # 10.x parses opset 18
        assert any("build failed" in n and WEAK_INT8 in n for n in row.notes), row.notes
    else:  # 11.x: no INT8 flag; export reports the error
        with pytest.raises(EngineBuildError, match="could not build a strongly-typed engine"):
            gated_engine(sources, engine, check, echo=lambda *a: None)
        assert not engine.exists()
