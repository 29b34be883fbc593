"""Benchmarks: the statistics on known samples, a short run producing every report field, clear errors."""

import json

import cv2
import numpy as np
import pytest

from catmood import cli
from catmood.bench import BenchOptions, benchmark, write_report
from catmood.checkpoint import load_checkpoint
from catmood.errors import CatmoodError
from catmood.export.options import parse_batch_sizes
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
    report = benchmark([checkpoint, onnx_model, raw_model],
                       BenchOptions(batches=(1, 4), warmup=1, iterations=5, max_seconds=5, device="cpu"),
                       video=str(video), data=data, echo=lambda *a: None)
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
    assert parse_batch_sizes("1,8,32") == (1, 8, 32)


def test_vs_eager_compares_within_one_device_type():
    from catmood.bench.measure import ratios_to_eager
    from catmood.bench.report import BenchRow
    from catmood.timing import latency_stats

    def row(backend, precision, device_type, ms):
        return BenchRow("m", "a", backend, "?", precision, 1, latency_stats([ms] * 3, 1), device_type=device_type)

    rows = [row("torch eager", "fp32", "cpu", 20.0), row("torch eager", "fp32", "cuda", 2.0),
            row("onnxruntime Tensorrt", "fp16", "cuda", 0.5), row("onnxruntime CPU", "fp32", "cpu", 10.0)]
    ratios_to_eager(rows)
    assert [r.vs_eager for r in rows] == pytest.approx([1.0, 1.0, 0.25, 0.5])  # GPU rows against GPU eager


def test_bench_scores_the_validation_images_of_the_split_training_used(models, shapes_data, tmp_path):
    import dataclasses
    import shutil

    from catmood.backends import load_classifier
    from catmood.bench.accuracy import format_accuracy, split_seed
    from catmood.checkpoint import save_checkpoint
    from catmood.data.layouts import discover_dataset
    from catmood.export.onnx import export_onnx
    from catmood.preprocess import preprocess

    plain = tmp_path / "plain"  # class folders only: the validation split is drawn with the seed
    for image in shapes_data.glob("*/*/*.png"):
        (plain / image.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, plain / image.parent.name / f"{image.parent.parent.name}_{image.name}")
    ckpt = load_checkpoint(models[0])
    ckpt = dataclasses.replace(ckpt, config={**ckpt.config, "seed": 5, "data": str(plain)})
    checkpoint = save_checkpoint(ckpt, tmp_path / "seeded.pt")
    onnx_model = load_classifier(export_onnx(checkpoint, tmp_path / "seeded.onnx"))
    assert split_seed(onnx_model) == split_seed(load_classifier(checkpoint, device="cpu")) == 5

    valid = discover_dataset(plain, seed=5, check_images=False).splits["valid"]
    other = discover_dataset(plain, seed=0, check_images=False).splits["valid"]
    assert {s.path for s in valid} != {s.path for s in other}
    frames = [cv2.imread(str(s.path)) for s in valid]
    expected = float((onnx_model.predict(preprocess(frames, onnx_model.spec)).argmax(1)
                      == np.array([s.label for s in valid])).mean())
    assert format_accuracy(onnx_model, plain) == (pytest.approx(expected), len(valid), "valid")
