"""ONNX -> FP16 TensorRT engine (TensorRT 10 Python API), with a sidecar naming what it is bound to.

An engine runs only on the GPU model and TensorRT version it was built with, so `model.fp16.engine.json`
records them (plus the spec, the ONNX file's sha256 and the batch profile); the runtime refuses an engine
whose sidecar does not match the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..backends.tensorrt_backend import current_target, import_tensorrt
from ..checkpoint import file_sha256, provenance
from ..errors import CatmoodError
from ..fileio import atomic_path, atomic_write_bytes, atomic_write_json
from ..metadata import read_onnx_metadata, sidecar_path


def parse_batch_profile(text: str | tuple[int, ...]) -> tuple[int, int, int]:
    """'1,8,32' -> (min, opt, max) batch sizes of the optimisation profile."""
    try:
        values = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise CatmoodError(f"--batch must be MIN,OPT,MAX batch sizes like 1,8,32, got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise CatmoodError(f"--batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return values  # type: ignore[return-value]


def tensorrt_unavailable() -> str | None:
    """None when TensorRT engines can be built here, else one line saying why not."""
    try:
        current_target()
    except CatmoodError as exc:
        return str(exc)
    return None


def _keep_fp32(trt, network) -> int:
    """Pin normalisation, softmax and reductions to FP32 (the layers that overflow in FP16)."""
    kinds = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in kinds or "layernorm" in layer.name.lower().replace("_", ""):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, batch=(1, 8, 32),
                 workspace_gb: float = 4.0, fp32_sensitive: bool = False,
                 timing_cache: str | os.PathLike | None = None, echo=print) -> Path:
    """Build an FP16 engine from `onnx_path`; write it and its sidecar atomically."""
    trt = import_tensorrt()
    target = current_target()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    spec, onnx_info = read_onnx_metadata(onnx_path)
    low, opt, high = parse_batch_profile(batch)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise CatmoodError(f"{onnx_path}: TensorRT's ONNX parser failed with {len(errors)} error(s):\n  "
                           + "\n  ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    config.set_flag(trt.BuilderFlag.FP16)
    pinned = 0
    if fp32_sensitive:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = _keep_fp32(trt, network)
    cache_file = Path(timing_cache) if timing_cache else engine_path.with_suffix(".timing.cache")
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)

    profile = builder.create_optimization_profile()
    tensor = network.get_input(0)
    dims = list(tensor.shape)
    profile.set_shape(tensor.name, [low, *dims[1:]], [opt, *dims[1:]], [high, *dims[1:]])
    config.add_optimization_profile(profile)

    echo(f"building TensorRT FP16 engine for {target.gpu} (batch {low}/{opt}/{high}"
         f"{', norm/softmax/reduce layers pinned to FP32' if fp32_sensitive else ''}); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CatmoodError(f"{onnx_path}: TensorRT could not build an engine (see the messages above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    with atomic_path(cache_file) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    atomic_write_json(sidecar_path(engine_path), {
        "spec": spec.to_dict(), "tensorrt": target.tensorrt, "gpu": target.gpu,
        "compute_capability": target.compute_capability, "precision": "fp16",
        "fp32_sensitive_layers": pinned if fp32_sensitive else 0,
        "profile": {"min": low, "opt": opt, "max": high}, "workspace_gb": workspace_gb,
        "onnx": onnx_path.name, "onnx_sha256": file_sha256(onnx_path), "onnx_provenance": onnx_info,
        **{f"{k}_version": v for k, v in provenance().items()}})
    return engine_path
