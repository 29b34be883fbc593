"""The probe stage of LP-FT: the head alone, trained on the backbone's cached features of the training images
(the linear-probe recipe's way, with its steps), before any backbone weight moves."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..data.torch_dataset import ImageDataset, make_loader
from ..data.transforms import EvalTransform
from .config import TrainConfig
from .optim import make_scheduler
from .steps import compute_features, seed_epoch, train_one_epoch

# Probe epochs draw seeds of their own, apart from those of the fine-tuning epochs that follow.
PROBE_SEED_OFFSET = 1_000_000


@dataclass
class ProbeOutcome:
    train_loss: float
    train_accuracy: float
    seconds: float
    features_per_s: float


def fit_probe(model, spec, train_samples, config: TrainConfig, criterion, device: torch.device, workers: int,
              progress: bool) -> ProbeOutcome:
    """Train `model.head` for config.probe_epochs (Adam at probe_lr, cosine to zero); the head keeps its final
    state. Its last epochs move it little, so no epoch is picked on validation here: the loop validates the
    probe once, as it validates every fine-tuning epoch, and keeps it if nothing later beats it."""
    started = time.perf_counter()
    features, labels = compute_features(model.backbone, ImageDataset(train_samples, EvalTransform(spec)), device,
                                        config.eval_batch_size, workers, progress, "probe: caching train features")
    dataset = torch.utils.data.TensorDataset(features, labels)
    generator = torch.Generator()
    loader = make_loader(dataset, config.batch_size, 0, shuffle=True, generator=generator,
                         drop_last=len(dataset) > config.batch_size)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=config.probe_lr)
    scheduler = make_scheduler(optimizer, config.probe_epochs, len(loader), 0, "cosine")
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    stats = None
    for epoch in range(config.probe_epochs):
        generator.manual_seed(seed_epoch(config.seed, PROBE_SEED_OFFSET + epoch))
        model.head.train()
        stats = train_one_epoch(model.head, loader, optimizer, scheduler, scaler, criterion, device=device,
                                amp=None, grad_clip=0.0, clip_params=())
    seconds = time.perf_counter() - started
    seen = max(stats.seen, 1)
    return ProbeOutcome(stats.loss_sum / seen, stats.correct / seen, seconds,
                        stats.seen * config.probe_epochs / max(seconds, 1e-9))
