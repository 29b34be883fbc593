"""`catmood data inspect|synth`."""

from __future__ import annotations

from pathlib import Path


def add(sub) -> None:
    data = sub.add_parser("data", help="inspect or synthesise datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="{inspect,synth}", required=True)

    inspect = data_sub.add_parser("inspect", help="show layout, classes, counts and every problem of a dataset")
    inspect.add_argument("path", type=Path, help="dataset folder (Roboflow export, _classes.csv, or class folders)")
    inspect.add_argument("--skip-bad", action="store_true",
                         help="judge trainability as training with --skip-bad would (bad files left out)")
    inspect.add_argument("--no-check", action="store_true",
                         help="do not decode every image (faster, misses corrupt files)")
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
    from ..data.layouts import discover_dataset
    from ..data.report import format_inspection, inspection_dict, write_preview
    from ..fileio import atomic_write_json, check_output

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
    from ..data.layouts import discover_dataset
    from ..data.report import format_inspection
    from ..data.synth import DEFAULT_MOODS, synthesize_dataset

    from ..fileio import check_output

    check_output(args.out, "OUT", "folder")
    moods = tuple(m.strip() for m in args.moods.split(",") if m.strip()) if args.moods else DEFAULT_MOODS
    synthesize_dataset(args.out, per_class=args.per_class, size=args.size, seed=args.seed, moods=moods,
                       force=args.force, progress=True)
    print(format_inspection(discover_dataset(args.out, check_images=False)))
    return 0
