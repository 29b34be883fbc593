"""Run folders: auto-numbered by default, never trained over without --exist-ok, one writer at a time (a dead
writer's lock is taken over), a finished run is not resumed, and Ctrl-C before anything trained says so."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import catmood
from catmood import cli
from catmood.errors import CatmoodError
from catmood.fileio import pid_alive
from catmood.training import probe as probe_module
from catmood.training import setup as training_setup
from catmood.training.rundir import LOCK_NAME, claim_run_dir

TINY = ["--model", "test_resnet", "--no-pretrained", "--epochs", "1", "--batch-size", "8", "--workers", "0",
        "--input-size", "48"]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def one_error_line(capsys, code: int) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("catmood: error: "), captured.err
    return lines[0]


def test_default_run_folders_are_numbered_and_claimed_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = claim_run_dir(None, "timm:test_resnet")
    second = claim_run_dir(None, "timm:test_resnet")  # the first is locked: a concurrent run takes the next
    assert (first.folder, second.folder) == (Path("runs/test_resnet"), Path("runs/test_resnet-2"))
    assert (first.folder / LOCK_NAME).read_text().strip() == str(os.getpid())
    (first.folder / "best.pt").write_bytes(b"x")
    first.release()
    second.release()  # never written to: removed again, so the next run takes its number
    assert not (first.folder / LOCK_NAME).exists() and not second.folder.exists()
    third = claim_run_dir(None, "timm:test_resnet")
    assert third.folder == Path("runs/test_resnet-2")
    third.release()
    monkeypatch.chdir(tmp_path / "runs" / "test_resnet")
    Path("runs").write_text("a file where run folders go")
    with pytest.raises(CatmoodError, match="runs: runs/ \\(where runs go without --out\\) must be a folder"):
        claim_run_dir(None, "resnet18")


def test_a_folder_holding_a_run_is_refused_unless_exist_ok(models, shapes_data, tmp_path, capsys):
    run = models[0].parent  # a finished run
    before = digests(run)
    message = one_error_line(capsys, cli.main(["train", "--data", str(shapes_data), *TINY, "--out", str(run)]))
    assert f"{run}: holds a finished training run (best.pt, last.pt, metrics.json)" in message
    assert "--exist-ok" in message
    # --exist-ok gets past the run folder: what stops it here is the missing dataset, after the claim.
    message = one_error_line(capsys, cli.main(["train", "--data", str(tmp_path / "none"), *TINY, "--out", str(run),
                                               "--exist-ok"]))
    assert "dataset folder not found" in message
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "last.pt").write_bytes((run / "last.pt").read_bytes())
    message = one_error_line(capsys, cli.main(["train", "--data", str(shapes_data), *TINY, "--out", str(unfinished)]))
    assert f"unfinished training run (last.pt); continue it with `catmood train --resume {unfinished}`" in message
    assert digests(run) == before and not (run / LOCK_NAME).exists()
    inside = shapes_data / "train" / "runs"
    message = one_error_line(capsys, cli.main(["train", "--data", str(shapes_data), *TINY, "--out", str(inside)]))
    assert "--out is inside the dataset" in message and not inside.exists()


def test_a_finished_run_is_not_resumed_and_config_with_resume_is_refused(models, capsys):
    run = models[0].parent
    before = digests(run)
    message = one_error_line(capsys, cli.main(["train", "--resume", str(run)]))
    assert f"{run}: this run is finished (trained 3 of 3 epochs, then evaluated); nothing to resume" in message
    assert "start a new run with more --epochs" in message
    from catmood.training.config import TrainConfig
    from catmood.training.loop import train

    with pytest.raises(CatmoodError, match="a resumed run continues with its own saved config"):
        train(TrainConfig(data="x"), resume=run, progress=False, echo=lambda *a: None)
    assert digests(run) == before


def test_a_config_file_inside_out_is_not_replaced(shapes_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("epochs: 1\n")
    message = one_error_line(capsys, cli.main(["train", "--data", str(shapes_data), *TINY, "--out", str(out),
                                               "--config", str(out / "config.yaml")]))
    assert "would replace this --config" in message and (out / "config.yaml").read_text() == "epochs: 1\n"


HOLDER = r'''
import sys, time
from catmood import cli
from catmood.training import setup
setup.discover_dataset = lambda *a, **k: time.sleep(600)  # a long training, holding its run folder
cli.main(["train", "--data", sys.argv[1], "--model", "test_resnet", "--no-pretrained", "--out", sys.argv[2]])
'''


def test_two_trainings_into_one_folder_and_a_dead_writers_lock(shapes_data, tmp_path, capsys):
    out = tmp_path / "run"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(catmood.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen([sys.executable, str(script), str(shapes_data), str(out)], env=env)
    try:
        deadline = time.time() + 120
        while not ((out / LOCK_NAME).is_file() and (out / LOCK_NAME).read_text().strip() == str(first.pid)):
            assert time.time() < deadline and first.poll() is None, "the first training never took its lock"
            time.sleep(0.2)
        message = one_error_line(capsys, cli.main(["train", "--data", str(shapes_data), *TINY, "--out", str(out)]))
        assert f"{out}: another catmood train (pid {first.pid}) is writing this run folder" in message
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (out / LOCK_NAME).read_text().strip() == str(first.pid) and not pid_alive(first.pid)  # left behind
    # The dead writer's lock is taken over: what stops this one is the missing dataset, after the claim.
    message = one_error_line(capsys, cli.main(["train", "--data", str(tmp_path / "none"), *TINY, "--out", str(out)]))
    assert "dataset folder not found" in message and not (out / LOCK_NAME).exists()


def test_the_pid_file_lock_where_there_is_no_flock(tmp_path, monkeypatch):
    from catmood.training import rundir

    monkeypatch.setattr(rundir, "fcntl", None)
    held = claim_run_dir(tmp_path / "run", "m")
    with pytest.raises(CatmoodError, match=f"another catmood train \\(pid {os.getpid()}\\)"):
        claim_run_dir(tmp_path / "run", "m")
    held.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).write_text(dead.stdout)
    taken = claim_run_dir(tmp_path / "run", "m")
    assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
    taken.release()


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("recipe, patched, says", [
    ("linear-probe", (training_setup, "compute_features"), "interrupted while caching features"),
    ("finetune", (probe_module, "compute_features"), "interrupted before the probe stage finished")])
def test_ctrl_c_before_anything_trained_says_so_and_writes_no_checkpoint(shapes_data, tmp_path, monkeypatch,
                                                                        capsys, recipe, patched, says):
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "runs" / "test_resnet"
    earlier.mkdir(parents=True)
    (earlier / "best.pt").write_bytes(b"an earlier run")
    monkeypatch.setattr(*patched, interrupt)
    code = cli.main(["train", "--data", str(shapes_data), *TINY, "--recipe", recipe])
    out = capsys.readouterr().out
    assert code == 130 and f"{says}: nothing was trained, so no checkpoint was written" in out
    run = tmp_path / "runs" / "test_resnet-2"  # the default folder after the taken one
    assert f"run folder: {Path('runs/test_resnet-2')}" in out
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    assert (earlier / "best.pt").read_bytes() == b"an earlier run"
