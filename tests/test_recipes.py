"""The default recipe (LP-FT) on tiny synthetic data: its probe stage trains the head, and what it returns is
never worse on validation than that probe stage; the optimiser groups and augmentation choices it relies on."""

import numpy as np
import pytest
import torch

from catmood.checkpoint import load_checkpoint
from catmood.data.layouts import Sample
from catmood.data.transforms import choose_augment
from catmood.spec import ModelSpec
from catmood.training.config import resolve_config
from catmood.training.loop import train
from catmood.training.models import create_model
from catmood.training.optim import make_optimizer, param_groups

QUIET = dict(progress=False, echo=lambda *a: None)


@pytest.fixture(scope="module")
def tints_data(tmp_path_factory):
    """Three classes told apart by their tint under random shapes and noise: pooled features of even a
    random-init network separate them linearly, so a trained probe scores far above chance and an untrained
    head does not."""
    import cv2

    root = tmp_path_factory.mktemp("tints")
    rng = np.random.default_rng(1)
    tints = {"red": (40, 40, 150), "green": (40, 150, 40), "blue": (150, 40, 40)}  # BGR
    for split, n in (("train", 24), ("valid", 10), ("test", 10)):
        for name, tint in tints.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                image = np.clip(rng.normal(tint, 45, (40, 40, 3)), 0, 255).astype(np.uint8)
                centre = tuple(int(v) for v in rng.integers(8, 32, 2))
                cv2.circle(image, centre, int(rng.integers(4, 12)), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
                cv2.imwrite(str(root / split / name / f"{i}.png"), image)
    return root


def default_recipe(data, out, **changes):
    """The default recipe as it ships, on a random-init timm test model small enough for seconds. Its 96
    random features barely differ between images, so the probe needs a far larger step than ImageNet
    features do: probe_lr is the one setting changed."""
    settings = dict(data=str(data), out=str(out), model="test_resnet", pretrained=False, input_size=40, workers=0,
                    epochs=3, probe_lr=0.1)
    settings.update(changes)
    return resolve_config(None, None, settings)


def test_the_default_recipe_probes_first_and_keeps_the_better_model(tints_data, tmp_path):
    config = default_recipe(tints_data, tmp_path / "run")
    result = train(config, **QUIET)
    probe, *tuned = result.history
    assert probe["stage"] == "probe" and probe["epoch"] == 0 and len(tuned) == config.epochs
    # The probe stage trained the head: well above chance (1/3) on validation before any backbone weight moved.
    assert probe["valid_accuracy"] >= 0.6
    # Fine-tuning replaces the probe only when better on validation by probe_margin.
    winners = [h for h in tuned if h["valid_macro_f1"] > probe["valid_macro_f1"] + config.probe_margin]
    best = max(winners, key=lambda h: h["valid_macro_f1"]) if winners else probe
    assert result.best_epoch == best["epoch"]
    final = result.final["valid"]
    assert final["macro_f1"] == pytest.approx(best["valid_macro_f1"])  # best.pt is what validation chose
    assert final["macro_f1"] >= probe["valid_macro_f1"]


def test_a_fine_tune_that_only_hurts_falls_back_to_the_probe(tints_data, tmp_path):
    # An absurd learning rate wrecks every fine-tuning epoch; the run must still return its probe.
    result = train(default_recipe(tints_data, tmp_path / "run", lr=3.0, epochs=2), **QUIET)
    probe, *tuned = result.history
    assert probe["valid_accuracy"] >= 0.6
    assert all(h["valid_macro_f1"] < probe["valid_macro_f1"] for h in tuned)
    assert result.best_epoch == 0
    assert result.final["valid"]["accuracy"] == pytest.approx(probe["valid_accuracy"])
    best, last = load_checkpoint(tmp_path / "run/best.pt"), load_checkpoint(tmp_path / "run/last.pt")
    assert best.epoch == 0 and last.epoch == 2
    assert not torch.equal(best.state_dict["head.1.weight"], last.state_dict["head.1.weight"])


def test_param_groups_discriminative_layer_decay_and_no_decay_on_norms_and_biases():
    model = create_model("test_resnet", ("a", "b"), pretrained=False).model
    config = resolve_config(None, None, dict(lr=1e-4, head_lr_scale=10.0, first_layer_lr_scale=0.1,
                                             weight_decay=0.05))
    groups = param_groups(model, config)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert len(lr_of) == len(params)  # every parameter exactly once
    assert lr_of[id(params["head.1.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(params["backbone.conv1.0.weight"])] == pytest.approx(1e-5)   # the stem: lr x 0.1
    last_block = [n for n in params if n.startswith("backbone.layer4")][-1]
    assert lr_of[id(params[last_block])] == pytest.approx(1e-4)
    middle = [lr_of[id(p)] for n, p in params.items() if n.startswith("backbone.layer2")]
    assert all(1e-5 < lr < 1e-4 for lr in middle)
    for name, p in params.items():
        assert decay_of[id(p)] == (0.05 if p.ndim > 1 else 0.0), name


def test_the_seed_preset_optimises_as_the_seed_did():
    """One AdamW group over every parameter at lr 1e-5, weight decay 1e-4 (norms and biases included)."""
    model = create_model("test_resnet", ("a", "b"), pretrained=False).model
    config = resolve_config("seed-convnext-large", None, {})
    optimizer = make_optimizer(config, param_groups(model, config))
    assert isinstance(optimizer, torch.optim.AdamW) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (1e-5, 1e-4)
    assert len(group["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("kind, size, expected", [
    ("grey", 28, "light"), ("grey", 300, "light"), ("colour", 40, "light"), ("colour", 300, "trivialaugment")])
def test_auto_augmentation_is_light_for_greyscale_or_small_images(tmp_path, kind, size, expected):
    import cv2

    rng = np.random.default_rng(0)
    samples = []
    for i in range(6):
        image = rng.integers(0, 256, (size, size, 3), np.uint8)
        if kind == "grey":
            image = image[..., :1].repeat(3, axis=2)
        cv2.imwrite(str(tmp_path / f"{i}.png"), image)
        samples.append(Sample(tmp_path / f"{i}.png", 0))
    spec = ModelSpec(architecture="timm:test_resnet", class_names=("a", "b"), input_size=224, resize_size=256)
    assert choose_augment(samples, spec)[0] == expected


def test_checkpoints_resume_with_the_settings_they_trained_with():
    from catmood.training.config import config_of_checkpoint

    today = resolve_config(None, None, dict(data="d", lr=2e-5))
    assert config_of_checkpoint(today.to_dict()) == today
    # A run saved before LP-FT existed lacks its settings: it trained plainly, and resumes so.
    before = {k: v for k, v in today.to_dict().items()
              if k not in ("probe_epochs", "probe_lr", "probe_margin", "head_lr_scale", "first_layer_lr_scale",
                           "freeze_bn_stats", "weight_decay_all", "ema_decay", "tta")}
    old = config_of_checkpoint(before)
    assert (old.probe_epochs, old.head_lr_scale, old.first_layer_lr_scale, old.freeze_bn_stats,
            old.weight_decay_all, old.ema_decay, old.tta) == (0, 1.0, 1.0, False, True, 0.0, False)
    assert old.lr == 2e-5 and old.warmup_epochs == today.warmup_epochs  # what it saved is kept
