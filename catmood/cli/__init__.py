"""`catmood <stage> ...` and the `catmood-<stage>` aliases. Thin: parse, call one library function, print.

Every error a user can act on (CatmoodError) is printed as `catmood: error: ...` without a traceback. Each
stage's flags and handler live in the module of its name.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import CatmoodError
from . import bench, data, export, run, train


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="catmood", description="Cat-mood classification from training to "
                                     "real-time deployment.")
    parser.add_argument("--version", action="version", version=f"catmood {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for stage in (data, train, export, run, bench):
        stage.add(sub)
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
