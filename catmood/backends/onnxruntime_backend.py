"""Run an ONNX model with ONNX Runtime, trying TensorRT, then CUDA, then CPU execution providers.

The GPU providers get the options deployment tools give them (names as ONNX Runtime's TensorRT and CUDA
execution provider pages document them). Every option is derived from the model file and the provider
chain alone, in `provider_options`, so the export gate and `catmood run` / `catmood bench` open a model
with the same options.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import CatmoodError
from ..metadata import LOGITS_NAME, ArtifactError, graph_input, read_onnx_metadata
from ..preprocess import input_shape
from .base import Classifier

TENSORRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
PREFERENCE = (TENSORRT, CUDA, CPU)

# The batch range the runtime sends: one crop per frame (the whole frame, or the usual single cat face) up
# to several faces, and the export gate's and bench's batches; larger batches are split, never rebuilt.
TRT_PROFILE_BATCH = (1, 1, 32)          # min, opt, max
TRT_OPTIMIZATION_LEVEL = 3              # TensorRT's default: good engines; 4-5 build much longer
CACHE_FOLDER = ".ort-trt-cache"         # beside the model; one sub-folder per model sha256


def model_sha256(path: Path) -> str:
    """Of the graph and its external weights (`.onnx.data`), so new weights never reuse an old engine."""
    digest = hashlib.sha256()
    for part in (path, Path(str(path) + ".data")):
        if part.is_file():
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def trt_cache_dir(path: Path) -> Path:
    """Beside the model; in the user's cache when the model's folder is read-only (an installed model)."""
    key = model_sha256(path)[:16]
    if os.access(path.parent, os.W_OK):
        return path.parent / CACHE_FOLDER / key
    return Path.home() / ".cache" / "catmood" / "ort-trt" / key


def provider_options(path: str | os.PathLike, providers) -> list[tuple[str, dict[str, str]]]:
    """(provider, options) pairs for an `ort.InferenceSession`, from the model file and the provider chain."""
    path = Path(path)
    chain = []
    for name in providers:
        if name == TENSORRT:
            chain.append((name, _tensorrt_options(path)))
        elif name == CUDA:
            # Heuristic search: exhaustive cuDNN benchmarking runs again for every new batch size (faces).
            chain.append((name, {"cudnn_conv_algo_search": "HEURISTIC", "cudnn_conv_use_max_workspace": "1"}))
        else:
            chain.append((name, {}))
    return chain


def _tensorrt_options(path: Path) -> dict[str, str]:
    spec, provenance = read_onnx_metadata(path)
    import onnx

    name = graph_input(onnx.load(str(path), load_external_data=False).graph).name
    cache = str(trt_cache_dir(path))
    shapes = {key: f"{name}:" + "x".join(map(str, input_shape(spec, n)))
              for key, n in zip(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"),
                                TRT_PROFILE_BATCH)}
    # An FP32 graph runs as an FP16 engine with LayerNorm's Pow/Reduce kept FP32 (they overflow in FP16);
    # an FP16 graph already carries its own FP32 islands, which the FP16 flag would let TensorRT undo. A Q/DQ
    # (INT8) graph needs TensorRT's INT8 mode to honour its Q/DQ nodes (the scales are in the graph: no
    # calibration table), and FP16 for the layers they leave in float, as catmood's own INT8 engines do.
    precision = provenance.get("precision", "fp32")
    fp16 = precision in ("fp32", "int8")
    int8 = {"trt_int8_enable": "True"} if precision == "int8" else {}
    return {"trt_fp16_enable": str(fp16), **int8, "trt_layer_norm_fp32_fallback": str(fp16),
            "trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache,
            "trt_builder_optimization_level": str(TRT_OPTIMIZATION_LEVEL), **shapes}


def _warn_engine_build(path: Path, cache: Path) -> None:
    if not any(cache.glob("*.engine")):
        print(f"catmood: note: first start of {path.name} with TensorRT: building its engine (about 0.5-2 min, "
              f"several on Jetson); cached in {cache} for later starts", file=sys.stderr)


class OnnxRuntimeBackend(Classifier):
    """`providers`: the chain to use (every one must really start); None: the best this machine has, as
    ONNX Runtime manages to start them. `device` and `providers` say what really runs."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise CatmoodError("ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from None
        self.path = Path(path)
        self.spec, self.provenance = read_onnx_metadata(self.path)
        available = ort.get_available_providers()
        wanted = providers or [p for p in PREFERENCE if p in available]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise CatmoodError(f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)}); "
                               "for GPU providers install onnxruntime-gpu")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # ONNX Runtime's pool threads spin for work after each run, burning the CPU between frames that the
        # runtime's decoding and preprocessing threads (and other cameras' processes) need. Measured on 2
        # cores, one 15 fps camera with lite0: 15.7 CPU-s per 20 s spinning, 3.9 without; back-to-back runs
        # (bench) cost the same per image either way (benchmarks/RESULTS.md, "Many cameras").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        chain = provider_options(self.path, wanted)
        self.session = self._session(ort, options, chain)
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = LOGITS_NAME if LOGITS_NAME in outputs else outputs[0]
        # ONNX Runtime drops a provider that fails to start (a missing libnvinfer, say) with a log line only.
        self.providers = self.session.get_providers()
        dropped = [p for p in wanted if p not in self.providers]
        if providers and dropped:
            raise CatmoodError(f"{self.path}: ONNX Runtime {ort.__version__} could not start {dropped[0]} (its "
                               "libraries, e.g. libnvinfer for TensorRT, are missing or not the versions it was built "
                               f"for) and fell back to {self.providers[0]}; install them or pick another --backend")
        self.trt_fp16 = self.providers[0] == TENSORRT and dict(chain)[TENSORRT]["trt_fp16_enable"] == "True"
        self.precision = self.provenance.get("precision", "fp32")
        if self.trt_fp16 and self.precision == "fp32":
            self.precision = "fp16"
        self.max_batch = TRT_PROFILE_BATCH[2] if self.providers[0] == TENSORRT else None
        short = self.providers[0].replace("ExecutionProvider", "")
        self.device_type = "cpu" if self.providers[0] == CPU else "cuda"
        self.device = ("cpu" if self.providers[0] == CPU else "cuda:0") + f" ({short} EP, {self.precision})"

    def _session(self, ort, options, chain):
        names = [name for name, _ in chain]
        if TENSORRT in names:
            cache = Path(dict(chain)[TENSORRT]["trt_engine_cache_path"])
            cache.mkdir(parents=True, exist_ok=True)
            _warn_engine_build(self.path, cache)
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=chain)
        except Exception as exc:
            raise ArtifactError(f"{self.path}: ONNX Runtime cannot load it with {', '.join(names)} "
                                f"({str(exc).splitlines()[0][:200]})") from None

    # No IO binding: the input arrives as a numpy array and the caller wants numpy back, so `run` already
    # does the one host-to-device and one device-to-host copy there is; binding pays only for inputs that
    # already live on the GPU.
    def logits(self, batch: np.ndarray) -> np.ndarray:
        if self.max_batch and len(batch) > self.max_batch:  # beyond the profile TensorRT would rebuild
            return np.concatenate([self.logits(batch[i:i + self.max_batch])
                                   for i in range(0, len(batch), self.max_batch)])
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch)})[0]
