"""A video of one synthetic cat whose mood follows a script, with the scripted mood of every frame."""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from ...errors import DatasetError
from ...fileio import atomic_write_json
from .draw import draw_face, render_background
from .face import Pose, sample_appearance, typical_expression

DEFAULT_SCRIPT = (("calm", 3.0), ("pleased", 3.0), ("alarmed", 3.0), ("angry", 3.0), ("calm", 2.0))


def render_mood_video(path: str | Path, script=DEFAULT_SCRIPT, *, fps: float = 15.0, size=(640, 480),
                      seed: int = 0, transition_s: float = 0.4) -> list[str]:
    """A video of one cat whose mood follows `script` ((mood, seconds), ...): the expression blends into
    the next mood over `transition_s`, the head drifts gently, the camera adds a little noise. The face sits
    where a whole-frame model looks (the centre crop) at the scale of the training images.

    Writes `path` (mp4v) and `path`.script.json; returns the scripted mood of every frame.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    appearance = sample_appearance(rng)
    background = render_background(rng, width, height)
    side = min(width, height)
    base = Pose(cx=width / 2, cy=height / 2 + 0.04 * side, radius=0.3 * side, angle=0.0, stretch=1.0)
    total = sum(seconds for _, seconds in script)
    n_frames = int(round(total * fps))
    starts = np.cumsum([0.0] + [seconds for _, seconds in script])
    labels = []
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DatasetError(f"{path}: cannot write an mp4v video there")
    for i in range(n_frames):
        t = i / fps
        k = min(int(np.searchsorted(starts, t, side="right")) - 1, len(script) - 1)
        mood = script[k][0]
        expression = typical_expression(mood)
        into = t - starts[k]
        if k > 0 and into < transition_s:  # blend from the previous mood
            expression = typical_expression(script[k - 1][0]).lerp(expression, into / transition_s)
        pose = Pose(cx=base.cx + 0.04 * side * math.sin(0.7 * t), cy=base.cy + 0.02 * side * math.sin(1.1 * t),
                    radius=base.radius * (1 + 0.04 * math.sin(0.5 * t)), angle=6 * math.sin(0.9 * t), stretch=1.0)
        image = background.copy()
        draw_face(image, appearance, pose, expression)
        noise = rng.normal(0, 3, image.shape)
        writer.write(np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8))
        labels.append(mood)
    writer.release()
    os.replace(tmp, path)
    atomic_write_json(Path(str(path) + ".script.json"), {"fps": fps, "script": [list(s) for s in script],
                                                          "frame_moods": labels})
    return labels
