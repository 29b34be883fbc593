"""Many cameras in one process, with real parts: local MJPEG cameras (steady, dropping and coming back at
another size, never answering) and video files in one run; the sources file edited while running; the
scheduler's deadline, fairness and order with sources the tests control; every bad input one line."""

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from catmood import cli
from catmood.runtime.options import RuntimeOptions
from catmood.runtime.pipeline import run_pipeline
from catmood.runtime.scheduler import Scheduler
from catmood.runtime.sources import Frame, FrameSource

from conftest import natural_image, write_video
from mjpeg import MjpegCamera

pytestmark = pytest.mark.skipif(not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG),
                                reason="this OpenCV has no FFmpeg backend to read MJPEG streams")

FRAMES = [natural_image(120, 160, seed=i) for i in range(6)]


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_steady_dropping_dead_cameras_and_files_in_one_run(models, tmp_path):
    _, onnx_model, _ = models
    videos = [write_video(tmp_path / "v1.mp4", 20), write_video(tmp_path / "v2.mp4", 9, size=(96, 72))]
    seen: list = []
    with MjpegCamera(FRAMES, fps=15, max_frames=45) as steady, MjpegCamera(FRAMES, fps=15) as dropping, \
            MjpegCamera(mode="silent") as dead:
        def fault():  # the dropping camera goes away for a while and comes back at another size
            dropping.wait_served(10, timeout=10)
            dropping.drop(0.6, size=(320, 240))
            time.sleep(2.5)
            dropping.stop()

        threading.Thread(target=fault, daemon=True).start()
        sources = [f"steady={steady.url}", f"drop={dropping.url}", f"dead={dead.url}", *map(str, videos)]
        summary = run_pipeline(onnx_model, sources, RuntimeOptions(
            give_up_s=4.0, out=str(tmp_path / "videos"), events=str(tmp_path / "ev.jsonl"),
            csv=str(tmp_path / "rows.csv")), on_result=seen.append, echo=lambda *a: None)
        served = max(steady.served_per_connection)  # to the stream's reader (a probe before it may get one)
    rows = {s.name: s for s in summary.sources}
    assert list(rows) == ["steady", "drop", "dead", "cam0", "cam1"]
    # every frame the steady camera served was classified, in order, whatever the others did
    assert served >= 40 and rows["steady"].frames == served and rows["steady"].dropped == 0
    events = lines_of(tmp_path / "ev.jsonl")
    for name in rows:
        indices = [e["frame"] for e in events if e["source"] == name]
        assert indices == sorted(indices) and len(indices) == rows[name].frames, name
    assert [e["frame"] for e in events if e["source"] == "steady"] == list(range(served))
    # the files: every frame; the dropping camera came back at its new size; the dead one was given up
    assert rows["cam0"].frames == 20 and rows["cam1"].frames == 9 and rows["cam0"].end_reason == "end of source"
    sizes = [r.frame.image.shape[:2] for r in seen if r.source == "drop"]
    assert (120, 160) in sizes and sizes[-1] == (240, 320) and rows["drop"].reconnects >= 1
    assert rows["dead"].frames == 0 and rows["dead"].state == "given up" and "no frame for 4 s" in rows["dead"].end_reason
    assert max(r.batch for r in seen) >= 2  # frames of several cameras went to the model together
    videos_out = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert videos_out == ["cam0.mp4", "cam1.mp4", "drop.mp4", "steady.mp4"]  # one per source with frames
    assert sum(1 for line in (tmp_path / "rows.csv").read_text().splitlines() if line.startswith("steady,")) == served


def test_sources_file_edits_add_and_remove_cameras_while_running(models, tmp_path):
    _, onnx_model, _ = models
    listed = tmp_path / "cameras.txt"
    seen: list = []
    lines: list[str] = []
    with MjpegCamera(FRAMES, fps=15) as first, MjpegCamera(FRAMES, fps=15, max_frames=40) as second:
        listed.write_text(f"# the hall\nhall={first.url}\n")

        def edit():
            deadline = time.time() + 20
            while not any(r.source == "hall" for r in seen) and time.time() < deadline:
                time.sleep(0.05)
            listed.write_text(f"hall={first.url}\nyard={second.url}\nbad name=0\n")
            while not any(r.source == "yard" for r in seen) and time.time() < deadline:
                time.sleep(0.05)
            listed.write_text(f"yard={second.url}\n")

        threading.Thread(target=edit, daemon=True).start()
        summary = run_pipeline(onnx_model, [], RuntimeOptions(give_up_s=1.5), sources_file=listed,
                               on_result=seen.append, echo=lines.append)
        served = max(second.served_per_connection)  # to the stream's reader (a probe before it may get one)
    rows = {s.name: s for s in summary.sources}
    assert rows["hall"].state == "removed" and rows["hall"].frames > 0
    assert served >= 35 and rows["yard"].frames == served and rows["yard"].state == "given up"
    hall_last = max(i for i, r in enumerate(seen) if r.source == "hall")
    assert any(r.source == "yard" for r in seen[hall_last + 1:])  # yard went on after hall was removed
    assert any("yard: added" in line for line in lines) and any("hall: removed" in line for line in lines)
    assert any("cameras.txt:3" in line and "not file-safe" in line for line in lines)  # the bad line, named


class Scripted(FrameSource):
    """A live source the test feeds by hand: `push()` makes a frame available."""

    kind, live = "camera", True

    def __init__(self, name: str, fps: float = 30.0):
        super().__init__(name)
        self.fps, self.queue, self.done = fps, [], threading.Event()
        self.cond = threading.Condition()
        self.count = 0

    def push(self, n: int = 1) -> None:
        with self.cond:
            for _ in range(n):
                self.queue.append(Frame(np.zeros((8, 8, 3), np.uint8), self.count, self.count / self.fps, 0.0))
                self.count += 1
            self.cond.notify_all()

    def __iter__(self):
        while not self.done.is_set():
            with self.cond:
                self.cond.wait_for(lambda: self.queue or self.done.is_set(), 0.1)
                items, self.queue = self.queue, []
            yield from items

    def stop_reading(self):
        self.done.set()


def test_scheduler_waits_at_most_its_deadline_keeps_order_and_starves_no_source():
    fast, slow = Scripted("fast"), Scripted("slow")
    scheduler = Scheduler(batch_timeout_s=0.05, give_up_s=60, echo=lambda *a: None)
    scheduler.add("fast", fast)
    scheduler.add("slow", slow)
    try:
        fast.push()
        slow.push()
        time.sleep(0.05)
        both = scheduler.next_batch()
        assert sorted(f.name for f, _ in both) == ["fast", "slow"]
        fast.push()  # slow has nothing: the batch waits at most the deadline for it
        t0 = time.perf_counter()
        only = scheduler.next_batch()
        waited = time.perf_counter() - t0
        assert [f.name for f, _ in only] == ["fast"] and 0.03 <= waited < 0.5
        got = {"fast": [], "slow": []}
        for round_ in range(20):  # fast pushes 3 frames per round, slow 1: each batch one frame per source
            fast.push(3)
            slow.push()
            time.sleep(0.01)
            for feed, frame in scheduler.next_batch():
                got[feed.name].append(frame.index)
        assert got["slow"] == sorted(got["slow"]) and len(got["slow"]) >= 19  # never starved, in order
        assert got["fast"] == sorted(got["fast"])  # live: older frames dropped, never reordered
        assert scheduler.feeds["fast"].dropped > 0 and scheduler.feeds["slow"].dropped <= 1
    finally:
        scheduler.close()


def test_a_file_source_keeps_every_frame_while_a_camera_only_its_newest(models, tmp_path):
    _, onnx_model, _ = models
    video = write_video(tmp_path / "v.mp4", 30)
    camera = Scripted("cam")
    pusher = threading.Thread(target=lambda: [camera.push(5) or time.sleep(0.01) for _ in range(20)], daemon=True)
    pusher.start()
    threading.Timer(1.5, camera.stop_reading).start()
    summary = run_pipeline(onnx_model, {"file": __import__("catmood").runtime.sources.open_source(str(video)),
                                        "cam": camera}, RuntimeOptions(), echo=lambda *a: None)
    rows = {s.name: s for s in summary.sources}
    assert rows["file"].frames == 30 and rows["file"].dropped == 0
    assert rows["cam"].frames + rows["cam"].dropped == 100 and rows["cam"].frames >= 1


@pytest.mark.parametrize("args, words", [
    (["--source", "a=x.mp4", "--source", "a=y.mp4"], "the name 'a' is used twice"),
    (["--source", "bad/name=x.mp4"], "source not found"),
    (["--source", "sp ace=x.mp4", "--source", "v.mp4"], "not file-safe"),
    (["--source", "v.mp4", "--source", "w.mp4", "--out", "one.mp4"], "with several sources --out is a folder"),
    (["--sources", "missing.txt"], "cannot read the sources file"),
    (["--source", "videotestsrc ! appsink"], "GStreamer"),
    ([], "needs --source"),
])
def test_bad_multi_source_inputs_are_one_line(models, tmp_path, monkeypatch, capsys, args, words):
    _, onnx_model, _ = models
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "v.mp4", 3)
    write_video(tmp_path / "w.mp4", 3)
    if "GStreamer" in words and cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        pytest.skip("this OpenCV has GStreamer: the pipeline would open")
    assert cli.main(["run", str(onnx_model), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "one.mp4").exists()


def test_an_unknown_camera_or_file_among_good_ones_is_named_and_the_run_goes_on(models, tmp_path, capsys):
    _, onnx_model, _ = models
    video = write_video(tmp_path / "v.mp4", 12)
    listed = tmp_path / "cams.txt"
    listed.write_text(f"good={video}\nnone={tmp_path / 'missing.mp4'}\ngone=97\ngood={video}\n\n# done\n")
    code = cli.main(["run", str(onnx_model), "--sources", str(listed), "--give-up", "0.5",
                     "--summary", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "none: " in out and "missing.mp4: source not found" in out and "; left out" in out
    assert f"{listed}:4: the name 'good' is used twice" in out
    summary = json.loads((tmp_path / "s.json").read_text())
    rows = {s["name"]: s for s in summary["sources"]}
    assert rows["good"]["frames"] == 12 and rows["gone"]["state"] == "given up" and rows["gone"]["frames"] == 0
    assert "cannot open the camera" in rows["gone"]["end_reason"]


def test_no_password_is_printed_served_or_written(models, tmp_path, capfd):
    _, onnx_model, _ = models
    with MjpegCamera(FRAMES, fps=15, max_frames=10, auth=("cat", "s3cret-pw")) as camera:
        url = camera.url_with("cat", "s3cret-pw")
        code = cli.main(["run", str(onnx_model), "--source", f"door={url}", "--source", "9=" + url.replace(
            "s3cret-pw", "s3cret-pw2"), "--give-up", "1", "--summary", str(tmp_path / "s.json"),
                         "--events", str(tmp_path / "e.jsonl"), "--csv", str(tmp_path / "r.csv")])
    captured = capfd.readouterr()  # file descriptors: what FFmpeg and OpenCV print themselves too
    assert code == 0
    written = (tmp_path / "s.json").read_text() + (tmp_path / "e.jsonl").read_text() + (tmp_path / "r.csv").read_text()
    for text in (captured.out, captured.err, written):
        assert "s3cret" not in text
    rows = {s["name"]: s for s in json.loads((tmp_path / "s.json").read_text())["sources"]}
    assert rows["door"]["frames"] == 10 and rows["door"]["source"].startswith("http://cat:***@127.0.0.1:")
    assert rows["9"]["frames"] == 0  # a wrong password: refused by the camera, given up


def test_a_wedged_stream_is_noticed_by_frame_age_and_reconnected(models, tmp_path):
    _, onnx_model, _ = models
    seen: list = []
    lines: list[str] = []
    with MjpegCamera(FRAMES, fps=15, max_frames=80) as camera:
        def wedge():  # connected, but nothing comes: longer than the wedge check, shorter than --give-up
            camera.wait_served(15, timeout=10)
            camera.stall(4.5)

        threading.Thread(target=wedge, daemon=True).start()
        summary = run_pipeline(onnx_model, [f"porch={camera.url}"], RuntimeOptions(give_up_s=4.0),
                               on_result=seen.append, echo=lines.append)
    (row,) = summary.sources
    assert any("porch: no new frame for" in line and "(wedged); reconnecting" in line for line in lines), lines
    assert row.reconnects >= 1 and camera.connections >= 3  # the probe, the first reader, a new one
    times = [r.frame.timestamp for r in seen]
    gap = max(b - a for a, b in zip(times, times[1:]))
    assert 3.0 <= gap < 7.0 and times[-1] - times[0] > gap + 1.0  # frames came again after the wedge


def test_sigterm_ends_a_run_of_live_cameras_as_ctrl_c_does_with_every_output_whole(models, tmp_path):
    import signal
    import subprocess
    import sys

    _, onnx_model, _ = models
    with MjpegCamera(FRAMES, fps=15) as one, MjpegCamera(FRAMES, fps=15) as two:
        run = subprocess.Popen([sys.executable, "-m", "catmood", "run", str(onnx_model), "--source", f"a={one.url}",
                                "--source", f"b={two.url}", "--out", str(tmp_path / "videos"), "--events",
                                str(tmp_path / "e.jsonl"), "--summary", str(tmp_path / "s.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        deadline = time.time() + 60
        while time.time() < deadline and not (one.served > 20 and two.served > 20):
            time.sleep(0.1)
        time.sleep(1.0)  # the model has loaded and classified frames of both
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=30)
    assert run.returncode == 130, out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["interrupted"] and {s["name"] for s in summary["sources"]} == {"a", "b"}
    events = lines_of(tmp_path / "e.jsonl")
    assert len(events) == summary["frames"] > 0 and {e["source"] for e in events} == {"a", "b"}
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["a.mp4", "b.mp4"]
    assert cv2.VideoCapture(str(tmp_path / "videos" / "a.mp4")).read()[0]


def test_ctrl_c_ends_a_run_whose_cameras_are_all_down_at_once(models, tmp_path):
    import signal
    import subprocess
    import sys

    _, onnx_model, _ = models
    with MjpegCamera(mode="silent") as dead:
        run = subprocess.Popen([sys.executable, "-m", "catmood", "run", str(onnx_model), "--source", f"a={dead.url}",
                                "--source", "b=rtsp://127.0.0.1:9/none", "--give-up", "600", "--summary",
                                str(tmp_path / "s.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and "running " not in (run.stdout.readline() or "running "):
            pass
        time.sleep(1.0)
        run.send_signal(signal.SIGINT)
        t0 = time.time()
        out, _ = run.communicate(timeout=30)
    assert run.returncode == 130 and time.time() - t0 < 8, out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 0 and [s["state"] for s in summary["sources"]] == ["stopped", "stopped"]
