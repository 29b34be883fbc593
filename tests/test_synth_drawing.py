"""The drawing of synthetic cats, pixel for pixel: a refactor of the drawing code must not move one pixel.

REGRESSION_SHA256 holds the digests of faces drawn by the code as it stood before `draw_face` was split into
named helpers (computed once by running that code with this environment's OpenCV and numpy). A change to the
drawing that is meant to change pictures updates them on purpose; an OpenCV upgrade may legitimately do so too.
"""

import functools
import hashlib

import numpy as np
import pytest

from catmood.data.synth import (DEFAULT_MOODS, Appearance, Pose, draw_face, render_background, render_cat,
                                sample_appearance, sample_expression, sample_pose, typical_expression)

SIZES = ((64, 64), (96, 128), (160, 120))  # (height, width): square, landscape, portrait
PATTERNS = ("solid", "tabby", "spots", "bicolour")
FURS = ((40, 110, 215), (35, 35, 40))  # light fur (dark whiskers) and dark fur (light whiskers)


def sampled_face(mood: str, seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng([seed, DEFAULT_MOODS.index(mood)])
    image = render_background(rng, width, height)
    draw_face(image, sample_appearance(rng), sample_pose(rng, width, height), sample_expression(rng, mood))
    return image


def typical_face(mood: str, pattern: str, fur: tuple[int, int, int]) -> np.ndarray:
    """Every pattern and every mood's prototype: closed eyes, heavy lids, brows, open mouth and fangs."""
    image = np.full((90, 110, 3), 128, np.uint8)
    appearance = Appearance(fur=fur, fur_dark=tuple(v // 2 for v in fur), iris=(60, 180, 120), pattern=pattern,
                            spots=((-0.3, -0.2, 0.12), (0.25, 0.1, 0.09)), ear_size=1.05)
    draw_face(image, appearance, Pose(cx=55.3, cy=47.8, radius=30.5, angle=-12.0, stretch=0.95),
              typical_expression(mood))
    return image


@functools.cache
def cases() -> dict[str, np.ndarray]:
    out = {}
    for mood in DEFAULT_MOODS:
        for seed, (height, width) in enumerate(SIZES):
            out[f"sampled-{mood}-{seed}-{height}x{width}"] = sampled_face(mood, seed, height, width)
    for i, pattern in enumerate(PATTERNS):
        for fur in FURS:
            mood = DEFAULT_MOODS[i]
            out[f"typical-{mood}-{pattern}-{sum(fur)}"] = typical_face(mood, pattern, fur)
    for seed in range(6):
        mood = DEFAULT_MOODS[seed % len(DEFAULT_MOODS)]
        out[f"render_cat-{mood}-{seed}"] = render_cat(np.random.default_rng(seed), mood, 72)
    return out


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(repr((image.shape, image.dtype.str)).encode() + image.tobytes()).hexdigest()


REGRESSION_SHA256 = {
    "sampled-alarmed-0-64x64": "39ec7f6e446c8130feec9c3fa9f921020c170df4fa8fc5670fee78ae3a8209aa",
    "sampled-alarmed-1-96x128": "3af6319fafe80abd2245cff862c594285ba7bcfbf09d520b23d46b9126332098",
    "sampled-alarmed-2-160x120": "bcd46a5ebe6dfc9f43ca346767599d150651a807f7bd8196f3275e47d979f4c1",
    "sampled-angry-0-64x64": "96fe4fd86f7a69fa845856c58f325077bc0e6a5885ea79bedd134109f990c42b",
    "sampled-angry-1-96x128": "31ac1c3787143759d3a2797af3635cba90d92c49d606fad81ddb22b717f44671",
    "sampled-angry-2-160x120": "a9911a982e5efe2ea337e3b7c17a0ac227171798f0a385fe455c8c2dc16186d8",
    "sampled-calm-0-64x64": "5ded01f40875c7aaf49f4e6e7f26401fcd0846f9ad3276eb00ed8005165e75da",
    "sampled-calm-1-96x128": "3e699441617dd104bb6289e68bd728a14ea8f6dde9989d3433476f12c1e4f280",
    "sampled-calm-2-160x120": "233cbeaec37b69194e180ee1134c3890852cbf7d7920b8ad7a92aa292aa20ac3",
    "sampled-pleased-0-64x64": "a86ae43ed2f32dcce22b29b038b439eb8da2f703cedd9fe290d9cc0fed2995c1",
    "sampled-pleased-1-96x128": "5fe576f07ff62acb94f1adb5aaea13024f31e59938341c8451734ef73e3bba65",
    "sampled-pleased-2-160x120": "ce5aa4d6ec2f813f7572a9e0da8e34949e9e7360767cb95c2bcb778fc3618753",
    "typical-alarmed-solid-365": "cf2cf6505c6b971e290a8f59045ab9c0010b09b346dbf95db20bad84e5d974bd",
    "typical-alarmed-solid-110": "d2106bfea1aa21cf61a0b7233249d4cd62486d055629de817fe6b70450457a41",
    "typical-angry-tabby-365": "f8077dec26dba3c9b7973a069e9eed199d6a2c6bcb156abfe78d4cd58985b0ab",
    "typical-angry-tabby-110": "9630117dd737e8d3030517d68c904c789782c8c13f85187f4f771229a47ae5ad",
    "typical-calm-spots-365": "f32f169baec73e45e185bd077cfb9001caf4ef65185802a70588de9c4e2e55d2",
    "typical-calm-spots-110": "0d9dc69451b90eae62f4681f69cf0c221be95dfe5e97bde224e3aab6aa211698",
    "typical-pleased-bicolour-365": "ff1b7aff0e27a9866860d7a8daf810d7e64d5e1b894d8ef9ef50bfdbd529f72b",
    "typical-pleased-bicolour-110": "e24d548ce4d8b04cc6a2d25ce2b289aac1ac5d9cd239caa1ae40b3c510ae1f4d",
    "render_cat-alarmed-0": "37ab681ecf842cf2c2ef7d9956f2da99a751b42186828ba21097e26fd4ccdf38",
    "render_cat-angry-1": "d2a6c28b8f5c9b579d790964d40c1fd87d24e950d4eeac50b8e9dba034b0799b",
    "render_cat-calm-2": "58e85a91bbe712e4d12c573705302167fc0a4058a48108b3afa0bca11f20ca58",
    "render_cat-pleased-3": "0f866fe790fb1b93bc4c2df36c4b82f79dcc69dc5daa14dba5e73b853c10498a",
    "render_cat-alarmed-4": "9f7919a56a2cd62a173d2c7fd19548dac3cb4fc6c9e4f581213d18a80e018f00",
    "render_cat-angry-5": "0b4123d4d7a9f116dee7cbf21d7b1eebc9c7e803216b2d426e89205312d9639b",
}


@pytest.mark.parametrize("name", sorted(REGRESSION_SHA256))
def test_drawing_is_pixel_identical_to_the_regression_digests(name):
    assert digest(cases()[name]) == REGRESSION_SHA256[name]


def test_the_regression_set_covers_every_case_and_the_cases_differ():
    images = cases()
    assert set(images) == set(REGRESSION_SHA256)
    assert len(set(REGRESSION_SHA256.values())) == len(REGRESSION_SHA256)
