import os
import stat

import pytest

from catmood.fileio import atomic_path, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text().strip() == '{\n  "a": 2\n}'
    assert os.listdir(target.parent) == ["report.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "good" and os.listdir(tmp_path) == ["model.pt"]


def test_temp_keeps_suffix_and_result_keeps_normal_permissions(tmp_path):
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".plot.png.")
        tmp.write_bytes(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_temporaries_of_a_dead_process_are_removed_on_the_next_write(tmp_path):
    import subprocess
    import sys

    from catmood.fileio import atomic_write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".last.pt.{dead_pid}-0123abcd.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / f".last.pt.{os.getpid()}-89abcdef.tmp.pt"  # a live writer's: not touched
    mine.write_bytes(b"being written")
    other = tmp_path / f".best.pt.{dead_pid}-0123abcd.tmp.pt"  # another target's: its own write cleans it
    other.write_bytes(b"x")
    atomic_write_text(tmp_path / "last.pt", "new")
    assert not stale.exists() and mine.exists() and other.exists()
    assert (tmp_path / "last.pt").read_text() == "new"
