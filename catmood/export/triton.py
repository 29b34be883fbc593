"""A Triton Inference Server model repository for the same artifact, for users who outgrow one box."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..fileio import atomic_path, atomic_write_text
from ..metadata import INPUT_NAME
from ..spec import ModelSpec


def triton_config(spec: ModelSpec, *, name: str, platform: str, outputs: list[str], max_batch: int) -> str:
    size = spec.input_size
    if spec.input_dtype == "uint8":
        data_type, dims = "TYPE_UINT8", [size, size, 3]
    else:
        data_type, dims = "TYPE_FP32", [3, size, size]
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch}",
             "input [", "  {", f'    name: "{INPUT_NAME}"', f"    data_type: {data_type}",
             f"    dims: [ {', '.join(map(str, dims))} ]", "  }", "]", "output ["]
    for i, output in enumerate(outputs):
        lines += ["  {", f'    name: "{output}"', "    data_type: TYPE_FP32", f"    dims: [ {spec.num_classes} ]",
                  '    label_filename: "labels.txt"', "  }" + ("," if i < len(outputs) - 1 else "")]
    preferred = sorted({b for b in (4, 8, 16, max_batch) if b <= max_batch})
    lines += ["]", "dynamic_batching {", f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
              "  max_queue_delay_microseconds: 500", "}"]
    return "\n".join(lines) + "\n"


def write_triton_repository(repo: str | os.PathLike, model_file: str | os.PathLike, spec: ModelSpec, *,
                            outputs: list[str], name: str = "catmood", max_batch: int = 32) -> Path:
    """repo/<name>/{config.pbtxt, labels.txt, 1/model.onnx|model.plan}; returns the model folder."""
    model_file = Path(model_file)
    onnx_model = model_file.suffix == ".onnx"
    folder = Path(repo) / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    target = version / ("model.onnx" if onnx_model else "model.plan")
    with atomic_path(target) as tmp:
        shutil.copyfile(model_file, tmp)
    atomic_write_text(folder / "labels.txt", "\n".join(spec.class_names) + "\n")
    atomic_write_text(folder / "config.pbtxt", triton_config(
        spec, name=name, platform="onnxruntime_onnx" if onnx_model else "tensorrt_plan", outputs=outputs,
        max_batch=max_batch))
    return folder
