"""Labels that do not flicker on video: smoothed probabilities, a hold time, an 'uncertain' floor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNCERTAIN = "uncertain"


@dataclass
class Decision:
    label: str
    confidence: float          # smoothed probability of the label's class (of the top class if uncertain)
    probs: np.ndarray          # smoothed, in class order


class MoodSmoother:
    """Per face: exponential moving average of probabilities (`alpha` = weight of the newest frame); the
    shown label changes only after the new one has led for `hold_s` seconds; below `threshold` the
    candidate is 'uncertain'. The first decision for a face is immediate."""

    def __init__(self, class_names, alpha: float = 0.4, hold_s: float = 0.5, threshold: float = 0.5):
        if not 0 < alpha <= 1:
            raise ValueError(f"smoothing alpha must be in (0, 1], got {alpha}")
        self.class_names = list(class_names)
        self.alpha, self.hold_s, self.threshold = alpha, hold_s, threshold

    def update(self, state: dict, probs: np.ndarray, t: float) -> Decision:
        ema = state.get("ema")
        ema = probs.astype(np.float64).copy() if ema is None else self.alpha * probs + (1 - self.alpha) * ema
        state["ema"] = ema
        top = int(ema.argmax())
        candidate = self.class_names[top] if ema[top] >= self.threshold else UNCERTAIN
        shown = state.get("label")
        if shown is None:
            state["label"], state["since"] = candidate, None
        elif candidate == shown:
            state["since"] = None
        else:
            if state.get("candidate") != candidate or state.get("since") is None:
                state["candidate"], state["since"] = candidate, t
            if t - state["since"] >= self.hold_s:
                state["label"], state["since"] = candidate, None
        label = state["label"]
        confidence = float(ema[self.class_names.index(label)]) if label != UNCERTAIN else float(ema[top])
        return Decision(label, confidence, ema)
