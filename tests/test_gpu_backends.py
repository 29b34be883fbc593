"""GPU deployment options, checked on the CPU: ONNX Runtime's GPU providers are stood in for by a session
that records what catmood passes and runs the graph on the real CPU provider. These tests check the options
and the bookkeeping, not GPU numerics; the `gpu` tests run the PyTorch CUDA paths where a GPU is."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime
import pytest
import torch

from catmood.backends import select_classifier
from catmood.backends.onnxruntime_backend import (CPU, CUDA, PREFERENCE, TENSORRT, OnnxRuntimeBackend, model_sha256,
                                                  provider_options, trt_cache_dir)
from catmood.backends.torch_backend import TorchBackend
from catmood.errors import CatmoodError
from catmood.export.onnx import export_fp16
from catmood.export.pipeline import export_checkpoint
from catmood.bench.measure import classifiers_for, make_input
from catmood.bench.options import BenchOptions

# Option names from ONNX Runtime's TensorRT and CUDA execution provider pages
# (onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html, CUDA-ExecutionProvider.html).
DOCUMENTED_TRT = {"device_id", "trt_max_workspace_size", "trt_fp16_enable", "trt_int8_enable",
                  "trt_layer_norm_fp32_fallback", "trt_engine_cache_enable", "trt_engine_cache_path",
                  "trt_timing_cache_enable", "trt_timing_cache_path", "trt_builder_optimization_level",
                  "trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"}
DOCUMENTED_CUDA = {"device_id", "gpu_mem_limit", "arena_extend_strategy", "cudnn_conv_algo_search",
                   "do_copy_in_default_stream", "cudnn_conv_use_max_workspace"}
REAL_SESSION = onnxruntime.InferenceSession
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


class FakeGpuOrt:
    """Pretends onnxruntime-gpu is installed: records (model name, providers with options) per session."""

    def __init__(self):
        self.calls, self.batches, self.drop = [], [], set()

    def session(self, path, sess_options=None, providers=None):
        self.calls.append((path.rsplit("/", 1)[-1], providers))
        real = REAL_SESSION(path, sess_options=sess_options, providers=[CPU])
        kept = [name for name, _ in providers if name not in self.drop]
        fake = self

        class Session:
            get_inputs, get_outputs = real.get_inputs, real.get_outputs

            def get_providers(self):
                return kept

            def run(self, names, feed):
                fake.batches.append(len(next(iter(feed.values()))))
                return real.run(names, feed)

        return Session()


@pytest.fixture
def onnx_path(models, tmp_path):
    """A private copy: engine caches made beside it stay out of the shared export folder."""
    return shutil.copy(models[1], tmp_path / "model.onnx")


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = FakeGpuOrt()
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(PREFERENCE))
    monkeypatch.setattr(onnxruntime, "InferenceSession", fake.session)
    return fake


def test_provider_options_follow_the_model(models, tmp_path):
    _, onnx_path, uint8_path = models
    chain = provider_options(onnx_path, PREFERENCE)
    assert [name for name, _ in chain] == [TENSORRT, CUDA, CPU]
    trt, cuda, cpu = (options for _, options in chain)
    cache = str(onnx_path.parent / ".ort-trt-cache" / model_sha256(onnx_path)[:16])
    assert trt == {"trt_fp16_enable": "True", "trt_layer_norm_fp32_fallback": "True",
                   "trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
                   "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache,
                   "trt_builder_optimization_level": "3", "trt_profile_min_shapes": "images:1x3x48x48",
                   "trt_profile_opt_shapes": "images:1x3x48x48", "trt_profile_max_shapes": "images:32x3x48x48"}
    assert cuda == {"cudnn_conv_algo_search": "HEURISTIC", "cudnn_conv_use_max_workspace": "1"} and cpu == {}
    assert set(trt) <= DOCUMENTED_TRT and set(cuda) <= DOCUMENTED_CUDA
    raw = dict(provider_options(uint8_path, [TENSORRT]))[TENSORRT]
    assert raw["trt_profile_max_shapes"] == "images:32x48x48x3" and raw["trt_fp16_enable"] == "True"
    half = dict(provider_options(export_fp16(onnx_path, tmp_path / "model.fp16.onnx"), [TENSORRT]))[TENSORRT]
    assert half["trt_fp16_enable"] == "False" and half["trt_layer_norm_fp32_fallback"] == "False"


def test_a_qdq_graph_runs_in_tensorrts_int8_mode_with_fp16_for_its_float_layers(models, tmp_path, request):
    from catmood.checkpoint import load_checkpoint
    from catmood.export.int8 import Int8Quantizer, calibration_images
    from catmood.export.options import Int8Options

    quantize = Int8Quantizer(calibration_images(load_checkpoint(models[0]), Int8Options()))
    int8 = quantize(models[1], tmp_path / "model.int8-sym.onnx", symmetric=True)  # calibration runs real sessions
    request.getfixturevalue("fake_gpu")
    trt = dict(provider_options(int8, [TENSORRT]))[TENSORRT]
    assert (trt["trt_int8_enable"], trt["trt_fp16_enable"]) == ("True", "True") and set(trt) <= DOCUMENTED_TRT
    classifier = select_classifier(int8)
    assert (classifier.precision, classifier.device) == ("int8", "cuda:0 (Tensorrt EP, int8)")


def test_engine_cache_is_keyed_by_graph_and_weights(models, onnx_path, tmp_path):
    first = trt_cache_dir(onnx_path)
    assert first.parent == tmp_path / ".ort-trt-cache" and first.name == model_sha256(models[1])[:16]
    (tmp_path / "model.onnx.data").write_bytes(b"other weights")
    assert trt_cache_dir(onnx_path) != first


def test_the_export_gate_opens_models_with_the_runtime_options(models, tmp_path, fake_gpu):
    report = export_checkpoint(models[0], tmp_path, onnx=True, fp16=True, latency=False, echo=lambda *a: None)
    gate = dict(fake_gpu.calls)
    assert sorted(gate) == ["model.fp16.onnx", "model.onnx"]
    assert [r.runs_on for r in report.results[1:]] == ["cuda:0 (Tensorrt EP, fp16)", "cuda:0 (Tensorrt EP, fp16)"]
    fake_gpu.calls.clear()
    for name in gate:
        for backend in ("auto", "onnxruntime", "tensorrt"):
            select_classifier(tmp_path / name, backend)  # what `catmood run` opens
            assert fake_gpu.calls.pop() == (name, gate[name])
        # `catmood bench` opens one provider (and the CPU) at a time, each with the gate's options.
        rows = classifiers_for(tmp_path / name, BenchOptions(), print)
        assert len(rows) == len(fake_gpu.calls) == 3
        for (backend, _, _), (opened, chain) in zip(rows, fake_gpu.calls):
            assert opened == name and chain[0] in gate[name]
            assert backend == f"onnxruntime {chain[0][0].replace('ExecutionProvider', '')}"
        fake_gpu.calls.clear()

def test_the_provider_that_really_runs_is_reported(onnx_path, fake_gpu, capsys):
    cache = trt_cache_dir(onnx_path)
    classifier = select_classifier(onnx_path)
    assert (classifier.providers, classifier.precision) == ([TENSORRT, CUDA, CPU], "fp16")
    assert f"building its engine (about 0.5-2 min, several on Jetson); cached in {cache}" in capsys.readouterr().err
    (cache / "TensorrtExecutionProvider_model.engine").write_bytes(b"cached")
    select_classifier(onnx_path)
    assert capsys.readouterr().err == ""
    fake_gpu.drop = {TENSORRT}  # as when libnvinfer is missing: ONNX Runtime only logs it
    fallback = select_classifier(onnx_path)
    assert fallback.device == "cuda:0 (CUDA EP, fp32)" and fallback.describe() == "onnxruntime on cuda:0 (CUDA EP, fp32)"
    with pytest.raises(CatmoodError) as err:
        select_classifier(onnx_path, "tensorrt")
    assert "could not start TensorrtExecutionProvider" in str(err.value) and "fell back to CUDAExecutionProvider" \
        in str(err.value) and "\n" not in str(err.value)


def test_batches_beyond_the_engine_profile_are_split(onnx_path, fake_gpu):
    classifier = select_classifier(onnx_path)
    batch = make_input(classifier.spec, 40)
    logits = classifier.logits(batch)
    assert fake_gpu.batches == [32, 8]
    cpu = OnnxRuntimeBackend(onnx_path, providers=[CPU])
    np.testing.assert_allclose(logits, cpu.logits(batch), rtol=1e-5, atol=1e-5)


def test_cpu_onnxruntime_is_unchanged(onnx_path):
    classifier = OnnxRuntimeBackend(onnx_path)
    assert classifier.providers == [CPU] and classifier.device == "cpu (CPU EP, fp32)"
    assert classifier.max_batch is None and not (onnx_path.parent / ".ort-trt-cache").exists()


def test_torch_on_the_cpu_keeps_fp32_and_refuses_cuda_graphs(models):
    classifier = TorchBackend(models[0], device="cpu")
    assert (classifier.device, classifier.precision, classifier.graphs) == ("cpu", "fp32", None)
    batch = make_input(classifier.spec, 2)
    with torch.inference_mode():
        expected = classifier.model(torch.from_numpy(batch)).numpy()
    np.testing.assert_array_equal(classifier.logits(batch), expected)
    with pytest.raises(CatmoodError, match="CUDA graphs need a CUDA device; this model runs on cpu"):
        TorchBackend(models[0], device="cpu", cuda_graphs=True)


@pytest.mark.gpu
@GPU
def test_cuda_fp16_and_graphs_match_fp32(models):
    fp32 = TorchBackend(models[0], device="cuda", fp16=False)
    half = TorchBackend(models[0], device="cuda")
    graphs = TorchBackend(models[0], device="cuda", cuda_graphs=True)
    assert next(half.model.parameters()).dtype == torch.float16
    assert graphs.device == "cuda (fp16, channels-last, CUDA graphs)"
    for n in (1, 8, 1):
        batch = make_input(fp32.spec, n, seed=n)
        reference, eager, replayed = fp32.logits(batch), half.logits(batch), graphs.logits(batch)
        np.testing.assert_allclose(eager, reference, atol=2e-2 * max(1.0, np.abs(reference).max()))
        np.testing.assert_allclose(replayed, eager, atol=1e-3)
        assert (eager.argmax(1) == reference.argmax(1)).all()
    assert sorted(shape[0][0] for shape in graphs.graphs.graphs) == [1, 8]


@pytest.mark.gpu
@GPU
def test_cuda_event_timing(models):
    from catmood.timing import time_cuda_events

    classifier = TorchBackend(models[0], device="cuda")
    x = classifier.device_input(make_input(classifier.spec, 1))
    samples = time_cuda_events(lambda: classifier.forward_device(x), warmup=2, iterations=5, max_seconds=5)
    assert len(samples) == 5 and all(s > 0 for s in samples)


def test_the_runtime_runs_a_checkpoint_as_cuda_graphs_only_on_a_gpu(models, monkeypatch):
    from catmood.backends import torch_backend

    assert select_classifier(models[0], device="cpu").graphs is None
    assert (select_classifier(models[0]).graphs is None) == (not torch.cuda.is_available())
    asked = []
    monkeypatch.setattr(torch_backend.TorchBackend, "__init__",
                        lambda self, path, device, cuda_graphs: asked.append((device, cuda_graphs)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for device in ("auto", "cuda", "cuda:1"):
        select_classifier(models[0], device=device)
    assert asked == [("auto", True), ("cuda", True), ("cuda:1", True)]


@pytest.mark.gpu
@GPU
def test_the_runtime_default_on_cuda_replays_graphs_that_match_fp32(models):
    classifier, reference = select_classifier(models[0]), TorchBackend(models[0], device="cuda", fp16=False)
    assert classifier.device == "cuda (fp16, channels-last, CUDA graphs)"
    batch = make_input(reference.spec, 3, seed=3)
    expected = reference.logits(batch)
    np.testing.assert_allclose(classifier.logits(batch), expected, atol=2e-2 * max(1.0, np.abs(expected).max()))
