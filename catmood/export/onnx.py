"""Checkpoint -> ONNX (opset 18, dynamic batch, spec in metadata) and ONNX -> FP16 ONNX.

Graph I/O: input `images`, output `logits` (and `probs`, a fused softmax, on request). With
`input_dtype="uint8"` the graph takes raw uint8 BGR frames, N x S x S x 3 at the spec's input size, and
does the channel swap, scaling and normalisation itself, so a runtime only resizes and crops.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import Checkpoint, file_sha256, load_checkpoint, model_from_checkpoint, provenance
from ..errors import CatmoodError
from ..fileio import atomic_path
from ..metadata import INPUT_NAME, LOGITS_NAME, PROBS_NAME, PROVENANCE_KEY, SPEC_KEY
from ..spec import ModelSpec
from .options import DEFAULT_OPSET

DYNAMO_MIN_OPSET = 18  # the lowest opset torch's dynamo exporter writes without a (lossy) version conversion
# Protobuf files stop at 2 GB: bigger models keep their weights in a .data file beside the .onnx.
SINGLE_FILE_LIMIT = 1_800_000_000
# Ops that overflow or lose too much in FP16 (ConvNeXt and ViT LayerNorm, softmax, reductions): kept FP32.
FP16_KEEP_FP32 = ["LayerNormalization", "GroupNormalization", "InstanceNormalization", "Softmax", "LogSoftmax",
                  "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Pow", "Sqrt"]
# When an FP16 build still fails the gate: pooling (long sums), the classifier head (Gemm; not MatMul, which is
# most of a ViT) and the transcendental activations, where FP16 rounding moves logits most.
FP16_KEEP_FP32_SAFE_EXTRA = ["GlobalAveragePool", "AveragePool", "Gemm", "Exp", "Erf", "Sigmoid", "Div"]
FP16_KEEP_FP32_SAFE = FP16_KEEP_FP32 + FP16_KEEP_FP32_SAFE_EXTRA


class RawFrameInput(nn.Module):
    """uint8 BGR N x H x W x 3 -> the model's normalised float N x 3 x H x W, inside the graph."""

    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.model = model
        self.swap = spec.color_order == "RGB"  # frames arrive BGR
        scale = torch.tensor([1.0 / (255.0 * s) for s in spec.std], dtype=torch.float32).view(1, 3, 1, 1)
        shift = torch.tensor([m / s for m, s in zip(spec.mean, spec.std)], dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).to(torch.float32)
        if self.swap:
            x = torch.flip(x, dims=[1])
        return self.model(x * self.scale - self.shift)


class WithProbabilities(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        logits = self.model(x)
        return logits, torch.softmax(logits, dim=1)


def graph_spec(spec: ModelSpec, input_dtype: str) -> ModelSpec:
    if input_dtype == "uint8":
        return spec.replace(input_dtype="uint8", input_layout="NHWC")
    if input_dtype == "float32":
        return spec.replace(input_dtype="float32", input_layout="NCHW")
    raise CatmoodError(f"--input must be float32 or uint8, got {input_dtype!r}")


def _torch_export(module: nn.Module, example: torch.Tensor, path: Path, outputs: list[str], opset: int,
                  external: bool) -> str:
    """Export with the dynamo exporter, else the TorchScript one. Returns which one worked.

    The dynamo exporter writes opset 18 and can only try to down-convert (that fails for ReduceMean, and
    the file silently stays at 18), so older opsets (TensorRT 8.6 reads <= 17) go to TorchScript first."""
    exporters = ["torchscript", "dynamo"] if opset < DYNAMO_MIN_OPSET else ["dynamo", "torchscript"]
    failures = []
    for exporter in exporters:
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if exporter == "dynamo":
                    torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                                      opset_version=opset, dynamo=True, external_data=external, verbose=False,
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
                else:
                    torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                                      opset_version=opset, dynamo=False,
                                      dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]})
            return exporter
        except Exception as error:  # some models trace only with one of the two exporters
            failures.append(f"{exporter} exporter: {str(error).splitlines()[0][:200]}")
    raise CatmoodError(f"ONNX export (opset {opset}) failed: {'; '.join(failures)}")


def onnx_opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def set_metadata(model, spec: ModelSpec, info: dict) -> None:
    for key, value in ((SPEC_KEY, spec.to_json()), (PROVENANCE_KEY, json.dumps(info))):
        for prop in model.metadata_props:
            if prop.key == key:
                prop.value = value
                break
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


def save_onnx(model, path: Path, external: bool) -> None:
    import onnx

    if external:
        data_name = path.name + ".data"
        (path.parent / data_name).unlink(missing_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name)
        onnx.checker.check_model(str(path))
        return
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


def export_onnx(checkpoint: str | os.PathLike | Checkpoint, out: str | os.PathLike, *, input_dtype: str = "float32",
                probs: bool = False, opset: int = DEFAULT_OPSET, model: nn.Module | None = None) -> Path:
    """Write `out` (.onnx): the checkpoint's model with its spec and provenance in metadata_props.
    `model`: the checkpoint's model already built on the CPU in FP32 (export's PyTorch reference), if any."""
    import onnx

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    spec = graph_spec(ckpt.spec, input_dtype)
    module: nn.Module = (model if model is not None else model_from_checkpoint(ckpt)).cpu().eval()
    size = spec.input_size
    if input_dtype == "uint8":
        module = RawFrameInput(module, spec)
        example = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    else:
        example = torch.randn(2, 3, size, size)
    outputs = [LOGITS_NAME]
    if probs:
        module = WithProbabilities(module)
        outputs.append(PROBS_NAME)
    module.eval()
    external = sum(p.numel() * p.element_size() for p in module.parameters()) > SINGLE_FILE_LIMIT
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        raw = Path(tmp) / "model.onnx"
        exporter = _torch_export(module, example, raw, outputs, opset, external)
        model = onnx.load(str(raw), load_external_data=True)
    if onnx_opset(model) != opset:
        raise CatmoodError(f"ONNX export: asked for opset {opset}, the {exporter} exporter wrote {onnx_opset(model)}")
    info = {**provenance(), "onnx": onnx.__version__, "exporter": exporter, "opset": opset, "precision": "fp32",
            "checkpoint": str(ckpt.path) if ckpt.path else None,
            "checkpoint_sha256": ckpt.sha256,
            "weights_source": ckpt.provenance.get("weights_source"), "epoch": ckpt.epoch,
            "seed": ckpt.config.get("seed"),  # the dataset split: bench scores the same validation images
            "outputs": outputs}
    set_metadata(model, spec, info)
    save_onnx(model, out, external)
    return out


def export_fp16(src: str | os.PathLike, out: str | os.PathLike, keep_fp32: list[str] | None = None) -> Path:
    """A float16 copy of an ONNX model with float32 inputs/outputs; overflow-prone ops stay FP32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src, out = Path(src), Path(out)
    model = onnx.load(str(src), load_external_data=True)
    keep = FP16_KEEP_FP32 if keep_fp32 is None else keep_fp32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True, op_block_list=keep)
    from onnxruntime.transformers.onnx_model import OnnxModel

    OnnxModel(half).topological_sort()  # the converter appends its input casts after their consumers
    spec_json = next(p.value for p in half.metadata_props if p.key == SPEC_KEY)
    info = json.loads(next((p.value for p in half.metadata_props if p.key == PROVENANCE_KEY), "{}"))
    info.update(precision="fp16", fp32_ops=keep, source_onnx_sha256=file_sha256(src))
    set_metadata(half, ModelSpec.from_json(spec_json), info)
    save_onnx(half, out, half.ByteSize() > SINGLE_FILE_LIMIT)
    return out
