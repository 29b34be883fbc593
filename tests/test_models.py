"""Model factory and checkpoints: names from both libraries, offline weights, clear errors."""

import time

import pytest
import torch

from catmood.architectures import CatmoodNet, build_model, resolve_architecture
from catmood.checkpoint import (Checkpoint, CheckpointError, load_checkpoint, model_from_checkpoint,
                                save_checkpoint)
from catmood.errors import CatmoodError
from catmood.spec import ModelSpec
from catmood.training import models as models_module
from catmood.training.models import create_model


def test_names_resolve_to_the_right_library():
    assert resolve_architecture("resnet18").qualified == "timm:resnet18"
    assert resolve_architecture("vit_b_16").qualified == "torchvision:vit_b_16"
    assert resolve_architecture("tv:resnet18").qualified == "torchvision:resnet18"
    assert resolve_architecture("convnext_large").library == "timm"
    assert resolve_architecture("vit_base_patch16_224.augreg_in21k").name == "vit_base_patch16_224.augreg_in21k"
    with pytest.raises(CatmoodError, match="unknown model 'mobilenetv3_lage_100'; did you mean mobilenetv3_large_100"):
        resolve_architecture("mobilenetv3_lage_100")
    with pytest.raises(CatmoodError, match="unknown model library"):
        resolve_architecture("keras:resnet50")


@pytest.mark.parametrize("name, size", [("test_resnet", 48), ("test_vit", 160), ("tv:mobilenet_v3_small", 64)])
def test_every_model_is_backbone_plus_dropout_linear_head(name, size):
    created = create_model(name, ["a", "b", "c"], dropout=0.3, pretrained=False, input_size=size)
    model = created.model
    assert isinstance(model, CatmoodNet)
    assert model.head[0].p == 0.3 and model.head[1].out_features == 3
    assert model.head[1].in_features == model.num_features
    assert model.eval()(torch.zeros(2, 3, size, size)).shape == (2, 3)
    assert created.spec.class_names == ("a", "b", "c") and created.spec.input_size == size
    assert created.weights_source == "none (random initialisation)"


def test_spec_takes_the_backbone_s_own_preprocessing():
    timm_spec = create_model("tf_efficientnet_lite0", ["a", "b"], pretrained=False).spec
    assert (timm_spec.input_size, timm_spec.resize_size, timm_spec.interpolation, timm_spec.mean) == \
        (224, 256, "bicubic", (0.5, 0.5, 0.5))
    tv_spec = create_model("tv:resnet18", ["a", "b"], pretrained=False).spec
    assert (tv_spec.input_size, tv_spec.resize_size, tv_spec.interpolation) == (224, 256, "bilinear")
    assert tv_spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert create_model("tv:resnet18", ["a", "b"], pretrained=False, input_size=112).spec.resize_size == 128


def test_offline_without_cached_weights_fails_fast_with_how_to(tmp_path, monkeypatch):
    monkeypatch.setattr(models_module, "host_resolves", lambda url, timeout=3.0: False)
    for name in ("resnet18", "tv:resnet18"):
        started = time.perf_counter()
        with pytest.raises(CatmoodError) as err:
            create_model(name, ["a", "b"], cache_dir=str(tmp_path))
        assert time.perf_counter() - started < 5
        message = str(err.value)
        assert "no internet" in message and "--weights FILE" in message and "--no-pretrained" in message


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_offline(tmp_path, suffix):
    donor = create_model("test_resnet", ["a", "b"], pretrained=False, input_size=48).model
    full = {**{k: v.clone() for k, v in donor.backbone.state_dict().items()},
            "fc.weight": torch.randn(1000, donor.num_features), "fc.bias": torch.zeros(1000)}
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(full, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in full.items()}}, path)
    created = create_model("test_resnet", ["a", "b"], weights=path, input_size=48)
    assert created.weights_source.startswith("file ") and "2 classifier tensors left out" in created.weights_source
    for key, value in donor.backbone.state_dict().items():
        assert torch.equal(created.model.backbone.state_dict()[key], value)


def test_weights_for_another_architecture_are_refused(tmp_path):
    torch.save(create_model("test_vit", ["a", "b"], pretrained=False).model.backbone.state_dict(), tmp_path / "v.pth")
    with pytest.raises(CatmoodError, match="these weights are for another architecture"):
        create_model("test_resnet", ["a", "b"], weights=tmp_path / "v.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CatmoodError, match="junk.pth: not a readable weights file"):
        create_model("test_resnet", ["a", "b"], weights=tmp_path / "junk.pth")
    with pytest.raises(CatmoodError, match="weights file not found"):
        create_model("test_resnet", ["a", "b"], weights=tmp_path / "none.pth")


@pytest.fixture
def saved(tmp_path):
    spec = ModelSpec("timm:test_resnet", ("a", "b"), input_size=48, resize_size=54)
    model = build_model(spec.architecture, 2, 0.1)
    path = save_checkpoint(Checkpoint(None, spec, model.state_dict(), dropout=0.1, epoch=3), tmp_path / "best.pt")
    return path, model


def test_checkpoint_round_trip(saved):
    path, model = saved
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 3 and ckpt.dropout == 0.1 and ckpt.provenance["torch"] == str(torch.__version__)
    x = torch.randn(2, 3, 48, 48)
    assert torch.allclose(model_from_checkpoint(ckpt)(x), model.eval()(x))


def test_history_of_an_older_checkpoint_reads_with_todays_keys(tmp_path):
    spec = ModelSpec("timm:test_resnet", ("a", "b"), input_size=48, resize_size=54)
    old = [dict(epoch=1, train_loss=0.9, val_loss=0.8, val_accuracy=0.5, val_macro_f1=0.4)]
    path = save_checkpoint(Checkpoint(None, spec, build_model(spec.architecture, 2, 0.1).state_dict(), history=old),
                           tmp_path / "old.pt")
    assert load_checkpoint(path).history == [dict(epoch=1, train_loss=0.9, valid_loss=0.8, valid_accuracy=0.5,
                                                  valid_macro_f1=0.4)]


def test_bad_checkpoints_are_one_clear_line(saved, tmp_path):
    path, model = saved
    cases = {}
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "empty file"
    (tmp_path / "text.pt").write_text("definitely not a checkpoint")
    cases["text.pt"] = "not a readable PyTorch checkpoint"
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    cases["bare.pt"] = "not a catmood checkpoint (a bare state dict?"
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "format_version": 99}, tmp_path / "future.pt")
    cases["future.pt"] = "checkpoint format 99 is newer"
    torch.save({**raw, "extra": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    cases["pickled.pt"] = "holds objects other than plain data"
    torch.save({**raw, "spec": {**raw["spec"], "class_names": ["a"]}}, tmp_path / "badspec.pt")
    cases["badspec.pt"] = "at least 2 classes"
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    cases["cut.pt"] = "not a readable PyTorch checkpoint"
    for name, words in cases.items():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and words in str(err.value), str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    wrong = load_checkpoint(path)
    wrong.state_dict = {**wrong.state_dict, "head.1.weight": torch.zeros(5, 5)}
    with pytest.raises(CheckpointError, match="weights do not fit timm:test_resnet"):
        model_from_checkpoint(wrong)
