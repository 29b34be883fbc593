"""The train/validate loop: checkpoints every epoch, exact resume, Ctrl-C safe, DDP under torchrun.

With probe_epochs (the default recipe), the head is first trained alone on cached features (the probe
stage, epoch 0); that state is validated and checkpointed like any epoch, so the best checkpoint can be the
probe itself when no fine-tuning epoch beats it on validation.

Exact resume: every epoch reseeds Python, NumPy, torch and the data order from (seed, epoch), so an
interrupted run resumed from last.pt produces the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..errors import CatmoodError
from ..fileio import atomic_write_json
from .config import TrainConfig, config_of_checkpoint
from .distributed import all_reduce_sum, barrier, broadcast, shut_down
from .final import final_evaluation
from .plots import plot_curves
from .probe import fit_probe
from .setup import Fit, Run, prepare_fit, setup_run
from .steps import compute_features, freeze_batchnorm_stats, seed_epoch, train_one_epoch, validate

__all__ = ["TrainResult", "train", "compute_features"]


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


def train(config: TrainConfig | None, *, resume: str | Path | None = None, progress: bool = True,
          echo: Callable[[str], None] = print) -> TrainResult:
    """Train as `config` says, or continue `resume` (a last.pt or its run folder) with its saved config;
    returns what was written."""
    ckpt = None
    if resume is not None:
        if config is not None:
            raise CatmoodError(f"{resume}: a resumed run continues with its own saved config; call "
                               "train(None, resume=...) (or start a new run with this config)")
        ckpt = resumable_checkpoint(resume)
        config = config_of_checkpoint(ckpt.config)
    run = setup_run(config, ckpt, progress, echo)
    try:
        return _train(run, ckpt)
    finally:
        if run.lock is not None:
            run.lock.release()


def resumable_checkpoint(resume: str | Path) -> Checkpoint:
    """last.pt of a run that can continue: one that finished an epoch and has not finished training."""
    ckpt = load_checkpoint(Path(resume) / "last.pt" if Path(resume).is_dir() else resume)
    if ckpt.training_state is None:
        raise CatmoodError(f"{ckpt.path}: holds no training state to resume from (resume from last.pt of a "
                           "run that finished at least one epoch)")
    config, state = config_of_checkpoint(ckpt.config), ckpt.training_state
    stopped = bool(config.early_stopping and state["bad_epochs"] >= config.early_stopping)
    try:
        evaluated = bool(json.loads((ckpt.path.parent / "metrics.json").read_text()).get("final"))
    except (OSError, ValueError, AttributeError):
        evaluated = False
    # Trained to its end but not evaluated yet (stopped during the final evaluation): resuming evaluates it.
    if (ckpt.epoch >= config.epochs or stopped) and evaluated:
        how = f"stopped early after epoch {ckpt.epoch}" if ckpt.epoch < config.epochs else \
            f"trained {ckpt.epoch} of {config.epochs} epochs, then evaluated"
        raise CatmoodError(f"{ckpt.path.parent}: this run is finished ({how}); nothing to resume. To train "
                           "longer, start a new run with more --epochs: this run's learning-rate schedule has "
                           "ended, so continuing it would not make the longer run")
    return ckpt


def _train(run: Run, ckpt: Checkpoint | None) -> TrainResult:
    config, fit = run.config, None
    last_path, best_path = run.run_dir / "last.pt", run.run_dir / "best.pt"
    interrupted = stopped_early = ours = False
    try:
        fit = prepare_fit(run)  # the linear-probe recipe caches features here
        if ckpt is None and config.probe_epochs:
            _probe_stage(run, fit)
        if config.ema_decay:
            from timm.utils import ModelEmaV3

            fit.ema = ModelEmaV3(fit.trainable, decay=config.ema_decay, use_warmup=True)
        if ckpt is not None:
            _restore(run, fit, ckpt)
        for epoch in range(fit.start_epoch, config.epochs):
            if _epoch(run, fit, epoch):
                stopped_early = True
                run.say(f"early stopping: no {config.select} improvement for {fit.bad_epochs} epochs")
                break
    except KeyboardInterrupt:
        interrupted = True
        ours = _interrupted(run, fit, ckpt, last_path)

    history = fit.history if fit is not None else []
    result = TrainResult(run_dir=run.run_dir, best_path=best_path if best_path.exists() and history else None,
                         last_path=last_path if last_path.exists() and (history or ours) else None,
                         best_epoch=fit.best_epoch if fit is not None else None, history=history,
                         interrupted=interrupted, stopped_early=stopped_early)
    if run.dist.main and history:
        plot_curves(history, run.run_dir / "curves.png", fit.best_epoch)
    if not interrupted and run.dist.main and history:
        result.final = final_evaluation(run.run_dir, run.index, run.spec, config, history, run.device,
                                        run.workers, run.say, run.show)
    barrier(run.dist)
    shut_down(run.dist)
    return result


def _interrupted(run: Run, fit: Fit | None, ckpt: Checkpoint | None, last_path: Path) -> bool:
    """After Ctrl-C: last.pt holds the last finished epoch; before the first one, the weights as they are
    once anything has trained; before that, nothing is written and the user is told so. True when last.pt
    is this run's."""
    if (fit is not None and fit.history) or ckpt is not None:
        epoch = fit.history[-1]["epoch"] if fit is not None and fit.history else ckpt.epoch
        run.say(f"\ninterrupted: {last_path} holds epoch {epoch}; continue with "
                f"`catmood train --resume {run.run_dir}`")
        return True
    if fit is not None and (fit.probe_trained or fit.scheduler.last_epoch > 0):
        if run.dist.main:
            save_checkpoint(_checkpoint(run, fit, 0, {}, None), last_path)
        run.say(f"\ninterrupted before the first epoch ended: {last_path} holds the weights as they were "
                "(usable for eval and export; --resume needs a finished epoch, so train again to continue)")
        return True
    when = ("while caching features" if fit is None else
            "before the probe stage finished" if run.config.probe_epochs else "before the first training step")
    run.say(f"\ninterrupted {when}: nothing was trained, so no checkpoint was written; run the same command "
            "again to train")
    return False


def _probe_stage(run: Run, fit: Fit) -> None:
    """Epoch 0 of LP-FT: the head trained alone on cached features, then validated like any epoch."""
    config = run.config
    run.say(f"probe stage: the head alone, {config.probe_epochs} epochs on cached features of the training images")
    outcome = fit_probe(run.model, run.spec, run.index.splits["train"], config, fit.criterion, run.device,
                        run.workers, run.show)
    fit.probe_trained = True
    if run.dist.on:  # every rank trained the same head; make it bit-identical before DDP steps begin
        run.model.head.load_state_dict(broadcast(run.model.head.state_dict(), run.dist))
    valid_loss, val = validate(run.model, fit.valid_loader, fit.criterion, run.device, run.amp, run.spec.class_names,
                               config.tta, run.show)
    row = dict(epoch=0, stage="probe", train_loss=outcome.train_loss, train_accuracy=outcome.train_accuracy,
               valid_loss=valid_loss, valid_accuracy=val["accuracy"], valid_macro_f1=val["macro_f1"], lr=0.0,
               seconds=outcome.seconds, images_per_s=outcome.features_per_s)
    _record(run, fit, row, val, "probe", "features")


def _epoch(run: Run, fit: Fit, epoch: int) -> bool:
    """Train and validate one epoch, record it; True when early stopping says to stop."""
    from tqdm.auto import tqdm

    config, dist = run.config, run.dist
    fit.generator.manual_seed(seed_epoch(config.seed, epoch))
    if fit.sampler is not None:
        fit.sampler.set_epoch(epoch)
    fit.trainable.train()
    if config.freeze_backbone and not config.cache_features:
        run.model.backbone.eval()  # frozen: keep its normalisation statistics and no dropout
    elif config.freeze_bn_stats and not config.freeze_backbone:
        freeze_batchnorm_stats(run.model.backbone)
    started = time.perf_counter()
    bar = tqdm(total=len(fit.train_loader.dataset) // dist.world, desc=f"epoch {epoch + 1}/{config.epochs}",
               unit=fit.unit[:4], disable=not run.show or None, leave=False)
    after_step = (lambda: fit.ema.update(fit.trainable, step=fit.scheduler.last_epoch)) \
        if fit.ema is not None else None
    stats = train_one_epoch(fit.module, fit.train_loader, fit.optimizer, fit.scheduler, fit.scaler, fit.criterion,
                            device=run.device, amp=run.amp, grad_clip=config.grad_clip,
                            clip_params=fit.trainable.parameters(), memory_format=run.memory_format,
                            after_step=after_step, bar=bar)
    bar.close()
    seconds = time.perf_counter() - started
    loss_sum, correct, seen = all_reduce_sum([stats.loss_sum, stats.correct, stats.seen], dist)
    evaluated = fit.ema.module if fit.ema is not None else fit.trainable
    valid_loss, val = validate(evaluated, fit.valid_loader, fit.criterion, run.device, run.amp, run.spec.class_names,
                               config.tta, run.show)
    row = dict(epoch=epoch + 1, stage="probe" if config.freeze_backbone else "finetune",
               train_loss=loss_sum / max(seen, 1), train_accuracy=correct / max(seen, 1), valid_loss=valid_loss,
               valid_accuracy=val["accuracy"], valid_macro_f1=val["macro_f1"], lr=fit.scheduler.get_last_lr()[0],
               seconds=seconds, images_per_s=seen / max(seconds, 1e-9))
    _record(run, fit, row, val, f"epoch {epoch + 1}/{config.epochs}", fit.unit)
    return bool(config.early_stopping and fit.bad_epochs >= config.early_stopping)


def _record(run: Run, fit: Fit, row: dict, val: dict, label: str, unit: str) -> None:
    """Add an epoch to the history; say it; save last.pt, best.pt when it improved, and metrics.json."""
    config = run.config
    fit.history.append(row)
    # While the probe stage is the best, fine-tuning must beat it by probe_margin: on validation sets of a
    # few hundred images smaller gains are noise, and the probe leaves the ImageNet features untouched.
    margin = config.probe_margin if fit.best_epoch == 0 and config.probe_epochs else 0.0
    improved = val[config.select] > fit.best_score + margin
    if improved:
        fit.best_score, fit.best_epoch, fit.bad_epochs = val[config.select], row["epoch"], 0
    else:
        fit.bad_epochs += 1
    run.say(f"{label}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
            f"valid loss {row['valid_loss']:.4f} acc {val['accuracy']:.3f} macro-F1 {val['macro_f1']:.3f}"
            f"{' *best*' if improved else ''} | {row['images_per_s']:.1f} {unit}/s")
    if run.dist.main:
        state = dict(optimizer=fit.optimizer.state_dict(), scheduler=fit.scheduler.state_dict(),
                     scaler=fit.scaler.state_dict() if fit.scaler.is_enabled() else None,
                     ema=_cpu(fit.ema.module.state_dict()) if fit.ema is not None else None,
                     best_score=fit.best_score, best_epoch=fit.best_epoch, bad_epochs=fit.bad_epochs)
        metrics = {"valid": val}
        save_checkpoint(_checkpoint(run, fit, row["epoch"], metrics, state), run.run_dir / "last.pt")
        if improved:
            save_checkpoint(_checkpoint(run, fit, row["epoch"], metrics, None, evaluated=True),
                            run.run_dir / "best.pt")
        atomic_write_json(run.run_dir / "metrics.json", {"select": config.select, "best_epoch": fit.best_epoch,
                                                          "history": fit.history})
    barrier(run.dist)


def _restore(run: Run, fit: Fit, ckpt: Checkpoint) -> None:
    state = ckpt.training_state
    fit.optimizer.load_state_dict(state["optimizer"])
    fit.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        fit.scaler.load_state_dict(state["scaler"])
    if fit.ema is not None and state.get("ema") is not None:
        fit.ema.module.load_state_dict(state["ema"])
    fit.best_score, fit.best_epoch, fit.bad_epochs = state["best_score"], state["best_epoch"], state["bad_epochs"]
    fit.history, fit.start_epoch = list(ckpt.history), ckpt.epoch
    run.say(f"resuming {ckpt.path} after epoch {fit.start_epoch} of {run.config.epochs}")


def _checkpoint(run: Run, fit: Fit, epoch: int, metrics: dict, training_state: dict | None,
                evaluated: bool = False) -> Checkpoint:
    """The model as trained (last.pt: what resuming continues), or as evaluated (best.pt: the EMA weights
    when there is an EMA)."""
    state = _cpu(run.model.state_dict())
    if evaluated and fit.ema is not None:
        prefix = "head." if fit.trainable is run.model.head else ""
        state.update({prefix + k: v for k, v in _cpu(fit.ema.module.state_dict()).items()})
    return Checkpoint(path=None, spec=run.spec, state_dict=state, dropout=run.config.dropout,
                      config=run.config.to_dict(), metrics=metrics, history=fit.history, epoch=epoch,
                      provenance=run.prov, training_state=training_state)


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}
