"""Decode any image people put in a dataset into RGB uint8, or say clearly why it cannot be done.

Pillow does the decoding (it knows EXIF orientation, palettes, CMYK, 16-bit). The result matches what
`cv2.imread(path, cv2.IMREAD_COLOR)` gives a deployed model for the same file (up to BGR order): alpha is
dropped, EXIF rotation applied, 16-bit samples scaled by >> 8.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
})

# Formats people meet (phones, the web) that Pillow reads only with plugins: say what to do, not "corrupt".
NEEDS_CONVERSION = frozenset({".heic", ".heif", ".avif", ".jxl"})

# Pillow refuses pathologically large images as "decompression bombs"; a real photo is far below this.
MAX_PIXELS = 200_000_000


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
        return (array.astype(np.uint16) >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # Pillow opens 16-bit grayscale PNGs as mode "I" (int32) holding 0..65535.
        top = int(array.max(initial=0))
        return (np.clip(array, 0, 65535) >> 8).astype(np.uint8) if top > 255 else array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float64))
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    raise TypeError(f"unsupported sample type {array.dtype}")


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("P", "PA"):
        # Palette images with a transparent index need RGBA first, or Pillow warns and may mangle them.
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "L", "LA", "La", "1"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    # High bit-depth modes ("I;16", "I;16B", "I", "F", ...): Pillow's convert('RGB') clips them, so scale.
    gray = _to_uint8(np.asarray(image))
    if gray.ndim == 3:
        gray = gray[:, :, 0] if gray.shape[2] < 3 else gray[:, :, :3]
    if gray.ndim == 2:
        gray = np.repeat(gray[:, :, None], 3, axis=2)
    return np.ascontiguousarray(gray)


def describe_unreadable(path: Path) -> str:
    """Why a file that Pillow cannot identify is no usable image."""
    suffix = path.suffix.lower()
    if suffix in NEEDS_CONVERSION:
        return f"{suffix} images are not supported here: convert them to JPEG or PNG"
    if is_image_name(path):
        return "not a readable image (corrupt or unknown format)"
    return f"not an image file (extension {path.suffix or 'none'!r})"


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode `path` to an HxWx3 RGB uint8 array; raise ImageError naming the file and the problem."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF/ICC warnings are noise for training data
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageError(path, f"image too large ({image.width}x{image.height} pixels)")
                image.load()  # decode now: truncation and corrupt data surface here
                array = _pil_to_rgb(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, describe_unreadable(path)) from None
    except Image.DecompressionBombError:
        raise ImageError(path, "image too large (Pillow refuses it as a possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = "truncated image (the file ends before the picture does)"
        raise ImageError(path, f"corrupt image: {reason}") from None
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(path, f"decoded to an unusable shape {array.shape}")
    return array
