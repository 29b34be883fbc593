"""The model spec: everything deployment must know to feed a model exactly as training did.

One `ModelSpec` travels with every artifact (checkpoint, ONNX metadata, engine sidecar). No stage derives
class names or preprocessing on its own; they all read it from here.

Preprocessing policy (the same as torchvision's `Resize(resize_size)` + `CenterCrop(input_size)`):
- crop="center": scale the image so its shorter side is `resize_size` (aspect kept), then cut the central
  `input_size` x `input_size` square;
- crop="none": scale the whole image to `input_size` x `input_size` (aspect not kept); `resize_size` must
  then equal `input_size`.
Pixels are then scaled to [0, 1] and normalised with `mean`/`std`, given in the model's `color_order`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import SpecError

SPEC_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
CROPS = ("center", "none")
COLOR_ORDERS = ("RGB", "BGR")
INPUT_LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "uint8")


@dataclass(frozen=True)
class ModelSpec:
    """What a model is and how its input is made. Frozen: a spec never changes under an artifact."""

    architecture: str
    class_names: tuple[str, ...]
    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    crop: str = "center"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: str = "RGB"
    # How an exported graph takes its input: float32 NCHW (normalised) or raw uint8 NHWC frames in the
    # capture's BGR order with normalisation inside the graph. Checkpoints always use float32 NCHW.
    input_layout: str = "NCHW"
    input_dtype: str = "float32"
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        # Accept lists from JSON/YAML but store tuples, so specs stay hashable and comparable.
        for name in ("class_names", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        self._validate()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _validate(self) -> None:
        def fail(message: str) -> None:
            raise SpecError(f"invalid model spec: {message}")

        if not isinstance(self.version, int) or isinstance(self.version, bool):
            fail(f"version must be an integer, got {self.version!r}")
        if self.version > SPEC_VERSION:
            fail(f"spec version {self.version} is newer than this catmood understands ({SPEC_VERSION}); "
                 "upgrade catmood to use this artifact")
        if self.version < 1:
            fail(f"unknown spec version {self.version}")
        if not isinstance(self.architecture, str) or not self.architecture.strip():
            fail("architecture must be a non-empty string")
        if not isinstance(self.class_names, tuple) or len(self.class_names) < 2:
            fail(f"class_names must list at least 2 classes, got {self.class_names!r}")
        for name in self.class_names:
            if not isinstance(name, str) or not name.strip() or name != name.strip():
                fail(f"class names must be non-empty strings without surrounding spaces, got {name!r}")
        if len(set(self.class_names)) != len(self.class_names):
            dupes = sorted({n for n in self.class_names if self.class_names.count(n) > 1})
            fail(f"duplicate class names {dupes}")
        for name in ("input_size", "resize_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{name} must be a positive integer, got {value!r}")
        if self.interpolation not in INTERPOLATIONS:
            fail(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.crop not in CROPS:
            fail(f"crop must be one of {CROPS}, got {self.crop!r}")
        if self.crop == "center" and self.resize_size < self.input_size:
            fail(f"resize_size {self.resize_size} is smaller than input_size {self.input_size}: "
                 "the centre crop would not fit")
        if self.crop == "none" and self.resize_size != self.input_size:
            fail(f"with crop='none' the image is resized straight to input_size, so resize_size "
                 f"({self.resize_size}) must equal input_size ({self.input_size})")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if (not isinstance(value, tuple) or len(value) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in value)):
                fail(f"{name} must be 3 finite numbers, got {value!r}")
        if any(v <= 0 for v in self.std):
            fail(f"std must be positive, got {self.std!r}")
        if self.color_order not in COLOR_ORDERS:
            fail(f"color_order must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        if self.input_layout not in INPUT_LAYOUTS:
            fail(f"input_layout must be one of {INPUT_LAYOUTS}, got {self.input_layout!r}")
        if self.input_dtype not in INPUT_DTYPES:
            fail(f"input_dtype must be one of {INPUT_DTYPES}, got {self.input_dtype!r}")
        if (self.input_dtype, self.input_layout) not in (("float32", "NCHW"), ("uint8", "NHWC")):
            fail(f"input_dtype {self.input_dtype!r} goes with layout "
                 f"{'NCHW' if self.input_dtype == 'float32' else 'NHWC'}, got {self.input_layout!r}")

    # -- serialisation ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (lists, not tuples), stable key order."""
        out = dataclasses.asdict(self)
        for name in ("class_names", "mean", "std"):
            out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        if not isinstance(data, Mapping):
            raise SpecError(f"invalid model spec: expected a mapping, got {type(data).__name__}")
        if "version" not in data:
            raise SpecError("invalid model spec: no 'version' field (not a catmood spec?)")
        version = data["version"]
        if isinstance(version, int) and not isinstance(version, bool) and version > SPEC_VERSION:
            # Say "upgrade" before complaining about fields a newer version may have added.
            raise SpecError(f"invalid model spec: spec version {version} is newer than this catmood "
                            f"understands ({SPEC_VERSION}); upgrade catmood to use this artifact")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"invalid model spec: unknown fields {unknown}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING)
        if missing:
            raise SpecError(f"invalid model spec: missing fields {missing}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"invalid model spec: not JSON ({exc})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)
