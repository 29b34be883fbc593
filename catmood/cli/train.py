"""`catmood train` and `catmood eval`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import CatmoodError


def add(sub) -> None:
    from ..training.config import (AUGMENTS, EVAL_BATCH_SIZE, EVAL_SPLIT, OPTIMIZERS, RECIPES, SCHEDULERS,
                                  SELECT_METRICS, SPLITS)

    train = sub.add_parser("train", help="train a classifier on a dataset (transfer learning)",
                           description="Recipe preset, then --config YAML, then these flags; the resolved "
                                       "config is saved in the run folder.")
    train.add_argument("--data", help="dataset folder (any layout `catmood data inspect` reads)")
    train.add_argument("--recipe", help=f"{', '.join(RECIPES)} (default {next(iter(RECIPES))})")
    train.add_argument("--config", type=Path, metavar="YAML", help="settings file (keys as the flags, with _)")
    train.add_argument("--model", help="timm or torchvision architecture, e.g. resnet18, convnext_large, "
                                       "tf_efficientnet_lite0, vit_b_16")
    train.add_argument("--out", help="run folder (default runs/<model>, then runs/<model>-2, ...)")
    train.add_argument("--exist-ok", dest="exist_ok", action="store_const", const=True,
                       help="train into an --out that holds a run already, replacing its files")
    train.add_argument("--resume", type=Path, metavar="RUN", help="continue an interrupted run (its folder or last.pt)")
    train.add_argument("--weights", help="local ImageNet weights file (state dict or safetensors), for offline use")
    train.add_argument("--no-pretrained", dest="pretrained", action="store_const", const=False,
                       help="random initialisation instead of ImageNet weights")
    train.add_argument("--cache-dir", help="where downloaded weights are cached")
    for flag, kind, text in (("--epochs", int, "epochs"), ("--batch-size", int, "images per step"),
                             ("--lr", float, "learning rate"), ("--weight-decay", float, "weight decay"),
                             ("--dropout", float, "dropout before the head"),
                             ("--label-smoothing", float, "label smoothing"),
                             ("--grad-clip", float, "max gradient norm (0: off)"),
                             ("--warmup-epochs", int, "linear warm-up epochs"),
                             ("--probe-epochs", int, "epochs of the head alone on cached features before "
                                                     "fine-tuning (0: none)"),
                             ("--probe-lr", float, "learning rate of that probe stage"),
                             ("--probe-margin", float, "fine-tuning replaces the probe only when better on "
                                                       "validation by this much"),
                             ("--head-lr-scale", float, "head lr / backbone lr while fine-tuning"),
                             ("--first-layer-lr-scale", float, "the backbone's first layer learns at lr x this "
                                                               "(layer-wise decay; 1: off)"),
                             ("--ema-decay", float, "moving average of the weights, evaluated (0: off)"),
                             ("--input-size", int, "input side in pixels (default: the backbone's)"),
                             ("--early-stopping", int, "stop after N epochs without improvement (0: never)"),
                             ("--seed", int, "random seed"), ("--workers", int, "data loader workers"),
                             ("--eval-batch-size", int, "batch size for validation and feature caching")):
        train.add_argument(flag, type=kind, help=text)
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--scheduler", choices=SCHEDULERS)
    train.add_argument("--augment", choices=AUGMENTS, help="auto: light for greyscale or small images")
    train.add_argument("--select", choices=SELECT_METRICS, help="metric that picks the best epoch")
    for flag, key, text in (("--freeze-bn-stats", "freeze_bn_stats", "BatchNorm keeps its ImageNet statistics"),
                            ("--weight-decay-all", "weight_decay_all", "weight decay on norms and biases too"),
                            ("--tta", "tta", "evaluate on each image and its mirror image")):
        train.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, help=text)
    train.add_argument("--class-weighted", action="store_const", const=True,
                       help="weight the loss by inverse class frequency")
    train.add_argument("--no-amp", dest="amp", action="store_const", const=False, help="no mixed precision on CUDA")
    train.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    train.add_argument("--skip-bad", action="store_const", const=True, help="leave out bad files instead of refusing")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    evaluate.add_argument("checkpoint", type=Path, help="best.pt, last.pt or a run folder")
    evaluate.add_argument("--data", help="dataset (default: the one recorded in the checkpoint)")
    evaluate.add_argument("--split", default=EVAL_SPLIT, choices=SPLITS, help="(default %(default)s)")
    evaluate.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE, help="(default %(default)s)")
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    evaluate.add_argument("--skip-bad", action="store_true", help="leave out bad files instead of refusing")
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="also write the metrics as JSON")
    evaluate.set_defaults(func=_cmd_eval)


def _cmd_train(args) -> int:
    from dataclasses import fields

    from ..training.config import TrainConfig, resolve_config
    from ..training.loop import train

    # Every flag's dest is the name of the TrainConfig field it sets; None: not given.
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if args.resume:
        given = sorted(k for k, v in overrides.items() if v is not None)
        if given or args.config:
            raise CatmoodError(f"--resume continues a run with its saved config; drop {', '.join(given) or '--config'}")
        result = train(None, resume=args.resume)
    else:
        written = Path(args.out or ".") / "config.yaml"  # the run writes its resolved config there
        if args.config and args.out and written.is_file() and args.config.is_file() and os.path.samefile(
                written, args.config):
            raise CatmoodError(f"{args.config}: the run would replace this --config with its resolved config; "
                               "copy it out of --out first")
        result = train(resolve_config(args.recipe, args.config, overrides))
    return 130 if result.interrupted else 0


def _cmd_eval(args) -> int:
    from ..fileio import atomic_write_json, check_output
    from ..training.evaluate import evaluate_checkpoint, format_metrics

    if args.json:
        check_output(args.json, "--json", "JSON file", inputs=[args.checkpoint, args.data])

    metrics = evaluate_checkpoint(args.checkpoint, args.data, args.split, batch_size=args.batch_size,
                                  device=args.device, skip_bad=args.skip_bad, progress=True)
    print(format_metrics(metrics, f"{args.split}"))
    if args.json:
        atomic_write_json(args.json, metrics)
        print(f"wrote {args.json}")
    return 0
