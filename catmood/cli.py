"""`catmood <stage> ...` and the `catmood-<stage>` aliases. Thin: parse, call one library function, print.

Every error a user can act on (CatmoodError) is printed as `catmood: error: ...` without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import CatmoodError


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="inspect or synthesise datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="{inspect,synth}", required=True)

    inspect = data_sub.add_parser("inspect", help="show layout, classes, counts and every problem of a dataset")
    inspect.add_argument("path", type=Path, help="dataset folder (Roboflow export, _classes.csv, or class folders)")
    inspect.add_argument("--skip-bad", action="store_true",
                         help="judge trainability as training with --skip-bad would (bad files left out)")
    inspect.add_argument("--no-check", action="store_true", help="do not decode every image (faster, misses corrupt files)")
    inspect.add_argument("--seed", type=int, default=0, help="seed for splitting data that has no splits (default 0)")
    inspect.add_argument("--json", type=Path, metavar="FILE", help="also write the findings as JSON")
    inspect.add_argument("--preview", type=Path, metavar="PNG", help="also write a grid of images per class")
    inspect.set_defaults(func=_cmd_inspect)

    synth = data_sub.add_parser("synth", help="write a synthetic cat-face dataset (Roboflow folder layout)")
    synth.add_argument("out", type=Path, help="folder to create")
    synth.add_argument("--per-class", type=int, default=100, help="images per mood in all splits (default 100)")
    synth.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--moods", default=None, help="comma-separated subset of alarmed,angry,calm,pleased")
    synth.add_argument("--force", action="store_true", help="replace a synthetic dataset made with other settings")
    synth.set_defaults(func=_cmd_synth)


def _cmd_inspect(args) -> int:
    from .data.layouts import discover_dataset
    from .data.report import format_inspection, inspection_dict, write_preview
    from .fileio import atomic_write_json, check_output

    for path, what, kind in ((args.json, "--json", "JSON file"), (args.preview, "--preview", "image")):
        if path:
            check_output(path, what, kind, inputs=[args.path])
    index = discover_dataset(args.path, check_images=not args.no_check, seed=args.seed, progress=True)
    print(format_inspection(index, skip_bad=args.skip_bad))
    if args.json:
        atomic_write_json(args.json, inspection_dict(index, skip_bad=args.skip_bad))
        print(f"wrote {args.json}")
    if args.preview:
        print(f"wrote {write_preview(index, args.preview)}")
    return 0 if index.is_trainable(args.skip_bad) else 1


def _cmd_synth(args) -> int:
    from .data.layouts import discover_dataset
    from .data.report import format_inspection
    from .data.synth import DEFAULT_MOODS, synthesize_dataset

    from .fileio import check_output

    check_output(args.out, "OUT", "folder")
    moods = tuple(m.strip() for m in args.moods.split(",") if m.strip()) if args.moods else DEFAULT_MOODS
    synthesize_dataset(args.out, per_class=args.per_class, size=args.size, seed=args.seed, moods=moods,
                       force=args.force, progress=True)
    print(format_inspection(discover_dataset(args.out, check_images=False)))
    return 0


def _add_train(sub) -> None:
    from .training.config import (AUGMENTS, EVAL_BATCH_SIZE, EVAL_SPLIT, OPTIMIZERS, RECIPES, SCHEDULERS,
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
    train.add_argument("--class-weighted", action="store_const", const=True, help="weight the loss by inverse class frequency")
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


TRAIN_KEYS = ("data", "recipe", "model", "out", "weights", "pretrained", "cache_dir", "epochs", "batch_size", "lr",
              "weight_decay", "dropout", "label_smoothing", "grad_clip", "warmup_epochs", "input_size",
              "early_stopping", "seed", "workers", "eval_batch_size", "optimizer", "scheduler", "augment", "select",
              "class_weighted", "amp", "device", "skip_bad", "probe_epochs", "probe_lr", "probe_margin",
              "head_lr_scale", "first_layer_lr_scale", "ema_decay", "freeze_bn_stats", "weight_decay_all", "tta",
              "exist_ok")


def _cmd_train(args) -> int:
    from .training.config import resolve_config
    from .training.loop import train

    overrides = {key: getattr(args, key) for key in TRAIN_KEYS}
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
    from .fileio import atomic_write_json, check_output
    from .training.evaluate import evaluate_checkpoint, format_metrics

    if args.json:
        check_output(args.json, "--json", "JSON file", inputs=[args.checkpoint, args.data])

    metrics = evaluate_checkpoint(args.checkpoint, args.data, args.split, batch_size=args.batch_size,
                                  device=args.device, skip_bad=args.skip_bad, progress=True)
    print(format_metrics(metrics, f"{args.split}"))
    if args.json:
        atomic_write_json(args.json, metrics)
        print(f"wrote {args.json}")
    return 0


def _add_export(sub) -> None:
    from .export.options import CALIBRATION_METHODS, DEFAULT_OPSET, GATES, EngineOptions, Int8Options

    export = sub.add_parser("export", help="export a checkpoint to ONNX / FP16 / INT8 ONNX / TensorRT, gated by parity",
                            description="With no format flag: --onnx --fp16. Exits 1 when an artifact fails its "
                                        "parity gate (or --trt cannot run here), after writing the report.")
    export.add_argument("checkpoint", type=Path, help="best.pt (or a run folder)")
    export.add_argument("--out", type=Path, help="output folder (default: RUN/export)")
    export.add_argument("--onnx", action="store_true", help="ONNX, FP32")
    export.add_argument("--fp16", action="store_true", help="ONNX, FP16 weights, FP32 inputs/outputs")
    export.add_argument("--int8", action="store_true",
                        help="ONNX, INT8 (Q/DQ), calibrated on training images; with --trt: an INT8 engine")
    export.add_argument("--trt", action="store_true",
                        help="TensorRT engine, FP16 (INT8 with --int8; both with --fp16 --int8); needs tensorrt, a GPU")
    export.add_argument("--input", dest="input_dtype", default="float32", choices=("float32", "uint8"),
                        help="graph input: normalised float NCHW, or raw uint8 BGR NHWC frames")
    export.add_argument("--probs", action="store_true", help="add a 'probs' output (fused softmax)")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    engine = EngineOptions()
    export.add_argument("--batch", default=engine.batch, help="TensorRT profile MIN,OPT,MAX batch (and Triton max)")
    export.add_argument("--workspace", type=float, default=engine.workspace_gb, help="TensorRT workspace limit in GB")
    export.add_argument("--version-compatible", action="store_true",
                        help="TensorRT engine that later releases of the same major version can run")
    export.add_argument("--hardware-compatible", action="store_true",
                        help="TensorRT engine that runs on any Ampere or newer GPU (somewhat slower)")
    export.add_argument("--images", type=Path, help="parity images (default: the checkpoint's validation split)")
    export.add_argument("--max-images", type=int, default=200)
    export.add_argument("--triton", type=Path, metavar="DIR", help="also write a Triton model repository")
    int8 = Int8Options()
    export.add_argument("--calib-images", type=int, default=int8.calib_images,
                        help="INT8: calibrate on up to N training images (default %(default)s)")
    export.add_argument("--calib-method", default=int8.calib_method, choices=CALIBRATION_METHODS,
                        help="INT8: how activation ranges are chosen (default %(default)s)")
    export.add_argument("--calib-dir", type=Path, metavar="DIR",
                        help="INT8: calibration images (default: the checkpoint's training split)")
    export.add_argument("--fp32-max-diff", type=float, default=GATES["fp32"].max_logit_diff,
                        help="FP32 gate: max |logit diff|")
    export.add_argument("--fp32-agreement", type=float, default=GATES["fp32"].min_agreement,
                        help="FP32 gate: min top-1 agreement")
    export.add_argument("--fp16-agreement", type=float, default=GATES["fp16"].min_agreement,
                        help="FP16 gate: min top-1 agreement")
    export.add_argument("--int8-agreement", type=float, default=GATES["int8"].min_agreement,
                        help="INT8 gate: min top-1 agreement")
    export.add_argument("--int8-max-drop", type=float, default=GATES["int8"].max_accuracy_drop,
                        help="INT8 gate: max top-1 accuracy drop vs PyTorch on labelled images (0.01: 1 point)")
    export.add_argument("--no-latency", dest="latency", action="store_false", help="skip the latency column")
    export.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from .export.options import EngineOptions, Gate, Int8Options
    from .export.pipeline import export_checkpoint
    from .fileio import check_output

    for path, what in ((args.out, "--out"), (args.triton, "--triton")):
        if path:
            check_output(path, what, "folder", inputs=[args.checkpoint, args.images, args.calib_dir])

    formats = dict(onnx=args.onnx, fp16=args.fp16, int8=args.int8, trt=args.trt)
    if not any(formats.values()):
        formats.update(onnx=True, fp16=True)
    report = export_checkpoint(args.checkpoint, args.out, **formats, input_dtype=args.input_dtype, probs=args.probs,
                               opset=args.opset, images=args.images,
                               engine=EngineOptions(args.batch, args.workspace, args.version_compatible,
                                                    args.hardware_compatible),
                               int8_options=Int8Options(args.calib_images, args.calib_method,
                                                        str(args.calib_dir) if args.calib_dir else None),
                               max_images=args.max_images, triton=args.triton, latency=args.latency,
                               gates={"fp32": Gate(args.fp32_max_diff, args.fp32_agreement),
                                      "fp16": Gate(None, args.fp16_agreement),
                                      "int8": Gate(None, args.int8_agreement, args.int8_max_drop)})
    return 0 if report.passed else 1


def _add_model_flags(parser) -> None:
    """What `catmood run` and `catmood predict` share: the model, faces, per-image and record outputs."""
    from .runtime.options import RuntimeOptions

    default = RuntimeOptions.default
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--faces", action="store_true", help="classify each detected cat face (Haar cascades)")
    parser.add_argument("--detector", metavar="ONNX", help="find the cats with this ONNX object detector (YOLOv8-"
                                                           "style or torchvision-style outputs); implies --faces")
    parser.add_argument("--detector-class", type=int, default=default("detector_class"),
                        help="the detector's cat class id: 15 for COCO-80 (YOLO), 17 for COCO-91 (torchvision) "
                             "(default %(default)s)")
    parser.add_argument("--events", help="write one JSON line per frame (per image, with its file)")
    parser.add_argument("--csv", help="write one CSV row per frame or image (per face with faces)")
    parser.add_argument("--top-k", type=int, default=default("top_k"),
                        help="classes on each image's printed line (default %(default)s)")
    parser.add_argument("--threshold", type=float, default=default("threshold"),
                        help="below this confidence: 'uncertain' (default %(default)s)")
    parser.add_argument("--summary", type=Path, metavar="JSON", help="also write the run summary as JSON")


def _add_run(sub) -> None:
    from .runtime.options import TOKEN_ENV, RuntimeOptions

    run = sub.add_parser("run", help="classify camera, video, stream or image frames in real time",
                         description="MODEL is a .onnx, an .engine (with its sidecar) or a checkpoint; its spec "
                                     "gives preprocessing and labels. Images (a file, folder or glob) are "
                                     "classified each on its own, as `catmood predict` does.")
    run.add_argument("model", type=Path)
    run.add_argument("--source", required=True, help="camera index (0), video file, rtsp/http URL, image, folder "
                                                     "or glob")
    _add_model_flags(run)
    run.add_argument("--out", help="write the annotated video (mp4v); for images: a folder of annotated copies")
    run.add_argument("--show", action="store_true", help="show a window when a display exists (q quits)")
    run.add_argument("--realtime", action="store_true", help="files: pace at native fps, drop late frames")
    default = RuntimeOptions.default
    run.add_argument("--smooth", type=float, default=default("alpha"),
                     help="EMA weight of the newest frame, 1: no smoothing (default %(default)s)")
    run.add_argument("--hold", type=float, default=default("hold_s"),
                     help="seconds a new label must lead before it shows (default %(default)s)")
    run.add_argument("--detect-every", type=int, default=default("detect_every"),
                     help="run the face detector every N frames (default %(default)s)")
    run.add_argument("--max-frames", type=int, default=default("max_frames"), help="stop after N frames")
    run.add_argument("--serve", metavar="[HOST:]PORT", default=default("serve"),
                     help="live view in a browser: page, MJPEG, status, metrics (HOST defaults to 127.0.0.1; "
                          "0.0.0.0 for every interface)")
    run.add_argument("--serve-token", metavar="TOKEN", default=default("serve_token"),
                     help=f"viewers must send it (?token= or Authorization: Bearer); default: ${TOKEN_ENV}")
    run.add_argument("--serve-fps", type=float, default=default("serve_fps"),
                     help="live view frame rate cap (default %(default)s)")
    run.set_defaults(func=_cmd_run)

    predict = sub.add_parser("predict", help="classify images: a line, a CSV/JSON row, an annotated copy each",
                             description="Each image of SOURCE (an image, a folder, or a quoted glob) is classified "
                                         "on its own; unreadable files are named with the reason and skipped.")
    predict.add_argument("model", type=Path)
    predict.add_argument("source", nargs="+", help="images, folders (searched recursively) or quoted globs")
    _add_model_flags(predict)
    predict.add_argument("--out", help="folder for annotated copies under the images' own names (one image: "
                                       "may be an image file name)")
    predict.set_defaults(func=_cmd_predict)


def _runtime_options(args, **more):
    from .runtime.options import RuntimeOptions

    return RuntimeOptions(faces=args.faces, detector=args.detector, detector_class=args.detector_class,
                          threshold=args.threshold, out=args.out, events=args.events, csv=args.csv,
                          top_k=args.top_k, **more)


def _cmd_run(args) -> int:
    options = _runtime_options(args, alpha=args.smooth, hold_s=args.hold, detect_every=args.detect_every,
                               realtime=args.realtime, show=args.show, max_frames=args.max_frames,
                               serve=args.serve, serve_token=args.serve_token, serve_fps=args.serve_fps)
    return _run_source(args, options, args.source)


def _cmd_predict(args) -> int:
    from .runtime.predict import open_images

    options = _runtime_options(args)
    return _run_source(args, options, open_images(args.source))


def _run_source(args, options, source) -> int:
    """Check the record outputs, run, write the summary; `source`: what --source says, or a FrameSource."""
    from .fileio import atomic_write_json, check_output
    from .runtime.pipeline import run_pipeline

    sources = [args.source] if isinstance(args.source, str) else args.source
    inputs = [args.model, args.model.with_name(args.model.name + ".json"), *sources, args.detector]  # and a sidecar
    for path, what, kind in ((args.events, "--events", "JSON lines file"), (args.csv, "--csv", "CSV file"),
                             (args.summary, "--summary", "JSON file")):
        if path:
            check_output(path, what, kind, inputs=inputs)
    summary = run_pipeline(args.model, source, options, backend=args.backend, device=args.device)
    if args.summary:
        atomic_write_json(args.summary, summary.to_dict())
    for name, path in (("images" if summary.kind == "images" else "video", summary.out),
                       ("events", summary.events), ("csv", summary.csv)):
        if path:
            print(f"{name}: {path}")
    return 130 if summary.interrupted else 0


def _add_bench(sub) -> None:
    from .bench.options import BenchOptions

    default = BenchOptions()
    bench = sub.add_parser("bench", help="latency and throughput per backend and batch, end-to-end fps, accuracy",
                           description="Every backend this machine has for each MODEL (.pt, .onnx, .engine): "
                                       "warm-up, synchronisation, every iteration timed, p50/p90/p99.")
    bench.add_argument("models", nargs="+", type=Path, metavar="MODEL")
    bench.add_argument("--batch", default=",".join(map(str, default.batches)), help="batch sizes, e.g. 1,8,32")
    bench.add_argument("--iterations", type=int, default=default.iterations,
                       help="timed iterations per measurement, at most (default %(default)s)")
    bench.add_argument("--max-seconds", type=float, default=default.max_seconds,
                       help="time budget per measurement (default %(default)s)")
    bench.add_argument("--warmup", type=int, default=default.warmup, help="untimed runs first (default %(default)s)")
    bench.add_argument("--device", default=default.device, choices=("auto", "cpu"))
    bench.add_argument("--video", help="also run the real pipeline on this source (end-to-end fps)")
    bench.add_argument("--max-frames", type=int, default=default.max_frames, help="frames of --video to run")
    bench.add_argument("--data", help="also report top-1 accuracy per format on this dataset's valid split")
    bench.add_argument("--compile", action="store_true", help="on CUDA also time torch.compile (slow to start)")
    bench.add_argument("--out", type=Path, default=Path("bench"), help="folder for bench.json/.md/.png")
    bench.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from .bench import BenchOptions, benchmark, write_report
    from .export.options import parse_batch_sizes
    from .fileio import check_output

    check_output(args.out, "--out", "folder", inputs=[*args.models, args.video, args.data])

    options = BenchOptions(parse_batch_sizes(args.batch), args.warmup, args.iterations, args.max_seconds,
                           args.device, args.max_frames, args.compile)
    report = benchmark(args.models, options, video=args.video, data=args.data)
    print("")
    print(report.table())
    paths = write_report(report, args.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="run the whole product on synthetic data, offline")
    demo.add_argument("--out", type=Path, default=Path("demo"), help="output folder (default ./demo)")
    demo.add_argument("--force", action="store_true", help="redo every step instead of reusing what is there")
    demo.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="catmood", description="Cat-mood classification from training to "
                                     "real-time deployment.")
    parser.add_argument("--version", action="version", version=f"catmood {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data(sub)
    _add_train(sub)
    _add_export(sub)
    _add_run(sub)
    _add_bench(sub)
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenCV's and FFmpeg's own log lines ("moov atom not found") would come before catmood's clear message.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CatmoodError as exc:
        print(f"catmood: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("catmood: interrupted", file=sys.stderr)
        return 130


def _alias(command: str) -> int:
    """`catmood-<command> ARGS` is `catmood <command> ARGS`."""
    parser = build_parser()
    stages = parser._subparsers._group_actions[0].choices  # the registered sub-commands
    if command not in stages:
        print(f"catmood: error: `catmood {command}` is not part of this catmood version yet", file=sys.stderr)
        return 2
    return main([command, *sys.argv[1:]])


def train_main() -> int:
    return _alias("train")


def export_main() -> int:
    return _alias("export")


def run_main() -> int:
    return _alias("run")


def predict_main() -> int:
    return _alias("predict")


def bench_main() -> int:
    return _alias("bench")
