"""The one place where TensorRT releases differ (8.6 on JetPack 6.0; 10.x; 11.x).

Where a release's names show a difference, it is read from them (so a release this code has not seen
behaves like the nearest one it has); where they cannot (10.x still defines an ignored EXPLICIT_BATCH), the
major version decides:

- networks: 8.x needs `EXPLICIT_BATCH` (flag 0 means implicit batch there); 10.x ignores it; 11 has no such
  flag. `STRONGLY_TYPED` exists from 10.0 (in 11 it is always on and the flag is deprecated).
- precision: strongly typed networks take precision from the ONNX types (the gated FP16 ONNX); the weakly
  typed `BuilderFlag.FP16` (and layer pinning with `OBEY_PRECISION_CONSTRAINTS`) exists up to 10.x only
  (deprecated in 10.12, gone in 11).
- INT8 is explicit (Q/DQ nodes in the ONNX, symmetric int8, no calibrator): strongly typed networks take it
  from the Q/DQ types (10.x, 11.x); weakly typed ones need `BuilderFlag.INT8` (with FP16 for the layers left
  in float) to honour the Q/DQ nodes at all (8.6; 10.x's fallback; both flags deprecated in 10.12, gone in 11).
- ONNX: the 8.6 parser reads opset <= 17.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from ..errors import CatmoodError

# Engine precision modes, as sidecars record them.
STRONGLY_TYPED = "strongly-typed"   # built from the FP16 ONNX; no precision flags
WEAK_FP16 = "weak-fp16"             # built from the FP32 ONNX with BuilderFlag.FP16
WEAK_FP16_PINNED = "weak-fp16-pinned"  # the same, with FP32_SENSITIVE_LAYERS pinned to FP32
WEAK_INT8 = "weak-int8"             # built from the symmetric Q/DQ ONNX with BuilderFlag.INT8 (+ FP16)
FP32_SENSITIVE_LAYERS = ("NORMALIZATION", "SOFTMAX", "REDUCE", "POOLING")
# The ONNX parser of TensorRT 8.x reads opsets up to 17 (JetPack 6.0).
MAX_OPSET_TENSORRT_8 = 17


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt as trt
    except ImportError:
        raise CatmoodError("TensorRT is not installed: pip install 'catmood[tensorrt]' on x86 (needs an NVIDIA GPU "
                           "and driver); on Jetson use JetPack's TensorRT (apt install python3-libnvinfer)") from None
    return trt


def parse_version(text: str) -> tuple[int, int, int]:
    """'10.3.0', '11.4.0.106', '8.6.2.3' -> (major, minor, patch); build numbers and suffixes are not part of
    what an engine is bound to."""
    numbers = [int(n) for n in re.findall(r"\d+", str(text))[:3]]
    if not numbers:
        raise CatmoodError(f"cannot read a TensorRT version from {text!r}")
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


@dataclass(frozen=True)
class TensorRTApi:
    """What the installed TensorRT can do. `trt` is the imported module."""

    trt: ModuleType

    @property
    def version(self) -> tuple[int, int, int]:
        return parse_version(self.trt.__version__)

    def members(self, enum: str) -> set[str]:
        """The member names of one of the release's enums (none if it has no such enum)."""
        return set(getattr(getattr(self.trt, enum, None), "__members__", {}))

    @property
    def strongly_typed(self) -> bool:
        return "STRONGLY_TYPED" in self.members("NetworkDefinitionCreationFlag") or self.version[0] >= 11

    @property
    def weak_fp16(self) -> bool:
        return "FP16" in self.members("BuilderFlag")

    @property
    def weak_int8(self) -> bool:
        return "INT8" in self.members("BuilderFlag")

    @property
    def can_pin_layers(self) -> bool:
        return "OBEY_PRECISION_CONSTRAINTS" in self.members("BuilderFlag") and hasattr(self.trt.ILayer, "precision")

    @property
    def max_onnx_opset(self) -> int | None:
        return MAX_OPSET_TENSORRT_8 if self.version[0] < 10 else None

    def precision_modes(self, precision: str = "fp16") -> list[str]:
        """Build modes for a `precision` ("fp16" or "int8") engine, best first: strongly typed where the release
        has it (10.x can still fall back to the weak flag if that build fails), the weak flag otherwise (8.6)."""
        modes = [STRONGLY_TYPED] if self.strongly_typed else []
        flag, weak, mode = {"fp16": ("FP16", self.weak_fp16, WEAK_FP16),
                            "int8": ("INT8", self.weak_int8, WEAK_INT8)}[precision]
        if weak:
            modes.append(mode)
        if not modes:
            raise CatmoodError(f"TensorRT {self.trt.__version__} offers neither strongly typed networks nor the "
                               f"{flag} builder flag: catmood cannot build an {precision.upper()} engine with it")
        return modes

    def network_flags(self, mode: str) -> int:
        flags = self.trt.NetworkDefinitionCreationFlag
        bits = 0
        if self.version[0] < 10:  # 8.x: 0 means implicit batch; dynamic batch needs explicit batch
            bits |= 1 << int(flags.EXPLICIT_BATCH)
        if mode == STRONGLY_TYPED and self.version[0] < 11:  # always on in 11, where the flag is deprecated
            bits |= 1 << int(flags.STRONGLY_TYPED)
        return bits

    def set_precision(self, config, mode: str) -> None:
        """Builder flags for `mode`; none for strongly typed networks (precision comes from the ONNX types)."""
        if mode in (WEAK_FP16, WEAK_FP16_PINNED) or (mode == WEAK_INT8 and self.weak_fp16):
            config.set_flag(self.trt.BuilderFlag.FP16)  # for INT8: the layers the Q/DQ nodes leave in float
        if mode == WEAK_INT8:
            config.set_flag(self.trt.BuilderFlag.INT8)
        if mode == WEAK_FP16_PINNED:
            config.set_flag(self.trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)

    def pin_sensitive_layers(self, network) -> int:
        """Weakly typed retry: normalisation, softmax, reductions and pooling (overflow and long sums) in FP32."""
        trt = self.trt
        kinds = {getattr(trt.LayerType, k) for k in self.members("LayerType") & set(FP32_SENSITIVE_LAYERS)}
        pinned = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in kinds or "layernorm" in layer.name.lower().replace("_", ""):
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
                pinned += 1
        return pinned

    def hardware_compatibility(self, config) -> None:
        """Engines that run on any Ampere or newer GPU (at some speed cost)."""
        if "AMPERE_PLUS" not in self.members("HardwareCompatibilityLevel"):
            raise CatmoodError(f"--hardware-compatible needs TensorRT >= 8.6 with AMPERE_PLUS; "
                               f"this is {self.trt.__version__}")
        config.hardware_compatibility_level = self.trt.HardwareCompatibilityLevel.AMPERE_PLUS

    def version_compatibility(self, config) -> None:
        """Engines that later TensorRT releases of the same major version can run (lean runtime inside)."""
        config.set_flag(self.trt.BuilderFlag.VERSION_COMPATIBLE)


def tensorrt_api() -> TensorRTApi:
    return TensorRTApi(import_tensorrt())
