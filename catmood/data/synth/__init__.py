"""Synthetic cats for tests and the offline demo, drawn with OpenCV.

`face` (a face as data: expression per mood, appearance, pose), `draw` (those into pixels, with background and
camera-ish degradation), `dataset` (a Roboflow-layout folder of them) and `video` (one cat whose mood follows a
script). Import from here; the modules are how the package is organised, not separate interfaces.
"""

from .dataset import synthesize_dataset
from .draw import draw_face, render_background, render_cat
from .face import (DEFAULT_MOODS, MOODS, Appearance, Expression, Pose, sample_appearance, sample_expression,
                   sample_pose, typical_expression)
from .video import DEFAULT_SCRIPT, render_mood_video

__all__ = ["DEFAULT_MOODS", "DEFAULT_SCRIPT", "MOODS", "Appearance", "Expression", "Pose", "draw_face",
           "render_background", "render_cat", "render_mood_video", "sample_appearance", "sample_expression",
           "sample_pose", "synthesize_dataset", "typical_expression"]
