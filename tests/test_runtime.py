"""The runtime: every source kind, stream drop and reconnect, face tracking and smoothing, uint8 vs float
models, outputs (one event per frame, a video as long as the input), clear errors."""

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from catmood import cli
from catmood.backends import Classifier, select_classifier
from catmood.metadata import ArtifactError, EngineTarget
from catmood.runtime.decisions import UNCERTAIN, MoodSmoother
from catmood.runtime.faces import FaceTracker, iou, merge_boxes, padded_box
from catmood.runtime.options import RuntimeOptions
from catmood.runtime.pipeline import run_pipeline
from catmood.runtime.sources import SourceError, open_source
from catmood.runtime.streams import LiveSource

from conftest import frame_count, natural_image, write_video

CHELSEA = Path(__file__).parent / "data" / "chelsea.png"
QUIET = dict(echo=lambda *a: None)


def test_video_file_gives_one_event_per_frame_and_a_video_as_long(models, tmp_path):
    _, onnx_model, _ = models
    video = write_video(tmp_path / "in.mp4", 23)
    summary = run_pipeline(onnx_model, video, RuntimeOptions(out=str(tmp_path / "out.mp4"),
                                                             events=str(tmp_path / "ev.jsonl")), **QUIET)
    assert summary.frames == 23 and summary.dropped == 0 and summary.end_reason == "end of source"
    events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in events] == list(range(23))
    assert set(events[0]) >= {"frame", "time", "label", "confidence", "probs", "smoothed", "latency_ms"}
    assert set(events[0]["probs"]) == {"circle", "square", "stripes"}
    assert sum(events[5]["probs"].values()) == pytest.approx(1, abs=1e-3)
    assert set(events[0]["latency_ms"]) == {"capture", "preprocess", "inference", "postprocess"}
    assert events[12]["time"] == pytest.approx(12 / 12.0)
    assert frame_count(tmp_path / "out.mp4") == 23
    out = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert out.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    ok, first = out.read()
    original = cv2.VideoCapture(str(video)).read()[1]
    assert first.shape == original.shape and np.abs(first[:20, :60].astype(int) - original[:20, :60]).mean() > 10
    assert set(summary.stages) == {"capture", "preprocess", "inference", "postprocess"}
    assert summary.fps > 0 and summary.stages["inference"]["p99"] >= summary.stages["inference"]["p50"] > 0


def test_image_file_folder_and_glob_sources(models, tmp_path):
    _, onnx_model, _ = models
    folder = tmp_path / "imgs"
    for i in range(4):
        (folder / "sub").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "sub" / f"{i}.png"), natural_image(90 + i * 13, 120, seed=i))
    (folder / "broken.jpg").write_bytes(b"nope")
    for source, frames, broken in ((folder / "sub" / "0.png", 1, 0), (folder, 4, 1), (str(folder / "sub" / "*.png"), 4, 0)):
        summary = run_pipeline(onnx_model, str(source), RuntimeOptions(events=str(tmp_path / "e.jsonl")), **QUIET)
        assert summary.frames == frames and summary.dropped == broken and summary.kind == "images"
        events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
        assert sum("error" in e for e in events) == broken and len(events) == frames + broken


class FakeCapture:
    """Simulates cv2.VideoCapture for a camera or stream: scripted frames, failures and reopenings."""

    def __init__(self, script):
        self.script = script  # list of frames; None = the connection drops here
        self.opened = True

    def isOpened(self):
        return self.opened

    def read(self):
        if not self.script:
            return False, None
        item = self.script.pop(0)
        if item is None:
            return False, None
        time.sleep(0.002)
        return True, item

    def get(self, prop):
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.opened = False


def test_stream_drops_reconnects_and_survives_a_new_frame_size(models, tmp_path):
    _, onnx_model, _ = models
    big = [natural_image(120, 160, seed=i) for i in range(15)]
    small = [natural_image(72, 96, seed=i) for i in range(15)]
    connections = [big + [None], small + [None]]  # first connection drops; the second has another size
    opened = []

    def factory(target):
        opened.append(target)
        return FakeCapture(connections.pop(0)) if connections else FakeCapture([])

    source = open_source("rtsp://127.0.0.1:8554/cats", capture_factory=factory)
    summary = run_pipeline(onnx_model, source, RuntimeOptions(out=str(tmp_path / "s.mp4"), give_up_s=0.6,
                                                             events=str(tmp_path / "s.jsonl")), **QUIET)
    assert source.reconnects >= 1 and len(opened) >= 2
    assert "gave up" in summary.end_reason
    assert summary.frames + summary.dropped == 30  # the newest-frame reader may skip some, never invents any
    assert summary.frames >= 2
    assert frame_count(tmp_path / "s.mp4") == summary.frames
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == summary.frames


class SlowModel(Classifier):
    """A real model that takes `seconds` longer per batch: a slow consumer for the sources."""

    name, device = "slow", "cpu"

    def __init__(self, inner, seconds: float):
        self.inner, self.spec, self.seconds = inner, inner.spec, seconds

    def logits(self, batch):
        time.sleep(self.seconds)
        return self.inner.logits(batch)


def test_live_reader_keeps_only_the_newest_frame(models):
    _, onnx_model, _ = models

    frames = [natural_image(60, 80, seed=i % 5) for i in range(60)]
    source = LiveSource(0, "camera 0", "camera", lambda t: FakeCapture(list(frames)), reconnect=False)
    summary = run_pipeline(SlowModel(select_classifier(onnx_model), 0.03), source, RuntimeOptions(), **QUIET)
    assert summary.dropped > 0 and summary.frames + summary.dropped == 60  # no growing delay: stale frames dropped


def test_realtime_pacing_drops_late_frames_of_a_file(models, tmp_path):
    _, onnx_model, _ = models
    video = write_video(tmp_path / "fast.mp4", 40, fps=200.0)

    model = SlowModel(select_classifier(onnx_model), 0.02)
    paced = run_pipeline(model, str(video), RuntimeOptions(realtime=True), **QUIET)
    assert paced.dropped > 0 and paced.frames + paced.dropped <= 40
    every = run_pipeline(model, str(video), RuntimeOptions(), **QUIET)
    assert every.frames == 40 and every.dropped == 0


def test_uint8_and_float_models_give_the_same_labels(models, tmp_path):
    _, onnx_model, raw_model = models
    video = write_video(tmp_path / "v.mp4", 15)
    labels = []
    for model in (onnx_model, raw_model):
        run_pipeline(model, str(video), RuntimeOptions(events=str(tmp_path / "e.jsonl"), alpha=1.0, hold_s=0),
                     **QUIET)
        events = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
        labels.append([max(e["probs"], key=e["probs"].get) for e in events])
    assert len(labels[0]) == 15 and labels[0] == labels[1]


def test_checkpoint_and_onnx_agree_through_the_runtime(models, tmp_path):
    checkpoint, onnx_model, _ = models
    video = write_video(tmp_path / "v.mp4", 6)
    probs = []
    for model in (checkpoint, onnx_model):
        run_pipeline(model, str(video), RuntimeOptions(events=str(tmp_path / "e.jsonl")), device="cpu", **QUIET)
        probs.append([list(json.loads(l)["probs"].values()) for l in (tmp_path / "e.jsonl").read_text().splitlines()])
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-4)


def test_smoother_holds_labels_and_says_uncertain():
    smoother = MoodSmoother(["a", "b"], alpha=1.0, hold_s=0.5, threshold=0.6)
    state: dict = {}
    p = lambda a: np.array([a, 1 - a])  # noqa: E731
    script = [(0.0, p(0.9), "a"), (0.1, p(0.1), "a"), (0.2, p(0.9), "a"), (0.3, p(0.1), "a"),  # flicker: held
              (0.5, p(0.1), "a"), (0.8, p(0.1), "b"),                                           # led 0.5 s: shown
              (0.9, p(0.55), "b"), (1.2, p(0.55), "b"), (1.45, p(0.55), UNCERTAIN)]             # weak: uncertain
    for t, probs, expected in script:
        assert smoother.update(state, probs, t).label == expected, t
    ema = MoodSmoother(["a", "b"], alpha=0.5, hold_s=0, threshold=0.0)
    state = {}
    ema.update(state, p(1.0), 0)
    np.testing.assert_allclose(ema.update(state, p(0.0), 1).probs, [0.5, 0.5])


def test_tracker_keeps_identities_on_a_scripted_sequence():
    tracker = FaceTracker(min_iou=0.3, max_missing=2)
    a, b = (10, 10, 50, 50), (200, 40, 60, 60)
    first = tracker.update([a, b])
    assert [t.id for t in first] == [1, 2]
    moved = tracker.update([(206, 44, 60, 60), (14, 12, 50, 50)])  # both moved a little, order swapped
    assert [t.id for t in moved] == [2, 1]
    moved[0].state["ema"] = "kept"
    tracker.update([(14, 12, 50, 50)])                                 # face 2 missing once
    back = tracker.update([(14, 12, 50, 50), (208, 46, 60, 60)])
    assert [t.id for t in back] == [1, 2] and back[1].state["ema"] == "kept"
    for _ in range(3):
        tracker.update([])
    assert tracker.update([(206, 44, 60, 60)])[0].id == 3            # gone too long: a new face
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(1 / 3)
    assert merge_boxes([(0, 0, 10, 10), (1, 1, 10, 10), (50, 50, 5, 5)]) == [(0, 0, 10, 10), (50, 50, 5, 5)]
    assert padded_box((10, 10, 20, 20), (35, 100), 0.5) == (0, 0, 40, 35)


def test_faces_mode_events_with_and_without_faces(models, tmp_path):
    _, onnx_model, _ = models
    folder = tmp_path / "two"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_cat.png"), cv2.imread(str(CHELSEA)))
    cv2.imwrite(str(folder / "b_wall.png"), np.full((200, 300, 3), 128, np.uint8))
    run_pipeline(onnx_model, str(folder), RuntimeOptions(faces=True, events=str(tmp_path / "f.jsonl"),
                                                         out=str(tmp_path / "annotated")), **QUIET)
    cat, wall = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert cat["faces"] and {"id", "box", "label", "confidence", "probs", "smoothed"} <= set(cat["faces"][0])
    assert wall["faces"] == [] and wall["label"] == "no face"
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["a_cat.png", "b_wall.png"]


def test_clear_errors(models, tmp_path, capsys):
    checkpoint, onnx_model, _ = models
    for args, words in ((["run", str(tmp_path / "none.onnx"), "--source", "x.mp4"], "model not found"),
                        (["run", str(onnx_model), "--source", str(tmp_path / "nothing.mp4")], "source not found"),
                        (["run", str(checkpoint), "--backend", "onnxruntime", "--source", "0"],
                         "cannot run with --backend onnxruntime; export it first")):
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open it as a video"):
        open_source(str(tmp_path / "fake.mp4"))
    for text, words in (("rtsp://127.0.0.1:9/none", "cannot open the stream"), ("7", "cannot open the camera")):
        # a camera or stream that cannot be opened is retried until --give-up, then named with the reason
        summary = run_pipeline(onnx_model, open_source(text, capture_factory=lambda t: None),
                               RuntimeOptions(give_up_s=0.3), **QUIET)
        assert summary.frames == 0 and "no frame for 0.3 s" in summary.end_reason and words in summary.end_reason


def test_an_engine_for_another_gpu_is_refused(models, tmp_path):
    from catmood.backends.tensorrt_backend import TensorRTBackend
    from catmood.checkpoint import load_checkpoint

    checkpoint, _, _ = models
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"engine bytes")
    (tmp_path / "model.fp16.engine.json").write_text(json.dumps({
        "spec": load_checkpoint(checkpoint).spec.to_dict(), "tensorrt": "10.3.0", "gpu": "NVIDIA Jetson Orin",
        "compute_capability": "8.7"}))
    with pytest.raises(ArtifactError, match="built for NVIDIA Jetson Orin .* but this machine has NVIDIA H100"):
        TensorRTBackend(engine, here=EngineTarget("10.3.0", "NVIDIA H100 80GB HBM3", "9.0"))
    (tmp_path / "model.fp16.engine.json").unlink()
    with pytest.raises(ArtifactError, match="sidecar .* is missing"):
        select_classifier(engine)


def test_classify_frames_yields_the_classifiers_own_results_and_uses_the_given_detector(models, tmp_path):
    from catmood.preprocess import preprocess
    from catmood.runtime.classify import NO_FACE, classify_frames

    _, onnx_model, _ = models
    classifier = select_classifier(onnx_model)
    video = write_video(tmp_path / "in.mp4", 9)
    no_smoothing = RuntimeOptions(alpha=1.0, hold_s=0.0, threshold=0.0, max_frames=6)
    results = list(classify_frames(classifier, open_source(str(video)), no_smoothing))
    assert [r.frame.index for r in results] == list(range(6))  # stops at max_frames
    for r in results:
        (whole,) = r.faces
        own = classifier.predict(preprocess(r.frame.image, classifier.spec))[0]
        np.testing.assert_allclose(whole.probs, own, rtol=1e-5, atol=1e-6)
        assert whole.box is None and r.label == classifier.spec.class_names[int(own.argmax())]
        assert set(r.latency_ms) == {"capture", "preprocess", "inference", "postprocess"}

    class TwoBoxes:  # any FaceDetector: a generated model's boxes, another cascade, ...
        def detect(self, frame):
            return [(0, 0, 40, 40), (60, 30, 50, 50)] if frame.mean() >= 0 else []

    faces = list(classify_frames(classifier, open_source(str(video)), RuntimeOptions(faces=True, max_frames=3),
                                 detector=TwoBoxes()))
    assert [[f.box for f in r.faces] for r in faces] == [[(0, 0, 40, 40), (60, 30, 50, 50)]] * 3
    assert [f.track_id for f in faces[-1].faces] == [faces[0].faces[0].track_id, faces[0].faces[1].track_id]
    assert faces[0].label == faces[0].faces[1].decision.label  # the largest face's label

    class NoFaces:
        def detect(self, frame):
            return []

    (empty,) = list(classify_frames(classifier, open_source(str(video)), RuntimeOptions(faces=True, max_frames=1),
                                    detector=NoFaces()))
    assert empty.faces == [] and empty.label == NO_FACE


@pytest.mark.parametrize("field, value, flag", [("detect_every", 0, "--detect-every"), ("detect_every", -2, "--detect-every"),
                                                ("threshold", 2, "--threshold"), ("threshold", -1, "--threshold"),
                                                ("hold_s", -1, "--hold"), ("alpha", 0, "--smooth"), ("alpha", 2, "--smooth"),
                                                ("max_frames", 0, "--max-frames"), ("max_frames", -5, "--max-frames")])
def test_runtime_options_are_validated_in_the_library(field, value, flag):
    from catmood.errors import CatmoodError

    with pytest.raises(CatmoodError, match=f"^{flag} must be .*, got {value}$"):
        RuntimeOptions(**{field: value})


def test_bad_run_options_are_one_line_before_any_work(models, tmp_path, capsys):
    _, onnx_model, _ = models
    video = write_video(tmp_path / "in.mp4", 3)
    assert cli.main(["run", str(onnx_model), "--source", str(video), "--detect-every", "0",
                     "--events", str(tmp_path / "e.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["catmood: error: --detect-every must be a whole number >= 1, got 0"]
    assert not (tmp_path / "e.jsonl").exists()
