"""Training and deployment must feed the model the same tensor."""

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from catmood.data.images import load_rgb
from catmood.data.transforms import EvalTransform, train_transform
from catmood.errors import CatmoodError
from catmood.preprocess import crop_offset, preprocess, resize_and_crop, resized_size
from catmood.spec import ModelSpec

from conftest import natural_image

# Real-sized and odd shapes: landscape HD, odd primes, tall and thin, upscaled tiny, exact fit.
SHAPES = [(1080, 1920), (757, 1013), (1999, 333), (97, 131), (480, 640), (224, 224), (300, 257)]


@pytest.mark.parametrize("height, width", SHAPES)
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_deployment_matches_training_eval_transform(tmp_path, small_spec, height, width, ext):
    """The file as training reads it (Pillow, RGB, EvalTransform) vs as the runtime reads it (cv2, BGR)."""
    path = tmp_path / f"img{ext}"
    cv2.imwrite(str(path), natural_image(height, width, seed=height * width))
    training = EvalTransform(small_spec)(load_rgb(path)).numpy()
    deployed = preprocess(cv2.imread(str(path)), small_spec)[0]
    assert training.shape == deployed.shape == (3, 224, 224)
    assert np.abs(training - deployed).max() <= 1e-2


@pytest.mark.parametrize("height, width", SHAPES)
def test_geometry_and_normalisation_follow_torchvision(small_spec, height, width):
    """Independent reference: torchvision Resize(256) + CenterCrop(224) + Normalize on the RGB tensor.

    OpenCV's fixed-point bilinear differs from torch's float one by at most one grey level per pixel; a
    wrong crop offset, resize rounding or channel order would move the mean difference by far more.
    """
    bgr = natural_image(height, width, seed=7)
    rgb = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float()
    ref = F.center_crop(F.resize(rgb, 256, antialias=False), 224).round().clamp(0, 255) / 255
    ref = F.normalize(ref, list(small_spec.mean), list(small_spec.std)).numpy()
    ours = preprocess(bgr, small_spec)[0]
    one_level = 1 / (255 * min(small_spec.std))
    diff = np.abs(ours - ref)
    assert diff.max() <= one_level + 1e-5
    assert diff.mean() < 2e-3


def test_resize_rounding_and_crop_offsets_are_torchvision_s(small_spec):
    assert resized_size(480, 640, small_spec) == (256, 341)      # long side truncated: 256*640/480 = 341.33
    assert resized_size(1999, 333, small_spec) == (1536, 256)
    assert crop_offset(256, 341, small_spec) == (16, 58)         # round(117/2) = round(58.5) = 58 (banker's)
    squash = small_spec.replace(crop="none", resize_size=224)
    assert resized_size(480, 640, squash) == (224, 224) and crop_offset(224, 224, squash) == (0, 0)
    assert resize_and_crop(natural_image(480, 640), squash).shape == (224, 224, 3)


def test_colour_order_and_normalisation_values(small_spec):
    frame = np.zeros((300, 300, 3), np.uint8)
    frame[:, :] = (10, 128, 250)  # BGR
    x = preprocess(frame, small_spec)[0]
    expected_rgb = [(250 / 255 - small_spec.mean[0]) / small_spec.std[0],
                    (128 / 255 - small_spec.mean[1]) / small_spec.std[1],
                    (10 / 255 - small_spec.mean[2]) / small_spec.std[2]]
    np.testing.assert_allclose(x[:, 100, 100], expected_rgb, atol=1e-5)
    bgr_model = small_spec.replace(color_order="BGR", mean=small_spec.mean[::-1], std=small_spec.std[::-1])
    np.testing.assert_allclose(preprocess(frame, bgr_model)[0][:, 5, 5], expected_rgb[::-1], atol=1e-5)
    # Frames already in RGB order give the same tensor when told so.
    np.testing.assert_allclose(preprocess(frame[:, :, ::-1], small_spec, input_order="RGB"), x[None], atol=0)


def test_batches_of_mixed_sizes_and_buffer_reuse(small_spec):
    frames = [natural_image(480, 640, seed=1), natural_image(333, 500, seed=2), natural_image(224, 224, seed=3)]
    batch = preprocess(frames, small_spec)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(batch[i], preprocess(frame, small_spec)[0])
    out = np.empty_like(batch)
    result = preprocess(frames, small_spec, out=out)
    assert result is out
    np.testing.assert_array_equal(out, batch)
    with pytest.raises(CatmoodError, match="output buffer"):
        preprocess(frames, small_spec, out=np.empty((2, 3, 224, 224), np.float32))


def test_uint8_graph_input_is_bgr_nhwc_crop(small_spec):
    frame = natural_image(480, 640, seed=4)
    raw = preprocess(frame, small_spec.replace(input_dtype="uint8", input_layout="NHWC"))
    assert raw.shape == (1, 224, 224, 3) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw[0], resize_and_crop(frame, small_spec))
    rgb_in = preprocess(frame[:, :, ::-1], small_spec.replace(input_dtype="uint8", input_layout="NHWC"),
                        input_order="RGB")
    np.testing.assert_array_equal(rgb_in, raw)


def test_gray_and_bgra_frames_are_accepted(small_spec):
    gray = natural_image(200, 300)[:, :, 1]
    x = preprocess(gray, small_spec)[0]
    np.testing.assert_allclose(x[0] * small_spec.std[0] + small_spec.mean[0],
                               x[2] * small_spec.std[2] + small_spec.mean[2], atol=1e-5)
    bgr = natural_image(200, 300)
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(preprocess(bgra, small_spec), preprocess(bgr, small_spec))


def test_bad_frames_raise_clear_errors(small_spec):
    with pytest.raises(CatmoodError, match="uint8"):
        preprocess(np.zeros((10, 10, 3), np.float32), small_spec)
    with pytest.raises(CatmoodError, match="HxWx3"):
        preprocess(np.zeros((10, 10, 5), np.uint8), small_spec)
    with pytest.raises(CatmoodError, match="no frames"):
        preprocess([], small_spec)


def test_train_transform_ends_in_model_input(small_spec):
    torch.manual_seed(0)
    image = natural_image(333, 500)[:, :, ::-1].copy()
    original = image.copy()
    for augment, interpolation in (("trivialaugment", "bicubic"), ("flip-rotate", "bicubic"), ("none", "bilinear")):
        x = train_transform(small_spec.replace(interpolation=interpolation), augment)(image)
        assert tuple(x.shape) == (3, 224, 224) and x.dtype == torch.float32
        assert -3 < float(x.mean()) < 3
    np.testing.assert_array_equal(image, original)  # augmentation never edits the caller's array
    with pytest.raises(ValueError, match="unknown augmentation"):
        train_transform(small_spec, "mixup-9000")
