"""One small interface to run any artifact: a batch made by `catmood.preprocess` in, logits out."""

from __future__ import annotations

import numpy as np

from ..preprocess import preprocess
from ..spec import ModelSpec


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """`name` (torch, onnxruntime, tensorrt), `device` (where it actually runs), `spec` (its preprocessing
    and labels). `logits(batch)` and `predict(batch)` take the array `preprocess(frames, spec)` returns."""

    name: str = "?"
    device: str = "?"          # where it runs, for people: "cuda:0 (Tensorrt EP, fp16)"
    device_type: str = "cpu"   # where it runs, for code: "cpu" or "cuda"
    spec: ModelSpec
    # The precision it really computes in (an FP32 ONNX runs as FP16 in ONNX Runtime's TensorRT provider).
    precision: str = "fp32"
    # What a user should know about how it runs (e.g. an engine built on another GPU of the same kind).
    notes: list[str] | tuple[str, ...] = ()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def logits_of_frames(self, frames, batch_size: int = 16, progress=None) -> np.ndarray:
        """Logits of OpenCV frames (any sizes), preprocessed with this model's own spec, in batches;
        `progress(n)` is called after each batch of n frames."""
        out = []
        for i in range(0, len(frames), batch_size):
            out.append(self.logits(preprocess(frames[i:i + batch_size], self.spec)))
            if progress is not None:
                progress(len(out[-1]))
        return np.concatenate(out).astype(np.float32, copy=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, N x K, in `spec.class_names` order."""
        return softmax(self.logits(batch).astype(np.float32, copy=False))

    def describe(self) -> str:
        return f"{self.name} on {self.device}"
