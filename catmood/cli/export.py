"""`catmood export`."""

from __future__ import annotations

from pathlib import Path


def add(sub) -> None:
    from ..export.options import (CALIBRATION_METHODS, DEFAULT_OPSET, GATES, WEIGHT_ROUNDINGS, EngineOptions,
                                  Int8Options)

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
    export.add_argument("--weight-rounding", default=int8.weight_rounding, choices=WEIGHT_ROUNDINGS,
                        help="INT8: gptq rounds each layer's weights so that its outputs on the calibration images "
                             "move least; nearest is ONNX Runtime's own rounding (default %(default)s)")
    export.add_argument("--float-first", type=int, default=int8.float_first, metavar="N",
                        help="INT8: the first N convolutions or matrix products, which read the image, stay in "
                             "float (default %(default)s: all but the head in INT8); for models whose INT8 file "
                             "fails the gate")
    export.add_argument("--qat-epochs", type=int, default=int8.qat_epochs, metavar="N",
                        help="INT8: first fine-tune a copy for N epochs over the calibration images to give the "
                             "checkpoint's answers through simulated INT8 (default %(default)s: off); for models "
                             "whose INT8 file fails the gate")
    export.add_argument("--qat-lr", type=float, default=int8.qat_lr,
                        help="INT8: peak learning rate of that fine-tuning (default %(default)s)")
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
    from ..export.options import EngineOptions, Gate, Int8Options
    from ..export.pipeline import export_checkpoint
    from ..fileio import check_output

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
                                                        str(args.calib_dir) if args.calib_dir else None,
                                                        weight_rounding=args.weight_rounding,
                                                        float_first=args.float_first,
                                                        qat_epochs=args.qat_epochs, qat_lr=args.qat_lr),
                               max_images=args.max_images, triton=args.triton, latency=args.latency,
                               gates={"fp32": Gate(args.fp32_max_diff, args.fp32_agreement),
                                      "fp16": Gate(None, args.fp16_agreement),
                                      "int8": Gate(None, args.int8_agreement, args.int8_max_drop)})
    return 0 if report.passed else 1
