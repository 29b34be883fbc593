"""The spec and provenance inside deployable artifacts: ONNX `metadata_props`, TensorRT engine sidecars.

Any tool can read an exported model's preprocessing and labels from the `.onnx` file alone:
`metadata_props["catmood.spec"]` is the ModelSpec as JSON (input size, resize/crop, mean/std, colour
order, input layout/dtype, class names in output order).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CatmoodError, SpecError
from .spec import ModelSpec

SPEC_KEY = "catmood.spec"
PROVENANCE_KEY = "catmood.provenance"
SIDECAR_SUFFIX = ".json"


class ArtifactError(CatmoodError):
    """A deployable artifact is missing, unreadable, or not for this machine."""


def read_onnx_metadata(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, Any]]:
    """(spec, provenance) stored in an ONNX file by catmood's exporter."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: ONNX model not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, onnx its own types
        raise ArtifactError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:120]})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if SPEC_KEY not in props:
        raise ArtifactError(f"{path}: no catmood model spec in its metadata (not exported by catmood?): "
                            "preprocessing and class names are unknown")
    try:
        spec = ModelSpec.from_json(props[SPEC_KEY])
    except SpecError as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    provenance = json.loads(props.get(PROVENANCE_KEY, "{}") or "{}")
    return spec, provenance


def sidecar_path(engine: str | os.PathLike) -> Path:
    return Path(str(engine) + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class EngineTarget:
    """What a TensorRT engine is bound to: it only runs on the same GPU model and TensorRT version."""

    tensorrt: str
    gpu: str
    compute_capability: str

    def describe(self) -> str:
        return f"{self.gpu} (compute {self.compute_capability}) with TensorRT {self.tensorrt}"


def read_sidecar(engine: str | os.PathLike) -> tuple[ModelSpec, dict[str, Any]]:
    engine = Path(engine)
    if not engine.is_file():
        raise ArtifactError(f"{engine}: TensorRT engine not found")
    side = sidecar_path(engine)
    try:
        data = json.loads(side.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{engine}: its sidecar {side.name} is missing; the engine's preprocessing, labels "
                            "and target GPU are unknown (re-export with catmood export --trt)") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{side}: not readable JSON ({exc})") from None
    try:
        spec = ModelSpec.from_dict(data["spec"])
    except (KeyError, TypeError, SpecError) as exc:
        raise ArtifactError(f"{side}: no valid model spec ({exc})") from None
    return spec, data


def check_engine_target(engine: str | os.PathLike, built_for: dict[str, Any], here: EngineTarget) -> None:
    """Refuse an engine built for another GPU or TensorRT version, saying what it needs and what is here."""
    wanted = EngineTarget(str(built_for.get("tensorrt", "?")), str(built_for.get("gpu", "?")),
                          str(built_for.get("compute_capability", "?")))
    problems = []
    if wanted.tensorrt != here.tensorrt:
        problems.append("TensorRT version")
    if wanted.compute_capability != here.compute_capability or wanted.gpu != here.gpu:
        problems.append("GPU")
    if problems:
        raise ArtifactError(f"{engine}: built for {wanted.describe()}, but this machine has {here.describe()} "
                            f"({' and '.join(problems)} differ); rebuild it here with catmood export --trt")
