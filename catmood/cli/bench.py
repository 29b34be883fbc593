"""`catmood bench` and `catmood demo`."""

from __future__ import annotations

from pathlib import Path


def add(sub) -> None:
    _add_bench(sub)
    _add_demo(sub)


def _add_bench(sub) -> None:
    from ..bench.options import BenchOptions

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
    from ..bench import BenchOptions, benchmark, write_report
    from ..export.options import parse_batch_sizes
    from ..fileio import check_output

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
    from ..demo import run_demo

    run_demo(args.out, force=args.force)
    return 0
