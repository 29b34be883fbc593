"""Shared helpers: every test makes its own small data; nothing is downloaded."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from catmood.data.synth import draw_face, render_background, sample_appearance, sample_expression, sample_pose


def natural_image(height: int, width: int, seed: int = 0, mood: str = "calm") -> np.ndarray:
    """A BGR picture with real edges and texture (a drawn cat on clutter), any shape."""
    rng = np.random.default_rng(seed)
    image = render_background(rng, width, height)
    draw_face(image, sample_appearance(rng), sample_pose(rng, width, height), sample_expression(rng, mood))
    return image


def write_image(path: Path, image: np.ndarray | None = None, size=(40, 48), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image is None:
        image = natural_image(*size, seed=seed)
    assert cv2.imwrite(str(path), image), path
    return path


def make_folder_dataset(root: Path, counts: dict[str, dict[str, int]], ext: str = ".jpg") -> Path:
    """root/<split>/<class>/<n>.jpg with counts[split][class] images each."""
    seed = 0
    for split, per_class in counts.items():
        for name, n in per_class.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                write_image(root / split / name / f"{name}_{i}{ext}", seed=seed)
    return root


def make_csv_split(folder: Path, header: list[str], rows: list[list[str]], create_files: bool = True) -> Path:
    """A Roboflow-style split folder: images plus _classes.csv (header/rows written verbatim)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(r) for r in rows]
    (folder / "_classes.csv").write_text("\n".join(lines) + "\n")
    if create_files:
        for row in rows:
            write_image(folder / row[0], seed=zlib.crc32(str(folder / row[0]).encode()))
    return folder


@pytest.fixture
def small_spec():
    from catmood.spec import ModelSpec

    return ModelSpec(architecture="resnet18", class_names=("alarmed", "angry", "calm", "pleased"))


def make_shapes_dataset(root: Path, per_split=(("train", 24), ("valid", 8), ("test", 8)), size: int = 48,
                        seed: int = 0) -> Path:
    """Three easy classes (circle, square, stripes) that a tiny random-init model learns in seconds."""
    rng = np.random.default_rng(seed)
    for split, n in per_split:
        for k, name in enumerate(("circle", "square", "stripes")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.full((size, size, 3), rng.integers(0, 120, 3), np.uint8)
                colour = tuple(int(v) for v in rng.integers(150, 256, 3))
                x, y = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
                r = int(rng.integers(size // 7, size // 4))
                if k == 0:
                    cv2.circle(img, (x, y), r, colour, -1)
                elif k == 1:
                    cv2.rectangle(img, (x - r, y - r), (x + r, y + r), colour, -1)
                else:
                    for j in range(0, size, 8):
                        cv2.line(img, (j, 0), (j, size - 1), colour, 2)
                img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(str(root / split / name / f"{i}.png"), img)
    return root


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def models(shapes_data, tmp_path_factory):
    """A tiny trained model exported with float and uint8 inputs."""
    from catmood.export.pipeline import export_checkpoint
    from catmood.training.config import resolve_config
    from catmood.training.loop import train

    out = tmp_path_factory.mktemp("rt")
    config = resolve_config("finetune", None, dict(data=str(shapes_data), out=str(out / "run"), model="test_resnet",
                                                   pretrained=False, epochs=3, batch_size=8, lr=3e-3, workers=0,
                                                   input_size=48, augment="none"))
    train(config, progress=False, echo=lambda *a: None)
    export_checkpoint(out / "run/best.pt", out / "export", onnx=True, fp16=False, latency=False, echo=lambda *a: None)
    export_checkpoint(out / "run/best.pt", out / "export", onnx=True, fp16=False, input_dtype="uint8",
                      latency=False, echo=lambda *a: None)
    return out / "run/best.pt", out / "export/model.onnx", out / "export/model.uint8.onnx"


def write_video(path: Path, frames: int, size=(160, 120), fps: float = 12.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(natural_image(size[1], size[0], seed=i % 7))
    writer.release()
    return path


def frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n
