"""Long work shows a bar with its rate and time left in a terminal (never in a pipe or a log), and every
measurement is bounded in time."""

from __future__ import annotations

import io
import re
import sys
import time

import numpy as np
import pytest
import torch


class Terminal(io.StringIO):
    """stderr as a terminal: tqdm draws its bars only where a person watches."""

    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch) -> Terminal:
    """Call in the test itself: pytest puts its own stderr back after fixtures are set up."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    return screen


def drawn(step: str, total: int, unit: str) -> str:
    """A bar as tqdm first draws it: the step, its total, the time left and the rate (filled in as it runs)."""
    return rf"{re.escape(step)}: +0%\|[^|]*\| 0/{total} \[00:00<\?, \?{unit}/s\]"


def test_evaluation_and_feature_caching_show_images_per_second_and_time_left(models, monkeypatch):
    from catmood.training.evaluate import evaluate_checkpoint
    from catmood.training.steps import compute_features

    terminal = on_terminal(monkeypatch)
    evaluate_checkpoint(models[0], split="test", progress=True)
    shown = terminal.getvalue()
    assert re.search(drawn("evaluating test", 24, "img"), shown), shown
    dataset = torch.utils.data.TensorDataset(torch.zeros(10, 3, 4, 4), torch.zeros(10, dtype=torch.long))
    features, labels = compute_features(torch.nn.Flatten(), dataset, torch.device("cpu"), 4, 0, True, "caching")
    assert features.shape == (10, 48) and len(labels) == 10
    assert re.search(drawn("caching", 10, "img"), terminal.getvalue())
    before = terminal.getvalue()
    evaluate_checkpoint(models[0], split="test", progress=False)
    assert terminal.getvalue() == before  # no bar unless asked for


def test_export_shows_the_gate_and_latency_steps(models, tmp_path, monkeypatch):
    from catmood.export.pipeline import export_checkpoint

    terminal = on_terminal(monkeypatch)
    export_checkpoint(models[0], tmp_path / "exp", onnx=True, fp16=False, max_images=8, echo=lambda *a: None)
    shown = terminal.getvalue()
    for step, total, unit in (("pytorch: reference logits", 8, "img"), ("onnx: parity gate", 8, "img"),
                              ("pytorch: latency", 23, "run"), ("onnx: latency", 23, "run")):
        assert re.search(drawn(step, total, unit), shown), step


def test_export_latency_is_bounded_in_time():
    from catmood.export.verify import batch1_latency_ms
    from catmood.spec import ModelSpec

    class Slow:
        spec = ModelSpec(architecture="resnet18", class_names=("a", "b"), input_size=16, resize_size=16)
        runs = 0

        def logits(self, batch):
            Slow.runs += 1
            time.sleep(0.1)
            return np.zeros((len(batch), 2), np.float32)

    started = time.perf_counter()
    ms = batch1_latency_ms(Slow(), np.zeros((20, 20, 3), np.uint8), repeats=20, warmup=1, max_seconds=0.35)
    assert time.perf_counter() - started < 1.5 and 4 <= Slow.runs <= 6  # 1 warm-up, then ~0.35 s of runs
    assert ms == pytest.approx(100, abs=40)
