"""The train/validate loop: checkpoints every epoch, exact resume, Ctrl-C safe, DDP under torchrun.

Exact resume: every epoch reseeds Python, NumPy, torch and the data order from (seed, epoch), so an
interrupted run resumed from last.pt produces the same weights as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from ..data.images import load_rgb
from ..data.layouts import discover_dataset
from ..data.report import format_table
from ..data.torch_dataset import ImageDataset, make_loader
from ..data.transforms import EvalTransform, train_transform
from ..errors import CatmoodError
from ..fileio import atomic_write_json, atomic_write_text
from ..preprocess import resize_and_crop
from .config import TrainConfig, dump_yaml
from .devices import amp_dtype, pick_device
from .evaluate import classification_metrics, evaluate_samples, format_metrics, predict
from .models import create_model
from .plots import plot_confusion, plot_curves, plot_predictions


@dataclass
class TrainResult:
    run_dir: Path
    best_path: Path | None
    last_path: Path | None
    best_epoch: int | None
    history: list[dict]
    final: dict = field(default_factory=dict)   # split -> metrics of the best checkpoint
    interrupted: bool = False
    stopped_early: bool = False


# -- distributed --------------------------------------------------------------------------------------

@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def _init_distributed(device_name: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    dist = Dist(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if not td.is_initialized():
        td.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
    return dist


def _all_reduce_sum(values: list[float], dist: Dist) -> list[float]:
    if not dist.on:
        return values
    import torch.distributed as td

    tensor = torch.tensor(values, dtype=torch.float64)
    td.all_reduce(tensor)
    return tensor.tolist()


def _broadcast(obj, dist: Dist):
    if not dist.on:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(dist: Dist) -> None:
    if dist.on:
        import torch.distributed as td

        td.barrier()


# -- pieces ------------------------------------------------------------------------------------------

def _seed_epoch(seed: int, epoch: int) -> int:
    value = (seed * 1_000_003 + epoch * 7919) % (2 ** 31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


def _default_run_dir(model: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model)
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{safe}"


def _lr_lambda(total_steps: int, warmup_steps: int, kind: str) -> Callable[[int], float]:
    import math

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "none":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)


def _class_weights(labels: list[int], k: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return torch.tensor(len(labels) / (k * np.maximum(counts, 1)), dtype=torch.float32)


@torch.no_grad()
def compute_features(backbone: nn.Module, dataset, device: torch.device, batch_size: int, workers: int,
                     progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of a whole dataset, once (eval mode: no dropout, frozen normalisation)."""
    from tqdm.auto import tqdm

    backbone.eval()
    loader = make_loader(dataset, batch_size, workers)
    feats, labels = [], []
    for x, y in tqdm(loader, desc=desc, unit="batch", disable=not progress or None, leave=False):
        feats.append(backbone(x.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


# -- the loop ----------------------------------------------------------------------------------------

def train(config: TrainConfig | None, *, resume: str | Path | None = None, progress: bool = True,
          echo: Callable[[str], None] = print) -> TrainResult:
    """Train as `config` says (or continue `resume`, a last.pt or its run folder); returns what was written."""
    from tqdm.auto import tqdm

    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(Path(resume) / "last.pt" if Path(resume).is_dir() else resume)
        if ckpt.training_state is None:
            raise CatmoodError(f"{ckpt.path}: holds no training state to resume from (resume from last.pt of a "
                               "run that finished at least one epoch)")
        config = TrainConfig(**{**TrainConfig().to_dict(), **ckpt.config})
    config.validate()
    if not config.data:
        raise CatmoodError("no dataset given: pass --data DATASET")
    dist = _init_distributed(config.device)
    device = torch.device(f"cuda:{dist.local_rank}") if dist.on and torch.cuda.is_available() \
        and config.device != "cpu" else pick_device(config.device)
    say = echo if dist.main else (lambda *_: None)
    show = progress and dist.main
    workers = config.workers if config.workers is not None else min(4, os.cpu_count() or 1)

    run_dir = ckpt.path.parent if ckpt else Path(config.out) if config.out else _default_run_dir(config.model)
    run_dir = Path(_broadcast(str(run_dir), dist))
    _seed_epoch(config.seed, -1)

    index = discover_dataset(config.data, seed=config.seed, progress=show)
    index.require_trainable(skip_bad=config.skip_bad)
    config = dataclasses.replace(config, data=str(index.root))  # record the resolved path, not the caller's
    if ckpt is not None and tuple(index.class_names) != ckpt.spec.class_names:
        raise CatmoodError(f"{config.data}: classes {list(index.class_names)} differ from the run's "
                           f"{list(ckpt.spec.class_names)}")

    if ckpt is None:
        created = create_model(config.model, index.class_names, dropout=config.dropout,
                               pretrained=config.pretrained, weights=config.weights, cache_dir=config.cache_dir,
                               input_size=config.input_size)
        model, spec, weights_source = created.model, created.spec, created.weights_source
    else:
        model, spec = model_from_checkpoint(ckpt), ckpt.spec
        weights_source = ckpt.provenance.get("weights_source", "resumed")
        if config.dropout != ckpt.dropout:
            raise CatmoodError(f"{ckpt.path}: dropout differs from its config")
    model.to(device)
    # Convolutions on NVIDIA GPUs (tensor cores) run fastest with channels-last activations.
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model.to(memory_format=memory_format)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_yaml(config))
    counts = index.counts()
    say(f"training {spec.architecture} ({config.recipe}) on {device} | classes: {', '.join(spec.class_names)} | "
        f"images: " + ", ".join(f"{s} {sum(c)}" for s, c in counts.items()) + f" | weights: {weights_source}")

    train_samples, val_samples = index.splits["train"], index.splits["valid"]
    if config.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)

    # What trains and on what: the whole model on images, or the head on cached backbone features.
    if config.cache_features:
        x_tr, y_tr = compute_features(model.backbone, ImageDataset(train_samples, EvalTransform(spec)), device,
                                      config.eval_batch_size, workers, show, "caching train features")
        x_va, y_va = compute_features(model.backbone, ImageDataset(val_samples, EvalTransform(spec)), device,
                                      config.eval_batch_size, workers, show, "caching valid features")
        train_set = torch.utils.data.TensorDataset(x_tr, y_tr)
        val_set = torch.utils.data.TensorDataset(x_va, y_va)
        trainable: nn.Module = model.head
        loader_workers = 0
    else:
        train_set = ImageDataset(train_samples, train_transform(spec, config.augment))
        val_set = ImageDataset(val_samples, EvalTransform(spec))
        trainable = model
        loader_workers = workers

    generator = torch.Generator()
    if dist.on:
        sampler = torch.utils.data.DistributedSampler(train_set, dist.world, dist.rank, shuffle=True,
                                                      seed=config.seed)
        train_loader = make_loader(train_set, config.batch_size, loader_workers, sampler=sampler,
                                   generator=generator)
    else:
        sampler = None
        train_loader = make_loader(train_set, config.batch_size, loader_workers, shuffle=True,
                                   generator=generator, drop_last=len(train_set) > config.batch_size)
    val_loader = make_loader(val_set, config.eval_batch_size, loader_workers)

    ddp_module = trainable
    if dist.on:
        ddp_module = nn.parallel.DistributedDataParallel(
            trainable, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _make_optimizer(config, trainable.parameters())
    steps_per_epoch = max(1, len(train_loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch,
                              config.scheduler))
    amp = amp_dtype(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    weight = _class_weights([s.label for s in train_samples], spec.num_classes).to(device) \
        if config.class_weighted else None
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    history: list[dict] = []
    best_score, best_epoch, bad_epochs, start_epoch = -1.0, None, 0, 0
    if ckpt is not None:
        state = ckpt.training_state
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        best_score, best_epoch, bad_epochs = state["best_score"], state["best_epoch"], state["bad_epochs"]
        history, start_epoch = list(ckpt.history), ckpt.epoch
        say(f"resuming {ckpt.path} after epoch {start_epoch} of {config.epochs}")

    base_config = config.to_dict()
    prov = {"weights_source": weights_source, "dataset": {"root": str(index.root), "layout": index.layout,
                                                          "counts": counts}}
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    def set_train_mode() -> None:
        trainable.train()
        if config.freeze_backbone and not config.cache_features:
            model.backbone.eval()  # frozen: keep its normalisation statistics and no dropout

    def checkpoint(epoch: int, metrics: dict, training_state: dict | None) -> Checkpoint:
        return Checkpoint(path=None, spec=spec, state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                          dropout=config.dropout, config=base_config, metrics=metrics, history=history, epoch=epoch,
                          provenance=prov, training_state=training_state)

    interrupted = stopped_early = False
    epoch = start_epoch
    unit = "features" if config.cache_features else "img"
    try:
        for epoch in range(start_epoch, config.epochs):
            epoch_seed = _seed_epoch(config.seed, epoch)
            generator.manual_seed(epoch_seed)
            if sampler is not None:
                sampler.set_epoch(epoch)
            set_train_mode()
            seen = correct = 0
            loss_sum = 0.0
            started = time.perf_counter()
            bar = tqdm(total=len(train_loader.dataset) // dist.world, desc=f"epoch {epoch + 1}/{config.epochs}",
                       unit=unit[:4], disable=not show or None, leave=False)
            for x, y in train_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if x.dim() == 4:
                    x = x.contiguous(memory_format=memory_format)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    logits = ddp_module(x)
                    loss = criterion(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                n = y.shape[0]
                seen += n
                loss_sum += float(loss.detach()) * n
                correct += int((logits.argmax(1) == y).sum())
                bar.update(n)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                lr=f"{scheduler.get_last_lr()[0]:.2e}")
            bar.close()
            seconds = time.perf_counter() - started
            loss_sum, correct, seen = _all_reduce_sum([loss_sum, correct, seen], dist)

            val_logits, val_labels = predict(trainable, val_loader, device, amp)
            val_loss = float(criterion(torch.from_numpy(val_logits).to(device), torch.from_numpy(val_labels).to(device)))
            val = classification_metrics(val_labels, val_logits.argmax(1), spec.class_names)
            row = dict(epoch=epoch + 1, train_loss=loss_sum / max(seen, 1), train_accuracy=correct / max(seen, 1),
                       val_loss=val_loss, val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"],
                       lr=scheduler.get_last_lr()[0], seconds=seconds, images_per_s=seen / max(seconds, 1e-9))
            history.append(row)
            score = val[config.select]
            improved = score > best_score
            if improved:
                best_score, best_epoch, bad_epochs = score, epoch + 1, 0
            else:
                bad_epochs += 1
            say(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
                f"valid loss {val_loss:.4f} acc {val['accuracy']:.3f} macro-F1 {val['macro_f1']:.3f}"
                f"{' *best*' if improved else ''} | {row['images_per_s']:.1f} {unit}/s")
            if dist.main:
                state = dict(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                             scaler=scaler.state_dict() if scaler.is_enabled() else None,
                             best_score=best_score, best_epoch=best_epoch, bad_epochs=bad_epochs)
                metrics = {"valid": val}
                save_checkpoint(checkpoint(epoch + 1, metrics, state), last_path)
                if improved:
                    save_checkpoint(checkpoint(epoch + 1, metrics, None), best_path)
                atomic_write_json(run_dir / "metrics.json", {"select": config.select, "best_epoch": best_epoch,
                                                              "history": history})
            _barrier(dist)
            if config.early_stopping and bad_epochs >= config.early_stopping:
                stopped_early = True
                say(f"early stopping: no {config.select} improvement for {bad_epochs} epochs")
                break
    except KeyboardInterrupt:
        interrupted = True
        if dist.main and not last_path.exists():
            # Nothing finished yet: keep the weights as they are, usable for eval/export (not for --resume).
            save_checkpoint(checkpoint(epoch, {}, None), last_path)
        say(f"\ninterrupted: {last_path} holds epoch {len(history)}; continue with "
            f"`catmood train --resume {run_dir}`")

    result = TrainResult(run_dir=run_dir, best_path=best_path if best_path.exists() else None,
                         last_path=last_path if last_path.exists() else None, best_epoch=best_epoch,
                         history=history, interrupted=interrupted, stopped_early=stopped_early)
    if dist.main and history:
        plot_curves(history, run_dir / "curves.png", best_epoch)
    if not interrupted and dist.main and history:
        result.final = _final_evaluation(run_dir, index, spec, config, history, device, workers, say)
    _barrier(dist)
    if dist.on:
        import torch.distributed as td

        td.destroy_process_group()
    return result


def _final_evaluation(run_dir: Path, index, spec, config: TrainConfig, history: list[dict], device, workers: int,
                      say) -> dict:
    """The best checkpoint on valid (used to pick it) and test (unseen), in FP32 as `catmood eval` measures
    it, then plots, metrics.json and the summary."""
    best = load_checkpoint(run_dir / "best.pt")
    model = model_from_checkpoint(best).to(device)
    final, predictions = {}, {}
    for split in ("valid", "test"):
        if split not in index.splits:
            continue
        metrics, logits, labels = evaluate_samples(model, index.splits[split], spec, device,
                                                   batch_size=config.eval_batch_size, workers=workers)
        final[split], predictions[split] = metrics, (logits, labels)
    final["valid"]["note"] = "used to choose the best epoch: optimistic, not an unseen-data estimate"
    if "test" in final:
        final["test"]["note"] = "unseen during training and model selection"

    shown = "test" if "test" in final else "valid"
    plot_confusion(final[shown]["confusion_matrix"], spec.class_names, run_dir / "confusion_matrix.png",
                   f"confusion matrix ({shown}, {final[shown]['n']} images, best epoch {best.epoch})")
    _plot_prediction_grid(index.splits["valid"], *predictions["valid"], spec, run_dir / "predictions.png")

    best.metrics = final
    save_checkpoint(best, run_dir / "best.pt")
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
    say(f"best epoch {best.epoch} by {config.select}; outputs in {run_dir}: best.pt last.pt config.yaml "
        "metrics.json curves.png confusion_matrix.png predictions.png")
    return final


def _plot_prediction_grid(samples, logits: np.ndarray, labels: np.ndarray, spec, path: Path, count: int = 24) -> None:
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
