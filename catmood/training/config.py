"""Training configuration: recipes (presets), overridden by a YAML file, then by command-line flags.

The resolved config is saved beside the results (config.yaml) and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import CatmoodError

SELECT_METRICS = ("macro_f1", "accuracy")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "none")
AUGMENTS = ("auto", "light", "trivialaugment", "flip-rotate", "none")
SPLITS = ("train", "valid", "test")
EVAL_SPLIT = "test"                     # what `catmood eval` measures: the split no training choice saw
EVAL_BATCH_SIZE = 32
# Input sides a backbone can take. Below 16 px a 32x-downsampling backbone has no feature map left; above
# 1024 px (ImageNet backbones are trained at 224-600) activations grow with the side squared: at 5000 px one
# batch needs hundreds of GB, and the kernel kills the process after a long wait instead of a clear refusal.
INPUT_SIZE_RANGE = (16, 1024)


@dataclass
class TrainConfig:
    """Defaults are the `finetune` recipe: probe, then fine-tune from the probe (LP-FT, Kumar et al. 2022),
    never worse on validation than the probe alone. Each default's reason is in the README's Training section."""

    data: str | None = None
    out: str | None = None              # None: runs/<model>, runs/<model>-2, ...
    exist_ok: bool = False              # train into an `out` that holds a run already
    recipe: str = "finetune"
    model: str = "convnext_large"
    pretrained: bool = True
    weights: str | None = None          # local ImageNet weights file (offline)
    cache_dir: str | None = None        # where hub downloads are cached
    input_size: int | None = None       # None: the backbone's own
    epochs: int = 8                     # fine-tuning epochs over images (the probe stage comes before them)
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 5e-5                    # the backbone's last layer; earlier layers and the head are scaled from it
    weight_decay: float = 0.05
    weight_decay_all: bool = False      # also decay norm scales and biases (the seed recipe did)
    scheduler: str = "cosine"
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    grad_clip: float = 1.0              # max gradient norm; 0 turns clipping off
    amp: bool = True                    # mixed precision on CUDA (bf16 where supported, else fp16)
    dropout: float = 0.2
    augment: str = "auto"               # auto: light for greyscale or small images, trivialaugment otherwise
    # LP-FT: the head alone on cached features first, for this many epochs (0: no probe stage). Fine-tuning
    # then starts from a head that fits the features, so early gradients do not distort them.
    probe_epochs: int = 25
    probe_lr: float = 1e-3              # Adam, cosine decay, on the cached features
    # A fine-tuning epoch replaces the probe as the best only when its validation score (`select`) is higher
    # by this much: on 150 validation images, two models that disagree on 10% of them differ in accuracy with
    # a standard error of about 0.025, so smaller leads are mostly noise.
    probe_margin: float = 0.02
    head_lr_scale: float = 10.0         # the head learns this many times faster than the backbone's last layer
    # Layer-wise lr decay: the backbone's first layer learns at lr x this, the layers between it and the last
    # geometrically in between (timm backbones: ordered by their group_matcher; others: no decay); 1: off.
    first_layer_lr_scale: float = 0.1
    # BatchNorm keeps its ImageNet running statistics while fine-tuning: statistics re-estimated from small
    # batches of a small dataset move the features away from the probe's head (issue 11: 75% -> 35%).
    freeze_bn_stats: bool = True
    ema_decay: float = 0.0              # exponential moving average of the weights (0: off); the EMA is evaluated
    tta: bool = False                   # evaluate on each image and its mirror image (training and `catmood eval`)
    freeze_backbone: bool = False
    cache_features: bool = False        # frozen backbone: compute features once, train the head on them
    class_weighted: bool = False
    early_stopping: int = 0             # stop after this many epochs without improvement; 0: never
    select: str = "macro_f1"            # metric that picks the best epoch
    seed: int = 0
    workers: int | None = None          # DataLoader workers; None: min(4, CPU cores)
    device: str = "auto"
    skip_bad: bool = False
    eval_batch_size: int = EVAL_BATCH_SIZE

    def validate(self) -> "TrainConfig":
        def fail(message: str) -> None:
            raise CatmoodError(f"invalid training config: {message}")

        for name in ("epochs", "batch_size", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            fail(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_epochs < 0 or self.early_stopping < 0:
            fail("weight_decay, grad_clip, warmup_epochs and early_stopping cannot be negative")
        if not 0 <= self.dropout < 1:
            fail(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            fail(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name, allowed in (("select", SELECT_METRICS), ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS),
                              ("augment", AUGMENTS)):
            if getattr(self, name) not in allowed:
                fail(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.cache_features and not self.freeze_backbone:
            fail("cache_features needs freeze_backbone (features of a backbone that trains change every step)")
        if not isinstance(self.probe_epochs, int) or self.probe_epochs < 0:
            fail(f"probe_epochs must be a non-negative integer, got {self.probe_epochs!r}")
        if self.probe_epochs and self.freeze_backbone:
            fail("probe_epochs needs a backbone that fine-tunes (a frozen backbone is a probe already: "
                 "set probe_epochs 0)")
        if not (self.probe_lr > 0 and self.head_lr_scale > 0):
            fail("probe_lr and head_lr_scale must be positive")
        if not 0 <= self.probe_margin < 1:
            fail(f"probe_margin must be in [0, 1), got {self.probe_margin}")
        if not 0 < self.first_layer_lr_scale <= 1:
            fail(f"first_layer_lr_scale must be in (0, 1], got {self.first_layer_lr_scale}")
        if self.tta and self.cache_features:
            fail("tta needs images at validation, but cache_features validates on cached features")
        if not 0 <= self.ema_decay < 1:
            fail(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        low, high = INPUT_SIZE_RANGE
        if self.input_size is not None and not (isinstance(self.input_size, int) and low <= self.input_size <= high):
            fail(f"input_size must be {low}-{high} pixels, got {self.input_size!r} (ImageNet backbones are trained "
                 "at 224-600; larger inputs need more memory than a GPU has)")
        if self.workers is not None and self.workers < 0:
            fail(f"workers cannot be negative, got {self.workers}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The plain fine-tuning settings the presets below share: one learning rate for every parameter, weight decay
# on all of them, BatchNorm statistics re-estimated, no probe stage.
_PLAIN_FINETUNE = dict(probe_epochs=0, probe_margin=0.0, head_lr_scale=1.0, first_layer_lr_scale=1.0,
                       freeze_bn_stats=False, weight_decay_all=True, warmup_epochs=0, ema_decay=0.0, tta=False)

RECIPES: dict[str, dict[str, Any]] = {
    # LP-FT, the dataclass defaults: see TrainConfig.
    "finetune": {},
    # The seed's recipe, exactly: the one behind the best published cat-emotion result (ConvNeXt-Large, all
    # layers, 30 epochs). Small backbones learn little in any short budget with it (issue 11).
    "seed-convnext-large": dict(_PLAIN_FINETUNE, model="convnext_large", epochs=30, batch_size=8, optimizer="adamw",
                                lr=1e-5, weight_decay=1e-4, scheduler="cosine", label_smoothing=0.1, grad_clip=1.0,
                                dropout=0.5, augment="trivialaugment"),
    # Backbone frozen, head trained on cached features (the other published recipe; fast on a CPU).
    "linear-probe": dict(_PLAIN_FINETUNE, epochs=25, optimizer="adam", lr=1e-3, weight_decay=0.0, scheduler="none",
                         label_smoothing=0.0, grad_clip=0.0, dropout=0.0, augment="flip-rotate",
                         freeze_backbone=True, cache_features=True, batch_size=32),
    # A small backbone fine-tuned for edge GPUs: larger batches and learning rate suit small models.
    "edge": dict(_PLAIN_FINETUNE, model="tf_efficientnet_lite0", epochs=30, batch_size=32, optimizer="adamw", lr=3e-4,
                 weight_decay=1e-4, scheduler="cosine", label_smoothing=0.1, grad_clip=1.0, dropout=0.2,
                 augment="trivialaugment"),
}

_FIELDS = {f.name: f for f in fields(TrainConfig)}


def config_of_checkpoint(saved: Mapping[str, Any]) -> TrainConfig:
    """The config a checkpoint was trained with. Settings it lacks are newer than it: they take the values
    that reproduce how it trained (plain fine-tuning, as catmood did before LP-FT), not today's defaults."""
    return TrainConfig(**{**TrainConfig().to_dict(), **_PLAIN_FINETUNE, **saved})


def _coerce(name: str, value: Any) -> Any:
    """YAML and flags give strings, ints for floats etc.: bring them to the field's type."""
    if value is None:
        return None
    kind = str(_FIELDS[name].type)
    try:
        if kind.startswith("bool"):
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("true", "yes", "1", "on"):
                    return True
                if lowered in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise CatmoodError(f"invalid training config: {name} must be {kind.split(' ')[0]}, got {value!r}") from None
    return value


def _apply(config: TrainConfig, changes: Mapping[str, Any], origin: str) -> TrainConfig:
    unknown = [k for k in changes if k not in _FIELDS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(_FIELDS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CatmoodError(f"{origin}: unknown setting {key!r}{hint}")
    return dataclasses.replace(config, **{k: _coerce(k, v) for k, v in changes.items()})


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CatmoodError(f"{path}: config file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise CatmoodError(f"{path}: not a readable YAML file ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatmoodError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve_config(recipe: str | None = None, yaml_path: str | Path | None = None,
                   overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Recipe preset, then the YAML file, then explicit overrides (None values mean "not given")."""
    file_settings = load_yaml(yaml_path) if yaml_path else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = given.get("recipe") or recipe or file_settings.get("recipe") or "finetune"
    if name not in RECIPES:
        close = difflib.get_close_matches(str(name), list(RECIPES), n=1)
        raise CatmoodError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}"
                           + (f" (did you mean {close[0]}?)" if close else ""))
    config = TrainConfig(recipe=name)
    config = _apply(config, RECIPES[name], f"recipe {name}")
    config = _apply(config, {k: v for k, v in file_settings.items() if k != "recipe"}, str(yaml_path))
    config = _apply(config, {k: v for k, v in given.items() if k != "recipe"}, "command line")
    return config.validate()


def dump_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
