"""The commands as a user types them: exit codes, what is printed, one-line errors without tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import make_folder_dataset

BIN = Path(sys.executable).parent


def run(*args, script="catmood"):
    exe = BIN / script
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "catmood", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_console_scripts_are_installed():
    for name in ("catmood", "catmood-train", "catmood-export", "catmood-run", "catmood-bench"):
        assert (BIN / name).exists(), f"{name} missing: reinstall with pip install -e ."


def test_synth_then_inspect(tmp_path):
    out = tmp_path / "cats"
    made = run("data", "synth", str(out), "--per-class", "6", "--size", "64", "--seed", "2")
    assert made.returncode == 0, made.stderr
    assert "alarmed" in made.stdout and "verdict: ready to train" in made.stdout
    seen = run("data", "inspect", str(out), "--json", str(tmp_path / "r.json"), "--preview", str(tmp_path / "p.png"))
    assert seen.returncode == 0, seen.stderr
    assert "layout   roboflow-folders (every image decoded)" in seen.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["class_names"] == ["alarmed", "angry", "calm", "pleased"]
    assert report["counts"]["train"] == [4, 4, 4, 4] and report["trainable"] is True
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_inspect_broken_dataset_lists_each_problem_and_fails(tmp_path):
    make_folder_dataset(tmp_path / "d", {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    (tmp_path / "d/train/a/zero.jpg").write_bytes(b"")
    (tmp_path / "d/train/b/bad.png").write_bytes(b"nope")
    result = run("data", "inspect", str(tmp_path / "d"))
    assert result.returncode == 1
    assert "  error   train/a/zero.jpg: empty file (0 bytes)" in result.stdout
    assert "  error   train/b/bad.png: not a readable image (corrupt or unknown format)" in result.stdout
    assert "problems: 0 fatal, 2 error(s), 0 warning(s)" in result.stdout
    assert "verdict: NOT ready" in result.stdout
    skipping = run("data", "inspect", str(tmp_path / "d"), "--skip-bad")
    assert skipping.returncode == 0 and "ready to train with --skip-bad" in skipping.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    result = run("data", "inspect", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"catmood: error: {tmp_path / 'missing'}: dataset folder not found"
    result = run("data", "synth", str(tmp_path / "x"), "--per-class", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--per-class must be at least 3" in result.stderr


def test_aliases_dispatch_to_the_sub_command(tmp_path, monkeypatch, capsys):
    from catmood import cli

    make_folder_dataset(tmp_path / "d", {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    monkeypatch.setattr(sys, "argv", ["catmood-data", "inspect", str(tmp_path / "d"), "--no-check"])
    assert cli._alias("data") == 0
    assert "verdict: ready to train" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["catmood-nothing"])
    assert cli._alias("nothing") == 2
    assert "`catmood nothing` is not part of this catmood version yet" in capsys.readouterr().err


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "catmood", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("catmood ")
