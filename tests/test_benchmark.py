"""Benchmarks: the statistics on known samples, a short run producing every report field, clear errors."""

import json

import pytest

from catmood import cli
from catmood.checkpoint import load_checkpoint
from catmood.errors import CatmoodError
from catmood.runtime.benchmark import benchmark, parse_batches, write_report
from catmood.timing import latency_stats, time_it

from conftest import write_video


def test_statistics_on_known_samples():
    stats = latency_stats(list(range(1, 101)), batch=8)  # 1..100 ms
    assert stats.n == 100 and stats.mean_ms == pytest.approx(50.5) and stats.min_ms == 1
    assert stats.p50_ms == pytest.approx(50.5) and stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.images_per_s == pytest.approx(8 * 1000 / 50.5)
    with pytest.raises(CatmoodError, match="no timing samples"):
        latency_stats([], 1)


def test_timing_is_bounded_by_iterations_and_by_time():
    calls = []
    samples = time_it(lambda: calls.append(1), warmup=3, iterations=10, max_seconds=60)
    assert len(samples) == 10 and len(calls) == 13  # warm-up runs are not timed
    import time as clock

    slow = time_it(lambda: clock.sleep(0.05), warmup=0, iterations=1000, max_seconds=0.2)
    assert 3 <= len(slow) <= 6 and min(slow) >= 45


def test_a_short_bench_produces_every_report_field(models, tmp_path):
    checkpoint, onnx_model, raw_model = models
    video = write_video(tmp_path / "v.mp4", 10)
    data = load_checkpoint(checkpoint).config["data"]
    report = benchmark([checkpoint, onnx_model, raw_model], batches=(1, 4), warmup=1, iterations=5, max_seconds=5,
                       device="cpu", video=str(video), data=data, echo=lambda *a: None)
    backends = {(r.artifact, r.backend, r.batch) for r in report.rows}
    assert backends == {(a, b, n) for a, b in (("best.pt", "torch eager"), ("model.onnx", "onnxruntime CPU"),
                                               ("model.uint8.onnx", "onnxruntime CPU")) for n in (1, 4)}
    for row in report.rows:
        assert row.model == "test_resnet" and row.stats.n == 5
        assert 0 < row.stats.min_ms <= row.stats.p50_ms <= row.stats.p90_ms <= row.stats.p99_ms
        assert row.vs_eager is not None and row.vs_eager > 0
    eager = [r for r in report.rows if r.backend == "torch eager"]
    assert all(r.vs_eager == pytest.approx(1.0) for r in eager) and eager[0].gflops > 0
    assert [e["frames"] for e in report.end_to_end] == [10, 10, 10]
    assert {"capture", "preprocess", "inference", "postprocess"} == set(report.end_to_end[0]["stages_ms"])
    assert len(report.accuracy) == 3 and len({a["accuracy"] for a in report.accuracy}) == 1  # same model, same result
    assert report.environment["cpu_cores"] >= 1 and "torch" in report.environment["versions"]

    paths = write_report(report, tmp_path / "out")
    saved = json.loads(paths["json"].read_text())
    assert set(saved) == {"environment", "settings", "latency", "end_to_end", "accuracy"}
    assert {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "images_per_s", "vs_eager", "backend", "batch"} <= set(
        saved["latency"][0])
    markdown = paths["markdown"].read_text()
    assert "## Model latency" in markdown and "## End to end" in markdown and "## Accuracy per format" in markdown
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 5000


def test_cli_bench_and_clear_errors(models, tmp_path, capsys):
    _, onnx_model, _ = models
    assert cli.main(["bench", str(onnx_model), "--batch", "1,2", "--iterations", "3", "--warmup", "1",
                     "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime CPU" in printed and (tmp_path / "bench.md").is_file()
    for args, words in ((["bench", str(tmp_path / "none.onnx")], "model not found"),
                        (["bench", str(onnx_model), "--batch", "1,x"], "--batch must be"),
                        (["bench", str(onnx_model), "--batch", "0"], "must be positive")):
        assert cli.main(args) == 2
        assert words in capsys.readouterr().err
    assert parse_batches("1,8,32") == (1, 8, 32)
