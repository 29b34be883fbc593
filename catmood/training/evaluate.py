"""Evaluation a person can trust on small validation sets: accuracy with a 95% confidence interval,
macro-F1, per-class precision/recall/F1 by name, and the confusion matrix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.report import format_table
from .config import EVAL_BATCH_SIZE, EVAL_SPLIT, SPLITS


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion: honest at n = 100 and near 0 or 1, unlike p ± 2 SE."""
    if total == 0:
        return 0.0, 0.0
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> dict:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    n = int(confusion.sum())
    correct = int(np.trace(confusion))
    per_class = []
    f1s = []
    for i, name in enumerate(class_names):
        tp = int(confusion[i, i])
        predicted = int(confusion[:, i].sum())
        support = int(confusion[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(dict(name=name, precision=precision, recall=recall, f1=f1, support=support))
        if support:  # a class absent from this split has no defined F1: leave it out of the mean
            f1s.append(f1)
    low, high = wilson_interval(correct, n)
    return dict(n=n, correct=correct, accuracy=correct / n if n else 0.0, accuracy_ci95=[low, high],
                macro_f1=float(np.mean(f1s)) if f1s else 0.0, per_class=per_class,
                confusion_matrix=confusion.tolist(), class_names=list(class_names))


@torch.no_grad()
def logits_and_labels(model: torch.nn.Module, loader, device: torch.device, amp_dtype=None, tta: bool = False,
                      progress: bool = False, desc: str = "evaluating") -> tuple[np.ndarray, np.ndarray]:
    """(logits float32 N x K, labels N) over a loader of (images or features, labels). With `tta`, images
    are also seen mirrored left-right and the two logits averaged. `progress`: a bar in a terminal."""
    model.eval()
    logits, labels = [], []
    for x, y in progress_bar(loader, progress, desc):
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x)
            if tta and x.dim() == 4:
                out = (out + model(torch.flip(x, dims=(3,)))) / 2
        logits.append(out.float().cpu())
        labels.append(y)
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int64)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def progress_bar(loader, progress: bool, desc: str):
    """`loader`'s batches, counted in a bar by images (rate and time left) when `progress` and a terminal."""
    from tqdm.auto import tqdm

    if not progress:
        yield from loader
        return
    with tqdm(total=len(loader.dataset), desc=desc, unit="img", disable=None, leave=False) as bar:
        for x, y in loader:
            yield x, y
            bar.update(len(y))


def evaluate_samples(model: torch.nn.Module, samples, spec, device: torch.device, *, batch_size: int = 32,
                     workers: int = 0, tta: bool = False, progress: bool = False,
                     desc: str = "evaluating") -> tuple[dict, np.ndarray, np.ndarray]:
    """(metrics, logits, labels) of `model` on dataset samples through the evaluation transform, in FP32:
    the one evaluation that training's final report, `catmood eval` and the export reference all share."""
    from ..data.torch_dataset import ImageDataset, make_loader
    from ..data.transforms import EvalTransform

    loader = make_loader(ImageDataset(samples, EvalTransform(spec)), batch_size, workers)
    logits, labels = logits_and_labels(model, loader, device, tta=tta, progress=progress, desc=desc)
    metrics = classification_metrics(labels, logits.argmax(1), spec.class_names)
    if tta:
        metrics["tta"] = "flip"
    return metrics, logits, labels


def format_metrics(metrics: dict, title: str) -> str:
    low, high = metrics["accuracy_ci95"]
    lines = [f"{title}: {metrics['n']} images, accuracy {metrics['accuracy']:.1%} "
             f"(95% CI {low:.1%}-{high:.1%}), macro-F1 {metrics['macro_f1']:.3f}"]
    rows = [[c["name"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
            for c in metrics["per_class"]]
    lines.append(format_table(["class", "precision", "recall", "f1", "support"], rows))
    names = metrics["class_names"]
    width = max(len(n) for n in names)
    # Each column as wide as its class name (and its counts): names are never cut.
    columns = [max(len(n), *(len(str(row[j])) for row in metrics["confusion_matrix"])) for j, n in enumerate(names)]
    lines.append("confusion matrix (rows: true, columns: predicted)")
    lines.append(" " * (width + 2) + " ".join(f"{n:>{w}}" for n, w in zip(names, columns)))
    for name, row in zip(names, metrics["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:>{w}}" for v, w in zip(row, columns)))
    return "\n".join(lines)


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path | None = None, split: str = EVAL_SPLIT, *,
                        batch_size: int = EVAL_BATCH_SIZE, device: str = "auto", skip_bad: bool = False,
                        workers: int = 0, progress: bool = False) -> dict:
    """Metrics of a checkpoint on a split of a dataset (by default the one it was trained on)."""
    from ..checkpoint import load_checkpoint, model_from_checkpoint
    from ..data.layouts import discover_dataset
    from ..errors import CatmoodError
    from .devices import pick_device

    if not isinstance(batch_size, int) or batch_size < 1:
        raise CatmoodError(f"--batch-size must be a positive integer, got {batch_size!r}")
    if split not in SPLITS:
        raise CatmoodError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    ckpt = load_checkpoint(checkpoint)
    data = data or ckpt.config.get("data")
    if not data:
        raise CatmoodError(f"{ckpt.path}: no dataset recorded; pass --data")
    seed = int(ckpt.config.get("seed", 0))
    index = discover_dataset(data, seed=seed)
    index.require_trainable(skip_bad=skip_bad or bool(ckpt.config.get("skip_bad")))
    if tuple(index.class_names) != ckpt.spec.class_names:
        raise CatmoodError(f"{data}: classes {list(index.class_names)} differ from the checkpoint's "
                           f"{list(ckpt.spec.class_names)}")
    if split not in index.splits:
        raise CatmoodError(f"{data}: has no {split} split (it has {', '.join(index.splits)})")
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    # As training measured it: with the flip test-time augmentation when the run used it.
    metrics, _, _ = evaluate_samples(model, index.splits[split], ckpt.spec, dev, batch_size=batch_size,
                                     workers=workers, tta=bool(ckpt.config.get("tta")), progress=progress,
                                     desc=f"evaluating {split}")
    metrics["split"] = split
    return metrics
