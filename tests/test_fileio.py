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
