"""Every image people put in datasets decodes to RGB uint8, agreeing with what OpenCV gives at run time."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from catmood.data.images import load_rgb
from catmood.errors import ImageError

from conftest import natural_image


@pytest.fixture
def rgb():
    return natural_image(60, 80, seed=3)[:, :, ::-1].copy()


def test_plain_rgb_png_is_exact(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "a.png"), rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path, rgb):
    gray = rgb[:, :, 1]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (60, 80, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_drops_alpha_like_opencv(tmp_path, rgb):
    rgba = np.dstack([rgb, np.linspace(0, 255, 80, dtype=np.uint8)[None].repeat(60, 0)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(out, cv2.imread(str(tmp_path / "a.png"))[:, :, ::-1])


def test_palette_with_transparency(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png")
    expected = np.asarray(Image.fromarray(rgb).quantize(16).convert("RGB"))
    out = load_rgb(tmp_path / "p.png")
    assert out.shape == (60, 80, 3)
    np.testing.assert_array_equal(out, expected)


def test_sixteen_bit_gray_and_colour_match_opencv(tmp_path, rgb):
    gray16 = (rgb[:, :, 0].astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    out = load_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[:, :, 0], rgb[:, :, 0])
    np.testing.assert_array_equal(out, cv2.imread(str(tmp_path / "g16.png"))[:, :, ::-1])

    colour16 = rgb[:, :, ::-1].astype(np.uint16) * 257  # BGR for cv2
    cv2.imwrite(str(tmp_path / "c16.png"), colour16)
    out = load_rgb(tmp_path / "c16.png")
    assert np.abs(out.astype(int) - rgb).max() <= 1


def test_cmyk_jpeg_keeps_its_colours(tmp_path, rgb):
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=97)
    out = load_rgb(tmp_path / "c.jpg")
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 6


def test_exif_rotation_is_applied(tmp_path):
    stored = np.zeros((40, 100, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # red band on the left of the stored pixels
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_rgb(tmp_path / "r.jpg")
    assert out.shape == (100, 40, 3)  # displayed upright: tall
    assert out[:15, :, 0].mean() > 200 and out[-50:, :, 0].mean() < 40  # the band is now on top
    np.testing.assert_array_equal(out, cv2.imread(str(tmp_path / "r.jpg"))[:, :, ::-1])


@pytest.mark.parametrize("name, content, words", [
    ("empty.jpg", b"", "empty file (0 bytes)"),
    ("notes.jpg", b"these are my notes, not a picture", "not a readable image"),
    ("notes.txt", b"hello", "not an image file"),
])
def test_bad_files_name_file_and_reason(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_rgb(path)
    assert str(path) in str(err.value) and words in str(err.value)
    assert err.value.path == path


def test_truncated_jpeg_and_png_are_caught(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(natural_image(200, 200)).save(buffer, format="JPEG")
    (tmp_path / "t.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_rgb(tmp_path / "t.jpg")
    buffer = io.BytesIO()
    Image.fromarray(natural_image(200, 200)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # corrupt the compressed stream
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt image"):
        load_rgb(tmp_path / "c.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_rgb(tmp_path / "nope.png")
