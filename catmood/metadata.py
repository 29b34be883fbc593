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

# The tensors of every exported graph: a normalised (or raw uint8) image batch in, logits (and, on request,
# softmax probabilities) out.
INPUT_NAME, LOGITS_NAME, PROBS_NAME = "images", "logits", "probs"
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
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: the file is empty (0 bytes): not an ONNX model")
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
    check_graph_against_spec(path, spec, *_graph_io(model))
    provenance = json.loads(props.get(PROVENANCE_KEY, "{}") or "{}")
    return spec, provenance


def graph_input(graph):
    """The image input of an ONNX graph: its first input that is not a weight (older exporters list
    initializers among the inputs)."""
    weights = {t.name for t in graph.initializer}
    return next(i for i in graph.input if i.name not in weights)


def _graph_io(model) -> tuple[str, tuple[int, ...], int]:
    """(input dtype, input shape without the batch, number of logits) of an ONNX graph; 0 for unknown dims."""
    import onnx

    inp = graph_input(model.graph)
    out = next((o for o in model.graph.output if o.name == LOGITS_NAME), model.graph.output[0])
    dims = lambda v: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)  # noqa: E731
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name
    return dtype, dims(inp)[1:], (dims(out) or (0,))[-1]


def check_graph_against_spec(path, spec: ModelSpec, dtype: str, row_shape: tuple[int, ...], outputs: int) -> None:
    """Refuse an artifact whose graph does not take or give what its spec says (0: a dimension not fixed)."""
    size = spec.input_size
    expected = (size, size, 3) if spec.input_dtype == "uint8" else (3, size, size)
    if dtype != spec.input_dtype:
        raise ArtifactError(f"{path}: its spec says {spec.input_dtype} input, the graph takes {dtype}")
    if len(row_shape) != 3 or any(d and d != e for d, e in zip(row_shape, expected)):
        raise ArtifactError(f"{path}: its spec says input {'x'.join(map(str, expected))} per image "
                            f"({spec.input_layout}), the graph takes {'x'.join(str(d or '?') for d in row_shape)}")
    if outputs and outputs != spec.num_classes:
        raise ArtifactError(f"{path}: its spec names {spec.num_classes} classes ({', '.join(spec.class_names)}), "
                            f"the graph gives {outputs} logits")


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


def check_engine_target(engine: str | os.PathLike, built_for: dict[str, Any], here: EngineTarget) -> list[str]:
    """Refuse an engine that cannot run here, saying what it needs and what is here; return warnings.

    An engine is bound to its TensorRT release (major.minor.patch; with `version_compatible`, any later release
    of the same major) and its GPU's compute capability (with `hardware_compatible`, any Ampere or newer GPU).
    Another GPU name with the same compute capability (an other SKU of one chip) runs it: a warning only.
    """
    from .backends.tensorrt_api import parse_version

    wanted = EngineTarget(str(built_for.get("tensorrt", "?")), str(built_for.get("gpu", "?")),
                          str(built_for.get("compute_capability", "?")))
    built, have = parse_version(wanted.tensorrt), parse_version(here.tensorrt)
    if built_for.get("version_compatible"):
        version_ok = have[0] == built[0] and have >= built
    else:
        version_ok = have == built
    if built_for.get("hardware_compatible"):
        gpu_ok = _capability(here.compute_capability) >= (8, 0)
    else:
        gpu_ok = wanted.compute_capability == here.compute_capability
    problems = [what for what, ok in (("TensorRT version", version_ok), ("GPU compute capability", gpu_ok)) if not ok]
    if problems:
        raise ArtifactError(f"{engine}: built for {wanted.describe()}, but this machine has {here.describe()} "
                            f"(different {' and '.join(problems)}); rebuild it here with catmood export --trt")
    if wanted.gpu != here.gpu:
        return [f"{Path(engine).name} was built on {wanted.gpu}, this is {here.gpu} (same compute capability "
                f"{here.compute_capability}): it runs, but rebuild it here for the best tactics"]
    return []


def _capability(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split("."))
    except ValueError:
        return (0,)
