"""After training: the best checkpoint evaluated on valid and test as `catmood eval` measures it, the plots
and the summary a person reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data.images import load_rgb
from ..data.report import format_table
from ..fileio import atomic_write_json
from ..preprocess import resize_and_crop
from .config import TrainConfig
from .evaluate import evaluate_samples, format_metrics
from .plots import plot_confusion, plot_predictions


def final_evaluation(run_dir: Path, index, spec, config: TrainConfig, history: list[dict], device, workers: int,
                      say, progress: bool = False) -> dict:
    """The best checkpoint on valid (used to pick it) and test (unseen), in FP32 as `catmood eval` measures
    it, then plots, metrics.json and the summary. best.pt is read, never rewritten: the file a user exports
    keeps the bytes (and sha256) it had when validation chose it; the final metrics go to metrics.json."""
    best = load_checkpoint(run_dir / "best.pt")
    model = model_from_checkpoint(best).to(device)
    final, predictions = {}, {}
    for split in ("valid", "test"):
        if split not in index.splits:
            continue
        metrics, logits, labels = evaluate_samples(model, index.splits[split], spec, device, tta=config.tta,
                                                   batch_size=config.eval_batch_size, workers=workers,
                                                   progress=progress, desc=f"final evaluation: {split}")
        final[split], predictions[split] = metrics, (logits, labels)
    final["valid"]["note"] = "used to choose the best epoch: optimistic, not an unseen-data estimate"
    if "test" in final:
        final["test"]["note"] = "unseen during training and model selection"

    shown = "test" if "test" in final else "valid"
    plot_confusion(final[shown]["confusion_matrix"], spec.class_names, run_dir / "confusion_matrix.png",
                   f"confusion matrix ({shown}, {final[shown]['n']} images, best epoch {best.epoch})")
    plot_prediction_grid(index.splits["valid"], *predictions["valid"], spec, run_dir / "predictions.png")

    atomic_write_json(run_dir / "metrics.json", {"select": config.select, "best_epoch": best.epoch,
                                                  "history": history, "final": final,
                                                  "weights_source": best.provenance.get("weights_source")})
    say("")
    say(format_metrics(final["valid"], "valid (used to choose the best epoch)"))
    if "test" in final:
        say("")
        say(format_metrics(final["test"], "test (unseen)"))
    rows = [[split, m["n"], f"{m['accuracy']:.1%}", f"{m['accuracy_ci95'][0]:.1%}-{m['accuracy_ci95'][1]:.1%}",
             f"{m['macro_f1']:.3f}"] for split, m in final.items()]
    say("")
    say(format_table(["split", "images", "accuracy", "95% CI", "macro-F1"], rows))
    if best.epoch == 0 and config.probe_epochs:
        say(f"best: the probe stage (epoch 0): no fine-tuning epoch beat its validation {config.select} by "
            f"{config.probe_margin:g} (--probe-margin), so best.pt is the probe (backbone unchanged)")
    else:
        say(f"best epoch {best.epoch} by {config.select}")
    say(f"outputs in {run_dir}: best.pt last.pt config.yaml metrics.json curves.png confusion_matrix.png "
        "predictions.png")
    return final


def plot_prediction_grid(samples, logits: np.ndarray, labels: np.ndarray, spec, path: Path, count: int = 24) -> None:
    """Wrong predictions first (up to half the grid), then correct ones, spread over the classes."""
    probs = torch.from_numpy(logits).softmax(1).numpy()
    pred = probs.argmax(1)
    wrong = [i for i in range(len(labels)) if pred[i] != labels[i]][: count // 2]
    right_by_class: dict[int, list[int]] = {}
    for i in range(len(labels)):
        if pred[i] == labels[i]:
            right_by_class.setdefault(int(labels[i]), []).append(i)
    right = []
    while len(wrong) + len(right) < count and any(right_by_class.values()):
        for k in sorted(right_by_class):
            if right_by_class[k] and len(wrong) + len(right) < count:
                right.append(right_by_class[k].pop(0))
    chosen = wrong + right
    images = [resize_and_crop(load_rgb(samples[i].path), spec) for i in chosen]
    plot_predictions(images, [int(labels[i]) for i in chosen], [int(pred[i]) for i in chosen],
                     [float(probs[i, pred[i]]) for i in chosen], spec.class_names, path)
