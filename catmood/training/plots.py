"""The pictures a person looks at after training: curves, confusion matrix, a grid of predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_curves(history: Sequence[dict], path: str | Path, best_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch, train vs validation."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train", color="#1f77b4")
        ax.plot(epochs, [h[f"valid_{key}"] for h in history], "o-", label="validation", color="#d62728")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1.02)
    axes[0].set_title("loss")
    axes[1].set_title("accuracy")
    if len(epochs) <= 12:
        for ax in axes:
            ax.set_xticks(epochs)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path,
                   title: str = "confusion matrix") -> Path:
    """Counts in the cells, colour by row share (recall), class names on both axes."""
    plt = _pyplot()
    matrix = np.asarray(confusion, dtype=float)
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * k, 1.0 + 0.8 * k))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    fig.tight_layout()
    return _save(fig, path)


def plot_predictions(images: Sequence[np.ndarray], true: Sequence[int], pred: Sequence[int],
                     confidence: Sequence[float], class_names: Sequence[str], path: str | Path,
                     columns: int = 6) -> Path:
    """A grid of RGB images titled 'pred (conf) / true'; wrong ones in red with a red frame."""
    plt = _pyplot()
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p, c in zip(axes.flat, images, true, pred, confidence):
        wrong = t != p
        ax.imshow(image)
        ax.set_title(f"{'✗ ' if wrong else ''}{class_names[p]} ({c:.0%})\ntrue: {class_names[t]}", fontsize=9,
                     color="#c62828" if wrong else "#1b5e20")
        if wrong:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("#c62828")
                spine.set_linewidth(3)
    fig.tight_layout()
    return _save(fig, path)
