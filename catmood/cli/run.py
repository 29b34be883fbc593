"""`catmood run` and `catmood predict`: the runtime on a source, or on images each on its own."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path


def _add_model_flags(parser) -> None:
    """What `catmood run` and `catmood predict` share: the model, faces, per-image and record outputs."""
    from ..backends import BACKENDS
    from ..runtime.options import RuntimeOptions

    default = RuntimeOptions.default
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
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


def add(sub) -> None:
    from ..runtime.options import TOKEN_ENV, RuntimeOptions

    run = sub.add_parser("run", help="classify camera, video, stream or image frames in real time",
                         description="MODEL is a .onnx, an .engine (with its sidecar) or a checkpoint; its spec "
                                     "gives preprocessing and labels. Images (a file, folder or glob) are "
                                     "classified each on its own, as `catmood predict` does.")
    run.add_argument("model", type=Path)
    run.add_argument("--source", action="append", metavar="[NAME=]SOURCE",
                     help="camera index (0), video file, rtsp/http URL, GStreamer pipeline (with '!'), image, folder "
                          "or glob; give it several times for several cameras, each named NAME or cam0, cam1, ...")
    run.add_argument("--sources", type=Path, metavar="FILE",
                     help="one source per line ([NAME=]SOURCE, # comments); edits add and remove cameras while "
                          "the run goes on")
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
    run.add_argument("--max-frames", type=int, default=default("max_frames"), help="stop each source after N frames")
    run.add_argument("--give-up", type=float, default=default("give_up_s"),
                     help="seconds without a frame before a camera or stream is given up (default %(default)s)")
    run.add_argument("--batch-timeout", type=float, default=default("batch_timeout_ms"), metavar="MS",
                     help="longest wait for the other cameras' frames before a batch runs (default: a quarter "
                          "of the fastest camera's frame period, at most 20 ms)")
    run.add_argument("--serve", metavar="[HOST:]PORT", default=default("serve"),
                     help="live view in a browser: page, MJPEG, status, metrics (HOST defaults to 127.0.0.1; "
                          "0.0.0.0 for every interface)")
    run.add_argument("--serve-token", metavar="TOKEN", default=default("serve_token"),
                     help=f"viewers must send it (?token= or Authorization: Bearer); default: ${TOKEN_ENV}")
    run.add_argument("--serve-host", action="append", default=[], metavar="NAME",
                     help="a name the live view answers to besides IP addresses and localhost (e.g. a reverse "
                          "proxy's, or the box's own: catbox.lan); requests naming any other host get 421")
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
    from ..runtime.options import RuntimeOptions

    return RuntimeOptions(faces=args.faces, detector=args.detector, detector_class=args.detector_class,
                          threshold=args.threshold, out=args.out, events=args.events, csv=args.csv,
                          top_k=args.top_k, **more)


def _cmd_run(args) -> int:
    options = _runtime_options(args, alpha=args.smooth, hold_s=args.hold, detect_every=args.detect_every,
                               realtime=args.realtime, show=args.show, max_frames=args.max_frames,
                               serve=args.serve, serve_token=args.serve_token, serve_fps=args.serve_fps,
                               serve_hosts=tuple(args.serve_host),
                               give_up_s=args.give_up, batch_timeout_ms=args.batch_timeout)
    if not args.source and args.sources is None:
        from ..errors import CatmoodError

        raise CatmoodError("catmood run needs --source SOURCE (one or more) or --sources FILE")
    from ..runtime.sourcelist import parse_line

    source = args.source[0] if args.source and len(args.source) == 1 else (args.source or [])
    files = [parsed[1] for parsed in map(parse_line, args.source or []) if parsed]  # NAME=FILE names FILE
    return _run_source(args, options, source, files, args.sources)


def _cmd_predict(args) -> int:
    from ..runtime.predict import open_images

    options = _runtime_options(args)
    return _run_source(args, options, open_images(args.source), args.source)


@contextmanager
def _terminate_as_ctrl_c():
    """A service manager's stop (SIGTERM: systemd, `docker stop`) ends a run as Ctrl-C does, every output
    flushed and finished, instead of killing it with its videos and records half written."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; a caller on another one keeps its own
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_source(args, options, source, files: list[str], sources_file: Path | None = None) -> int:
    """Check the record outputs, run, write the summary; `source`: what --source says (one or a list), or a
    FrameSource; `files`: the sources as paths (no output may replace one); `sources_file`: --sources."""
    from ..fileio import atomic_write_json, check_output
    from ..runtime.pipeline import run_pipeline

    inputs = [args.model, args.model.with_name(args.model.name + ".json"), *files, sources_file,
              args.detector]  # and a sidecar
    for path, what, kind in ((args.events, "--events", "JSON lines file"), (args.csv, "--csv", "CSV file"),
                             (args.summary, "--summary", "JSON file")):
        if path:
            check_output(path, what, kind, inputs=inputs)
    with _terminate_as_ctrl_c():
        summary = run_pipeline(args.model, source, options, backend=args.backend, device=args.device,
                               sources_file=sources_file)
    if args.summary:
        atomic_write_json(args.summary, summary.to_dict())
    for name, path in (("images" if summary.kind == "images" else "videos" if len(summary.sources) > 1 else "video",
                        summary.out),
                       ("events", summary.events), ("csv", summary.csv)):
        if path:
            print(f"{name}: {path}")
    return 130 if summary.interrupted else 0
