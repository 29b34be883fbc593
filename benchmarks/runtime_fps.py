"""End-to-end fps of the runtime pipeline vs inference alone, on a 640x480 video, ONNX Runtime CPU.

Reproduce:  .venv/bin/python benchmarks/runtime_fps.py [--models resnet18 tf_efficientnet_lite0] [--frames 300]
Targets (issue 5): pipeline fps >= 85% of inference-only fps, and >= 30 fps for ResNet18-sized models on
2 CPU cores. Weights do not change speed, so models are random-initialised (no download); the exported
graphs are the real ones `catmood export` writes.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from catmood.architectures import build_model
from catmood.backends import select_classifier
from catmood.checkpoint import Checkpoint, save_checkpoint
from catmood.tables import format_table
from catmood.data.synth import draw_face, render_background, sample_appearance, sample_pose, typical_expression
from catmood.export.onnx import export_onnx
from catmood.preprocess import preprocess
from catmood.runtime.options import RuntimeOptions
from catmood.runtime.pipeline import run_pipeline
from catmood.spec import ModelSpec
from catmood.training.models import create_model

CLASSES = ("alarmed", "angry", "calm", "pleased")


def make_video(path: Path, frames: int) -> Path:
    rng = np.random.default_rng(0)
    appearance, background = sample_appearance(rng), render_background(rng, 640, 480)
    pose = sample_pose(rng, 640, 480)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    moods = list(CLASSES)
    for i in range(frames):
        image = background.copy()
        draw_face(image, appearance, pose, typical_expression(moods[(i // 30) % 4]))
        writer.write(image)
    writer.release()
    return path


def make_onnx(name: str, folder: Path, input_dtype: str) -> Path:
    created = create_model(name, CLASSES, pretrained=False)
    ckpt = save_checkpoint(Checkpoint(None, created.spec, created.model.state_dict()), folder / f"{name}.pt")
    return export_onnx(ckpt, folder / f"{name}.{input_dtype}.onnx", input_dtype=input_dtype)


def inference_fps(model: Path, frame: np.ndarray, iterations: int) -> float:
    classifier = select_classifier(model, device="cpu")
    batch = preprocess(frame, classifier.spec)
    for _ in range(10):
        classifier.predict(batch)
    start = time.perf_counter()
    for _ in range(iterations):
        classifier.predict(batch)
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "tf_efficientnet_lite0"])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(tmp / "clip.mp4", args.frames)
        frame = cv2.VideoCapture(str(video)).read()[1]
        for name in args.models:
            for input_dtype in ("float32", "uint8"):
                model = make_onnx(name, tmp, input_dtype)
                infer = inference_fps(model, frame, args.frames)
                for label, options in (("headless", RuntimeOptions()),
                                       ("+video out", RuntimeOptions(out=str(tmp / "out.mp4")))):
                    summary = run_pipeline(model, str(video), options, device="cpu", echo=lambda *a: None)
                    ratio = summary.fps / infer
                    rows.append([name, input_dtype, label, f"{infer:.1f}", f"{summary.fps:.1f}", f"{ratio:.0%}",
                                 f"{summary.stages['preprocess']['p50']:.2f}",
                                 f"{summary.stages['inference']['p50']:.2f}",
                                 f"{summary.stages['postprocess']['p50']:.2f}"])
                    records.append(dict(model=name, input=input_dtype, mode=label, inference_fps=infer,
                                        pipeline_fps=summary.fps, ratio=ratio, stages_ms=summary.stages))
    table = format_table(["model", "input", "pipeline", "inference fps", "pipeline fps", "ratio", "pre p50 ms",
                          "infer p50 ms", "post p50 ms"], rows)
    env = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(env)
    print(table)
    (args.out / "runtime_fps.json").write_text(json.dumps(dict(environment=env, frames=args.frames, results=records),
                                                           indent=2))
    (args.out / "runtime_fps.md").write_text(f"{env}\n\n```\n{table}\n```\n")


if __name__ == "__main__":
    main()
