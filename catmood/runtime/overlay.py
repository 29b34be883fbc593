"""What a person sees on the video: boxes, the mood, a confidence bar, fps."""

from __future__ import annotations

import cv2
import numpy as np

from .decisions import UNCERTAIN

PALETTE = [(60, 76, 231), (0, 140, 255), (113, 204, 46), (219, 152, 52), (182, 89, 155), (15, 196, 241),
           (160, 160, 20), (80, 80, 200)]  # BGR
GREY = (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour(label: str, class_names) -> tuple[int, int, int]:
    if label == UNCERTAIN or label not in class_names:
        return GREY
    return PALETTE[list(class_names).index(label) % len(PALETTE)]


def _tag(image: np.ndarray, x: int, y: int, text: str, confidence: float, col, scale: float) -> None:
    """Label text on a dark plate with a confidence bar under it, top-left corner at (x, y)."""
    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    bar_h = max(4, th // 3)
    w, h = tw + 10, th + base + bar_h + 12
    y = max(0, min(y, image.shape[0] - h))
    x = max(0, min(x, image.shape[1] - w))
    roi = image[y:y + h, x:x + w]
    roi[:] = (roi * 0.35).astype(np.uint8)
    cv2.putText(image, text, (x + 5, y + th + 4), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    bar_y = y + th + base + 6
    cv2.rectangle(image, (x + 5, bar_y), (x + 5 + tw, bar_y + bar_h), (90, 90, 90), -1)
    cv2.rectangle(image, (x + 5, bar_y), (x + 5 + int(tw * max(0.0, min(1.0, confidence))), bar_y + bar_h), col, -1)


def draw(image: np.ndarray, decisions, class_names, fps: float | None, faces_mode: bool) -> None:
    """`decisions`: [(box or None, Decision, track id or None)]. Draws in place."""
    scale = max(0.45, min(1.2, image.shape[1] / 900))
    if faces_mode and not decisions:
        _tag(image, 8, 8, "no cat face", 0.0, GREY, scale)
    for box, decision, track_id in decisions:
        col = colour(decision.label, class_names)
        text = f"{decision.label} {decision.confidence:.0%}" + (f"  #{track_id}" if track_id is not None else "")
        if box is None:
            _tag(image, 8, 8, text, decision.confidence, col, scale)
        else:
            x, y, w, h = box
            cv2.rectangle(image, (x, y), (x + w, y + h), col, max(2, int(scale * 3)), cv2.LINE_AA)
            _tag(image, x, y - int(40 * scale), text, decision.confidence, col, scale)
    if fps is not None:
        text = f"{fps:.1f} fps"
        (tw, _), _ = cv2.getTextSize(text, FONT, scale * 0.8, 1)
        cv2.putText(image, text, (image.shape[1] - tw - 10, int(28 * scale)), FONT, scale * 0.8, (255, 255, 255), 2,
                    cv2.LINE_AA)
        cv2.putText(image, text, (image.shape[1] - tw - 10, int(28 * scale)), FONT, scale * 0.8, (20, 20, 20), 1,
                    cv2.LINE_AA)
