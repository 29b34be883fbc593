"""Every command in the README parses with the real CLI, every image it shows exists, its Python runs."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from catmood import cli
from catmood.cli import build_parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def readme_commands() -> list[str]:
    commands = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.splitlines():
            line = line.split(" #")[0].strip()
            if re.match(r"^(catmood|torchrun)\b", line):
                commands.append(line)
    return commands


def test_the_readme_has_the_two_commands_and_many_examples():
    assert "make demo" in README and "make test" in README
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("command", readme_commands())
def test_each_readme_command_parses(command):
    words = shlex.split(command)
    if words[0] == "torchrun":
        words = ["catmood", *words[words.index("catmood") + 1:]]  # torchrun ... -m catmood ARGS
    if words[0].startswith("catmood-"):
        words = ["catmood", words[0].split("-", 1)[1], *words[1:]]
    assert words[0] == "catmood"
    try:
        args = build_parser().parse_args(words[1:])
    except SystemExit as exc:
        pytest.fail(f"README command does not parse ({exc.code}): {command}")
    typed = words[1:3] if words[1] == "data" else words[1:2]  # the command (and data's sub-command) typed
    parsed = [args.command, args.data_command] if args.command == "data" else [args.command]
    assert parsed == typed
    module = {"eval": "train", "predict": "run", "demo": "bench"}.get(typed[0], typed[0])  # cli/<module>.py
    assert args.func is getattr(getattr(cli, module), f"_cmd_{typed[-1]}"), f"{command} would run {args.func.__name__}"


def test_every_image_the_readme_shows_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(images) >= 5
    for image in images:
        assert (ROOT / image).is_file() and (ROOT / image).stat().st_size > 10_000, image


def test_the_python_example_runs(tmp_path, monkeypatch):
    (snippet,) = [body for lang, body in BLOCKS if lang == "python"]
    shutil.copy(ROOT / "tests" / "data" / "chelsea.png", tmp_path / "cat.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["x"].shape == (1, 3, 224, 224)
