"""ONNX -> FP16 or INT8 TensorRT engine, for TensorRT 8.6, 10.x and 11.x, with a sidecar naming what it is bound to.

How FP16 is asked for depends on the release (`backends.tensorrt_api` knows which): 10.x and 11.x build a
strongly typed network from the FP16 ONNX that passed the parity gate, so the engine computes in the
precisions that were checked; 10.x falls back to the weakly typed FP16 flag on the FP32 ONNX if that build
fails; 8.6 (JetPack 6.0) uses the FP16 flag on an explicit-batch network from an opset-17 ONNX. An engine
that fails the gate is rebuilt once: strongly typed from an FP16 ONNX with more ops kept in FP32, weakly
typed with normalisation, softmax, reduce and pooling layers pinned to FP32.

INT8 is explicit: the engine is built from the gated Q/DQ ONNX with symmetric int8 activations
(`model.int8-sym.onnx`), strongly typed on 10.x/11.x, with the INT8 (and FP16) builder flags on 8.6 and as
10.x's fallback; 8.6 gets an opset-17 copy quantized with the same calibration images. No calibrator runs.

An engine runs only on the TensorRT release and GPU generation it was built for, so its sidecar (`.engine.json`)
records them, the ONNX it was really built from (name, sha256, opset), the precision mode and the profile;
the runtime refuses an engine whose sidecar does not match the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..backends.tensorrt_api import STRONGLY_TYPED, WEAK_FP16, WEAK_FP16_PINNED, TensorRTApi, tensorrt_api
from ..backends.tensorrt_backend import current_target
from ..errors import CatmoodError
from ..fileio import atomic_path, atomic_write_bytes, atomic_write_json
from ..metadata import EngineTarget, read_onnx_metadata, sidecar_path
from .options import EngineOptions


class EngineBuildError(CatmoodError):
    """TensorRT could not parse the ONNX or build an engine from it."""


def tensorrt_unavailable() -> str | None:
    """None when TensorRT engines can be built here, else one line saying why not."""
    try:
        current_target()
    except CatmoodError as exc:
        return str(exc)
    return None


def _parse(api: TensorRTApi, onnx_path: Path, mode: str, logger):
    trt = api.trt
    builder = trt.Builder(logger)
    network = builder.create_network(api.network_flags(mode))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"{onnx_path}: TensorRT {trt.__version__}'s ONNX parser failed with {len(errors)} "
                               "error(s):\n  " + "\n  ".join(errors))
    return builder, network, parser


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, mode: str,
                 options: EngineOptions = EngineOptions(), api: TensorRTApi | None = None,
                 target: EngineTarget | None = None, echo=print) -> Path:
    """Build an engine from `onnx_path` in precision `mode`; write it and its sidecar atomically."""
    from ..checkpoint import file_sha256, provenance

    api = api or tensorrt_api()
    target = target or current_target(api)
    trt = api.trt
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    spec, onnx_info = read_onnx_metadata(onnx_path)
    low, opt, high = options.profile

    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = _parse(api, onnx_path, mode, logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gb * (1 << 30)))
    api.set_precision(config, mode)
    pinned = api.pin_sensitive_layers(network) if mode == WEAK_FP16_PINNED else 0
    if options.version_compatible:
        api.version_compatibility(config)
    if options.hardware_compatible:
        api.hardware_compatibility(config)
    cache_file = Path(options.timing_cache) if options.timing_cache else engine_path.with_suffix(".timing.cache")
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)

    profile = builder.create_optimization_profile()
    tensor = network.get_input(0)
    dims = list(tensor.shape)
    profile.set_shape(tensor.name, [low, *dims[1:]], [opt, *dims[1:]], [high, *dims[1:]])
    config.add_optimization_profile(profile)

    echo(f"building a TensorRT {trt.__version__} engine ({mode}) from {onnx_path.name} for {target.gpu}, "
         f"batch {low}/{opt}/{high}; this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build a {mode} engine (see the messages above)")
    atomic_write_bytes(engine_path, bytes(serialized))
    with atomic_path(cache_file) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    atomic_write_json(sidecar_path(engine_path), {
        "spec": spec.to_dict(), "tensorrt": trt.__version__, "gpu": target.gpu,
        "compute_capability": target.compute_capability,
        "precision": "int8" if onnx_info.get("precision") == "int8" else "fp16", "precision_mode": mode,
        "fp32_layers_pinned": pinned, "version_compatible": options.version_compatible,
        "hardware_compatible": options.hardware_compatible,
        "profile": {"min": low, "opt": opt, "max": high}, "workspace_gb": options.workspace_gb,
        "onnx": onnx_path.name, "onnx_sha256": file_sha256(onnx_path), "onnx_opset": onnx_info.get("opset"),
        "onnx_provenance": onnx_info, **{f"{k}_version": v for k, v in provenance().items()}})
    return engine_path


@dataclass
class EngineSources:
    """The ONNX files an engine can be built from; the missing ones are exported on demand."""

    checkpoint: object          # catmood.checkpoint.Checkpoint, for an older-opset export
    fp32: Path                  # the gated FP32 ONNX
    typed: Path                 # the gated ONNX strongly typed builds take precision from (FP16, or Q/DQ INT8)
    input_dtype: str = "float32"
    probs: bool = False
    precision: str = "fp16"     # of the engine: "fp16" or "int8"
    quantize: Callable[[Path, Path], Path] | None = None   # INT8: FP32 ONNX -> symmetric Q/DQ ONNX

    def for_mode(self, mode: str, api: TensorRTApi, echo=print) -> Path:
        from .onnx import export_onnx

        if mode == STRONGLY_TYPED:
            return self.typed
        opset = read_onnx_metadata(self.fp32)[1].get("opset")
        if api.max_onnx_opset is None or (opset is not None and opset <= api.max_onnx_opset):
            return self.typed if self.precision == "int8" else self.fp32
        older = self.fp32.with_name(self.fp32.name.replace(".onnx", f".opset{api.max_onnx_opset}.onnx"))
        echo(f"TensorRT {api.trt.__version__} reads ONNX opset <= {api.max_onnx_opset}: exporting {older.name}")
        older = export_onnx(self.checkpoint, older, input_dtype=self.input_dtype, probs=self.probs,
                            opset=api.max_onnx_opset)
        if self.precision == "int8":  # the same calibration images, quantized again on the older graph
            opset_tag = f".opset{api.max_onnx_opset}.onnx"
            return self.quantize(older, self.typed.with_name(self.typed.name.replace(".onnx", opset_tag)))
        return older

    def fp16_more_fp32(self) -> Path:
        """The strongly typed retry: an FP16 ONNX with more ops kept in FP32."""
        from .onnx import FP16_KEEP_FP32_SAFE, export_fp16

        return export_fp16(self.fp32, self.typed.with_name(self.typed.name.replace(".fp16.", ".fp16-safe.")),
                           keep_fp32=FP16_KEEP_FP32_SAFE)


RETRY = {STRONGLY_TYPED: "rebuilt from an FP16 ONNX that also keeps pooling, the head and activations in FP32",
         WEAK_FP16: "rebuilt with normalisation, softmax, reduce and pooling layers pinned to FP32"}


def gated_engine(sources: EngineSources, engine_path: Path, check, *, options: EngineOptions = EngineOptions(),
                 api: TensorRTApi | None = None, echo=print):
    """Build the engine in the best precision mode this TensorRT has, falling back to the next mode if the
    build fails, and gate it with `check(format, path) -> row`; a failed gate gets one retry."""
    api = api or tensorrt_api()
    target = current_target(api)
    modes, notes, fmt = api.precision_modes(sources.precision), [], f"tensorrt-{sources.precision}"
    for i, mode in enumerate(modes):
        try:
            build_engine(sources.for_mode(mode, api, echo), engine_path, mode=mode, options=options, api=api,
                         target=target, echo=echo)
        except EngineBuildError as exc:
            if i + 1 == len(modes):
                raise
            notes.append(f"the {mode} build failed ({str(exc).splitlines()[0]}); built {modes[i + 1]} instead")
            echo(f"TensorRT: {notes[-1]}")
            continue
        row = check(fmt, engine_path)
        retry = _retry(mode, api, sources)
        if not row.passed and retry:
            retry_mode, retry_source = retry
            echo(f"TensorRT engine failed the parity gate: {RETRY[mode]}")
            build_engine(retry_source, engine_path, mode=retry_mode, options=options, api=api, target=target,
                         echo=echo)
            first = row.parity
            row = check(fmt, engine_path)
            notes.append(f"the first {mode} build failed the gate (agreement {first.agreement:.2%}, max |logit diff| "
                         f"{first.max_logit_diff:.2e}); {RETRY[mode]}")
        row.notes[:0] = notes
        return row
    raise AssertionError("unreachable: precision_modes() is never empty")


def _retry(mode: str, api: TensorRTApi, sources: EngineSources):
    if sources.precision == "int8":  # the Q/DQ nodes fix what runs in INT8: a rebuild would change nothing
        return None
    if mode == STRONGLY_TYPED:
        return STRONGLY_TYPED, sources.fp16_more_fp32()
    if mode == WEAK_FP16 and api.can_pin_layers:
        return WEAK_FP16_PINNED, sources.for_mode(WEAK_FP16, api)
    return None
