"""What an export is asked to do, and its defaults: light to import, so the CLI reads its defaults here."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CatmoodError

DEFAULT_OPSET = 18
MIN_OPSET = 14  # ONNX Runtime's and TensorRT's oldest useful opset; LayerNormalization needs 17 (ViT, ConvNeXt)


def check_opset(opset: int) -> int:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise CatmoodError(f"--opset must be between {MIN_OPSET} and {newest} (this onnx package's newest), "
                           f"got {opset}")
    return opset


@dataclass(frozen=True)
class Gate:
    """Pass when the max |logit difference| is within `max_logit_diff` (None: not checked), top-1
    agreement with PyTorch is at least `min_agreement` and, on labelled images, top-1 accuracy is at most
    `max_accuracy_drop` below PyTorch's (None: not checked; 0.01 is one percentage point)."""

    max_logit_diff: float | None
    min_agreement: float
    max_accuracy_drop: float | None = None

    def __post_init__(self):
        if not 0 <= self.min_agreement <= 1:
            raise CatmoodError(f"a gate's agreement must be between 0 and 1, got {self.min_agreement:g}")
        if self.max_logit_diff is not None and not self.max_logit_diff >= 0:
            raise CatmoodError(f"a gate's max logit difference must be >= 0, got {self.max_logit_diff:g}")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 1:
            raise CatmoodError(f"a gate's max accuracy drop must be between 0 and 1, got {self.max_accuracy_drop:g}")

    def describe(self) -> str:
        parts = [f"agreement >= {self.min_agreement:.1%}"]
        if self.max_logit_diff is not None:
            parts.insert(0, f"max abs logit diff <= {self.max_logit_diff:g}")  # no pipes: it sits in a markdown table
        if self.max_accuracy_drop is not None:
            parts.append(f"accuracy drop <= {100 * self.max_accuracy_drop:g} pt")
        return ", ".join(parts)


# INT8 changes logits by design (a few percent), so it is judged by labels, not by logit distance.
GATES = {"fp32": Gate(1e-4, 1.0), "fp16": Gate(None, 0.995), "int8": Gate(None, 0.98, max_accuracy_drop=0.01)}

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
WEIGHT_ROUNDINGS = ("gptq", "nearest")  # error-compensating (catmood.export.rounding), or ONNX Runtime's own
MIN_CALIBRATION_IMAGES = 16  # fewer cannot stand for the activation ranges the model meets


@dataclass(frozen=True)
class Int8Options:
    """How the INT8 (Q/DQ) model is calibrated: up to `calib_images` images of the training split (or of
    `calib_dir`), spread over the classes, through the spec's own preprocessing, `batch` at a time. Weights are
    rounded to int8 by `weight_rounding`: "gptq" on those images (see catmood.export.rounding) or "nearest". The
    first `float_first` convolutions or matrix products, which read the image, stay in float with the
    checkpoint's weights (see catmood.export.int8). With `qat_epochs`, a copy of the model first learns the
    checkpoint's answers through simulated INT8 on those images (see catmood.export.qat), at peak learning rate
    `qat_lr`."""

    calib_images: int = 300
    calib_method: str = "minmax"
    calib_dir: str | None = None
    batch: int = 8
    weight_rounding: str = "gptq"
    float_first: int = 0
    qat_epochs: int = 0
    qat_lr: float = 1e-5

    def __post_init__(self):
        if self.calib_method not in CALIBRATION_METHODS:
            raise CatmoodError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, "
                               f"got {self.calib_method!r}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise CatmoodError(f"--weight-rounding must be one of {', '.join(WEIGHT_ROUNDINGS)}, "
                               f"got {self.weight_rounding!r}")
        if self.calib_images < MIN_CALIBRATION_IMAGES:
            raise CatmoodError(f"--calib-images must be at least {MIN_CALIBRATION_IMAGES}, got {self.calib_images}")
        if self.batch < 1:
            raise CatmoodError(f"the calibration batch must be at least 1, got {self.batch}")
        if self.float_first < 0:
            raise CatmoodError(f"--float-first must be 0 (every layer but the head in INT8) or more, "
                               f"got {self.float_first}")
        if self.qat_epochs < 0:
            raise CatmoodError(f"--qat-epochs must be 0 (off) or more, got {self.qat_epochs}")
        if not 0 < self.qat_lr < 1:
            raise CatmoodError(f"--qat-lr must be between 0 and 1, got {self.qat_lr:g}")


def parse_batch_sizes(text: str | tuple[int, ...], flag: str = "--batch") -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32): the one parser of batch-size lists (bench sizes, engine profiles)."""
    try:
        values = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise CatmoodError(f"{flag} must be comma-separated batch sizes like 1,8,32, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise CatmoodError(f"{flag} must be positive batch sizes, got {text!r}")
    return values


def parse_batch_profile(text: str | tuple[int, ...]) -> tuple[int, int, int]:
    """'1,8,32' -> (min, opt, max) batch sizes of an optimisation profile; '8' -> (8, 8, 8)."""
    values = parse_batch_sizes(text)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not values[0] <= values[1] <= values[2]:
        raise CatmoodError(f"--batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class EngineOptions:
    """How TensorRT engines are built. `batch`: the profile's MIN,OPT,MAX batch (faces per frame at run time)."""

    batch: str = "1,8,32"
    workspace_gb: float = 4.0
    version_compatible: bool = False    # runs on later TensorRT releases of the same major (lean runtime inside)
    hardware_compatible: bool = False   # runs on any Ampere or newer GPU, at some speed cost
    timing_cache: str | None = None     # default: beside the engine

    @property
    def profile(self) -> tuple[int, int, int]:
        return parse_batch_profile(self.batch)
