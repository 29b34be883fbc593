"""Before the first epoch: processes, device, dataset, model and run folder (`setup_run`), then what trains,
on what and how (`prepare_fit`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpoint, model_from_checkpoint
from ..data.layouts import DatasetIndex, discover_dataset
from ..data.torch_dataset import ImageDataset, make_loader
from ..data.transforms import EvalTransform, choose_augment, train_transform
from ..errors import CatmoodError
from ..fileio import atomic_write_text
from ..spec import ModelSpec
from .config import TrainConfig, dump_yaml
from .devices import amp_dtype, pick_device
from .distributed import Dist, broadcast, init_distributed
from .models import create_model
from .optim import make_optimizer, make_scheduler, param_groups
from .rundir import RunLock, claim_run_dir
from .steps import compute_features, seed_epoch


@dataclass
class Run:
    """What a training run works with, set up once."""
    config: TrainConfig
    dist: Dist
    device: torch.device
    say: Callable[[str], None]
    show: bool
    workers: int
    run_dir: Path
    index: DatasetIndex
    spec: ModelSpec
    model: nn.Module
    prov: dict
    memory_format: Any
    amp: Any
    lock: RunLock | None                # held by the main process until training ends


@dataclass
class Fit:
    """The optimisation in progress: what trains, on what and how, and where it stands."""
    trainable: nn.Module                # the model, or its head on cached features
    module: nn.Module                   # trainable, wrapped for DDP when distributed
    train_loader: Any
    valid_loader: Any
    sampler: Any
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    criterion: nn.Module
    unit: str
    ema: Any = None
    history: list[dict] = field(default_factory=list)
    best_score: float = -1.0
    best_epoch: int | None = None
    bad_epochs: int = 0
    start_epoch: int = 0
    probe_trained: bool = False         # the probe stage's head is trained (not yet validated, maybe)


def setup_run(config: TrainConfig, ckpt: Checkpoint | None, progress: bool, echo) -> Run:
    """Processes, device, dataset and model; the run folder, locked, with its config.yaml. The run folder
    is claimed before any work, so a refusal costs nothing; until `Run.lock` is released no other process
    trains into it."""
    config.validate()
    if not config.data:
        raise CatmoodError("no dataset given: pass --data DATASET")
    dist = init_distributed(config.device)
    lock = None
    if dist.main:
        lock = claim_run_dir(ckpt.path.parent if ckpt else config.out, config.model, resuming=ckpt is not None,
                             exist_ok=config.exist_ok, dataset=config.data, inputs=[config.weights])
    run_dir = Path(broadcast(str(lock.folder) if lock else "", dist))
    try:
        return _set_up(config, ckpt, progress, echo, dist, run_dir, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _set_up(config: TrainConfig, ckpt: Checkpoint | None, progress: bool, echo, dist: Dist, run_dir: Path,
            lock: RunLock | None) -> Run:
    device = torch.device(f"cuda:{dist.local_rank}") if dist.on and torch.cuda.is_available() \
        and config.device != "cpu" else pick_device(config.device)
    say = echo if dist.main else (lambda *_: None)
    show = progress and dist.main
    seed_epoch(config.seed, -1)

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
        atomic_write_text(run_dir / "config.yaml", dump_yaml(config))
    counts = index.counts()
    say(f"training {spec.architecture} ({config.recipe}) on {device} | classes: {', '.join(spec.class_names)} | "
        f"images: " + ", ".join(f"{s} {sum(c)}" for s, c in counts.items()) + f" | weights: {weights_source}"
        + f" | run folder: {run_dir}")
    prov = {"weights_source": weights_source,
            "dataset": {"root": str(index.root), "layout": index.layout, "counts": counts}}
    return Run(config, dist, device, say, show, config.workers if config.workers is not None
               else min(4, os.cpu_count() or 1), run_dir, index, spec, model, prov, memory_format,
               amp_dtype(device, config.amp), lock)


def prepare_fit(run: Run) -> Fit:
    """What trains and on what: the whole model on images, or the head on cached backbone features."""
    config, model, spec = run.config, run.model, run.spec
    train_samples, valid_samples = run.index.splits["train"], run.index.splits["valid"]
    if config.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    if config.cache_features:
        sets = [torch.utils.data.TensorDataset(*compute_features(
            model.backbone, ImageDataset(samples, EvalTransform(spec)), run.device, config.eval_batch_size,
            run.workers, run.show, f"caching {split} features"))
            for split, samples in (("train", train_samples), ("valid", valid_samples))]
        train_set, valid_set, trainable, loader_workers, unit = *sets, model.head, 0, "features"
    else:
        augment, why = choose_augment(train_samples, spec) if config.augment == "auto" else (config.augment, "")
        if why:
            run.say(f"augmentation: {augment} (auto: {why})")
        run.prov["augment"] = augment
        train_set = ImageDataset(train_samples, train_transform(spec, augment))
        valid_set = ImageDataset(valid_samples, EvalTransform(spec))
        trainable, loader_workers, unit = model, run.workers, "img"

    dist, generator, sampler = run.dist, torch.Generator(), None
    if dist.on:
        sampler = torch.utils.data.DistributedSampler(train_set, dist.world, dist.rank, shuffle=True,
                                                      seed=config.seed)
        train_loader = make_loader(train_set, config.batch_size, loader_workers, sampler=sampler,
                                   generator=generator)
    else:
        train_loader = make_loader(train_set, config.batch_size, loader_workers, shuffle=True,
                                   generator=generator, drop_last=len(train_set) > config.batch_size)
    module = trainable
    if dist.on:
        module = nn.parallel.DistributedDataParallel(
            trainable, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    optimizer = make_optimizer(config, param_groups(model, config))
    scheduler = make_scheduler(optimizer, config.epochs, max(1, len(train_loader)), config.warmup_epochs,
                               config.scheduler)
    weight = _class_weights([s.label for s in train_samples], spec.num_classes).to(run.device) \
        if config.class_weighted else None
    return Fit(trainable, module, train_loader, make_loader(valid_set, config.eval_batch_size, loader_workers),
               sampler, generator, optimizer, scheduler,
               torch.amp.GradScaler("cuda", enabled=run.amp == torch.float16),
               nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing), unit)


def _class_weights(labels: list[int], k: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return torch.tensor(len(labels) / (k * np.maximum(counts, 1)), dtype=torch.float32)
