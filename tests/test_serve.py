"""The live view (`run --serve`): every endpoint of a real run, a real MJPEG client, Prometheus text, a
viewer that stops reading, tokens, the default bind, clean shutdown, and the page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from conftest import write_video
from prometheus_client.parser import text_string_to_metric_families

from catmood import cli
from catmood.data.synth.video import render_mood_video
from catmood.errors import CatmoodError
from catmood.runtime.options import TOKEN_ENV, RuntimeOptions, serve_address
from catmood.runtime.pipeline import run_pipeline
from catmood.runtime.serve import LiveView
from catmood.runtime.serve_cameras import GAP_S, HISTORY_CAP, Camera
from catmood.runtime.sources import Frame, FrameSource, open_source

STAGES = {"capture", "preprocess", "inference", "postprocess"}


class LoopingSource(FrameSource):
    """A camera stand-in: `images` again and again (every `period` s, 0: as fast as taken) until stopped."""

    kind = "camera"

    def __init__(self, images, period: float = 1 / 30):
        super().__init__("looping test camera")
        self.images, self.period, self.stop = images, period, threading.Event()

    def __iter__(self):
        index = 0
        while not self.stop.is_set():
            time.sleep(self.period)
            yield Frame(self.images[index % len(self.images)].copy(), index, index * self.period, 0.0)
            index += 1


def video_frames(path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def cat_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "cat.mp4"
    render_mood_video(path, (("calm", 2.0), ("angry", 2.0)), fps=10, size=(160, 120))
    return path


@contextmanager
def live_run(model, source: LoopingSource | dict, **options):
    """run_pipeline with --serve on a free loopback port, on a thread, of one source or {name: source}; yields
    (base URL, result dict) once 3 frames are through; at the end every LoopingSource is stopped."""
    lines, result = queue.Queue(), {}

    def target():
        try:
            result["summary"] = run_pipeline(model, source, RuntimeOptions(serve="127.0.0.1:0", **options),
                                             echo=lines.put)
        except BaseException as exc:  # shown by the test, not lost on the thread
            result["error"] = exc
            lines.put(f"error: {exc!r}")

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    url = None
    while url is None:
        line = lines.get(timeout=120)
        assert not line.startswith("error:"), line
        url = line.split()[2] if line.startswith("live view: ") else None
    try:
        wait_for(lambda: get(url + "status.json", token=options.get("serve_token"))[1].get("frames", 0) >= 3)
        yield url.rstrip("/"), result
    finally:
        for looping in source.values() if isinstance(source, dict) else [source]:
            if isinstance(looping, LoopingSource):
                looping.stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the run did not end after its source did"
        assert "error" not in result, result.get("error")


def get(url: str, token: str | None = None, headers: dict | None = None):
    """(status, parsed body: JSON as dict, text as str, images as arrays, else bytes, and headers)."""
    if token:
        url += ("&" if "?" in url else "?") + f"token={token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            code, body, kind = response.status, response.read(), response.headers.get("Content-Type", "")
            head = response.headers
    except urllib.error.HTTPError as error:
        code, body, kind, head = error.code, error.read(), error.headers.get("Content-Type", ""), error.headers
    if kind.startswith("application/json"):
        return code, json.loads(body), head
    if kind.startswith("image/jpeg"):
        return code, cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), head
    if kind.startswith("text/"):
        return code, body.decode(), head
    return code, body, head


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_endpoint_of_a_run_with_serve(models, cat_video):
    _, onnx_model, _ = models
    frames = video_frames(cat_video)
    source = LoopingSource(frames)
    with live_run(onnx_model, source, serve_fps=20.0) as (url, _):
        assert get(url + "/healthz")[:2] == (200, "ok\n")
        code, page, head = get(url + "/")
        assert code == 200 and head["Content-Type"].startswith("text/html")
        assert "stream.mjpg" in page and "EventSource" in page
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must work offline"

        code, status, _ = get(url + "/status.json")
        assert code == 200 and status["running"] is True and status["frames"] >= 3 and status["dropped"] == 0
        assert status["classes"] == ["circle", "square", "stripes"] and set(status["stages_ms"]) == STAGES
        event = status["event"]
        assert event["label"] in status["classes"] + ["uncertain"]
        assert sum(event["probs"].values()) == pytest.approx(1, abs=1e-3) and set(event["latency_ms"]) == STAGES

        code, snapshot, _ = get(url + "/snapshot.jpg")
        assert code == 200 and snapshot.shape == frames[0].shape
        plain = min(np.abs(snapshot[:20, :60].astype(int) - f[:20, :60]).mean() for f in frames)
        assert plain > 10, "the snapshot must carry the overlay"

        code, text, head = get(url + "/metrics")
        assert code == 200 and head["Content-Type"].startswith("text/plain; version=")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        value = {f: families[f].samples[0].value for f in ("catmood_frames", "catmood_frames_dropped", "catmood_fps")}
        assert value["catmood_frames"] >= 3 and value["catmood_frames_dropped"] == 0 and value["catmood_fps"] > 1
        assert families["catmood_frames"].type == "counter" and families["catmood_fps"].type == "gauge"
        histogram = families["catmood_stage_latency_seconds"]
        assert histogram.type == "histogram" and {s.labels["stage"] for s in histogram.samples} == STAGES
        counts = {s.labels["stage"]: s.value for s in histogram.samples if s.name.endswith("_count")}
        labelled = sum(s.value for s in families["catmood_labels"].samples if s.name.endswith("_total"))
        for n in (*counts.values(), labelled):  # the run goes on while the text is made: a frame or two apart
            assert abs(n - value["catmood_frames"]) <= 3, (n, value)

        assert get(url + "/nowhere")[0] == 404
        connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
        connection.request("GET", "/events")
        response = connection.getresponse()
        assert response.headers["Content-Type"] == "text/event-stream"
        line = response.readline()
        assert line.startswith(b"data: ") and json.loads(line[6:])["event"]["frame"] >= 0
        connection.close()


def test_a_real_mjpeg_client_gets_decodable_frames_at_the_capped_rate(models, cat_video):
    _, onnx_model, _ = models
    frames = video_frames(cat_video)
    with live_run(onnx_model, LoopingSource(frames, period=1 / 60), serve_fps=8.0) as (url, _):
        capture = cv2.VideoCapture(url + "/stream.mjpg", cv2.CAP_FFMPEG)
        assert capture.isOpened(), "OpenCV's FFmpeg cannot open the MJPEG stream"
        received, started = [], time.perf_counter()
        while len(received) < 9:
            ok, image = capture.read()
            assert ok and image.shape == frames[0].shape
            received.append(image)
        seconds = time.perf_counter() - started
        capture.release()
    assert seconds >= 8 / 8.0 * 0.8, f"9 frames in {seconds:.2f} s: the --serve-fps cap of 8 was not kept"
    changes = sum(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(received, received[1:]))
    assert changes >= 6, "the stream must follow the newest frame"


def test_a_viewer_that_stops_reading_does_not_stall_the_pipeline(models):
    _, onnx_model, _ = models
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (480, 640, 3), np.uint8) for _ in range(3)]  # ~400 kB JPEGs: buffers fill fast
    source = LoopingSource(noise, period=0.0)
    with live_run(onnx_model, source, serve_fps=30.0) as (url, result):
        def frames_in(seconds: float) -> int:
            before = get(url + "/status.json")[1]["frames"]
            time.sleep(seconds)
            return get(url + "/status.json")[1]["frames"] - before

        alone = frames_in(1.5)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((urlsplit(url).hostname, urlsplit(url).port))
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert stalled.recv(64).startswith(b"HTTP/1.1 200")  # then never read again
        time.sleep(2.0)  # 30 fps x ~400 kB: far more than the socket buffers hold
        with_stalled = frames_in(1.5)
        capture = cv2.VideoCapture(url + "/stream.mjpg", cv2.CAP_FFMPEG)
        fresh = [capture.read()[1] for _ in range(4)]
        capture.release()
        assert get(url + "/metrics")[0] == 200
    assert with_stalled >= 0.3 * alone and with_stalled > 10, (alone, with_stalled)
    assert all(f is not None and f.shape == (480, 640, 3) for f in fresh), "another viewer still gets frames"
    assert result["summary"].frames > alone
    stalled.close()


def mjpeg_parts(url: str, count: int) -> list[np.ndarray]:
    """The first `count` JPEGs of an MJPEG stream, read part by part as a browser does."""
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    connection.request("GET", url[len(f"http://{urlsplit(url).netloc}"):])
    response, images = connection.getresponse(), []
    assert response.status == 200 and response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    while len(images) < count:
        assert response.readline() == b"--frame\r\n"
        headers = dict(response.readline().decode().strip().split(": ", 1) for _ in range(2))
        assert headers["Content-Type"] == "image/jpeg" and response.readline() == b"\r\n"
        body = response.read(int(headers["Content-Length"]))
        assert response.read(2) == b"\r\n"
        images.append(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR))
    connection.close()
    return images


def samples(text: str, family: str, suffix: str = "") -> dict[tuple, float]:
    """{label values in the order of their names: value} of a family's samples named family + suffix."""
    found = {f.name: f for f in text_string_to_metric_families(text)}[family]
    return {tuple(v for _, v in sorted(s.labels.items())): s.value for s in found.samples if s.name == family + suffix}


def test_two_cameras_at_once_each_with_its_picture_state_strip_metrics_and_health(models, tmp_path):
    _, onnx_model, _ = models
    a = LoopingSource(video_frames(write_video(tmp_path / "a.mp4", 6, size=(160, 120))))
    b = LoopingSource(video_frames(write_video(tmp_path / "b.mp4", 6, size=(96, 128))))
    dead = open_source("rtsp://user:pw@127.0.0.1:9/none", capture_factory=lambda target: None)
    sources = {"a": a, "b": b, "c": dead}
    with live_run(onnx_model, sources, serve_fps=20.0, give_up_s=5.0) as (url, result):
        wait_for(lambda: min(s["frames"] for s in get(url + "/status.json")[1]["sources"][:2]) >= 3)
        status = get(url + "/status.json")[1]
        shown = {s["name"]: s for s in status["sources"]}
        assert list(shown) == ["a", "b", "c"] and "pw" not in json.dumps(status)
        assert [shown[name]["state"] for name in "ab"] == ["live", "live"]
        assert shown["c"]["state"] in ("connecting", "given up")  # it never connects
        assert shown["c"]["frames"] == 0 and shown["c"]["event"] is None and shown["c"]["history"] == []
        assert shown["c"]["problem"].startswith("cannot open the stream") and shown["c"]["source"].count("***")
        for name in "ab":
            source = shown[name]
            assert source["frames"] >= 3 and source["event"]["source"] == name and source["fps"] > 0
            assert source["label"] == source["event"]["label"] and source["confidence"] == source["event"]["confidence"]
            offsets = [offset for offset, _ in source["history"]]
            assert offsets and offsets == sorted(offsets) and -status["history_s"] - 0.1 <= offsets[0] <= 0
            assert {label for _, label in source["history"]} <= set(status["classes"]) | {"uncertain"}
        assert status["frames"] >= shown["a"]["frames"] + shown["b"]["frames"] - 4  # counted a moment apart

        assert get(url + "/snapshot.jpg?source=b")[1].shape == (128, 96, 3)
        assert get(url + "/snapshot.jpg?source=a")[1].shape == get(url + "/snapshot.jpg")[1].shape == (120, 160, 3)
        assert [image.shape for image in mjpeg_parts(url + "/stream.mjpg?source=a", 3)] == [(120, 160, 3)] * 3
        assert [image.shape for image in mjpeg_parts(url + "/stream.mjpg?source=b", 2)] == [(128, 96, 3)] * 2
        assert get(url + "/snapshot.jpg?source=c")[0] == 503  # known, but no frame yet
        for unknown in ("zzz", "%3Cscript%3Ealert(1)%3C/script%3E"):
            for path in ("/snapshot.jpg", "/stream.mjpg"):
                code, text, _ = get(url + f"{path}?source={unknown}")
                assert code == 404 and "script" not in text and "zzz" not in text

        text = get(url + "/metrics")[1]
        frames = samples(text, "catmood_frames", "_total")
        assert frames[("a",)] >= 3 and frames[("b",)] >= 3 and frames[("c",)] == 0
        assert samples(text, "catmood_source_up") == {("a",): 1, ("b",): 1, ("c",): 0}
        assert set(samples(text, "catmood_frames_dropped", "_total")) == {("a",), ("b",), ("c",)}
        assert set(samples(text, "catmood_source_reconnects", "_total")) == {("a",), ("b",), ("c",)}
        assert samples(text, "catmood_fps")[("a",)] > 1 and samples(text, "catmood_fps")[("c",)] == 0
        assert {source for _, source in samples(text, "catmood_labels", "_total")} == {"a", "b"}
        latency = samples(text, "catmood_stage_latency_seconds", "_count")
        assert {labels[1] for labels in latency} == STAGES and {labels[0] for labels in latency} == {"a", "b"}

        code, text, _ = get(url + "/healthz")
        assert code == 503 and text in ("c: connecting\n", "c: given up\n"), text
    assert {s.name: s.state for s in result["summary"].sources} == {"a": "ended", "b": "ended", "c": "given up"}


def test_healthz_names_every_source_that_is_down_and_only_its_name():
    bare = LiveView("127.0.0.1:0", ["calm"], echo=lambda *a: None)
    try:
        assert get(f"http://127.0.0.1:{bare.port}/healthz")[:2] == (200, "ok\n")  # no source known yet
    finally:
        bare.close()
    view, url = start_view()
    rows = [dict(name=name, source=f"rtsp://user:***@host/{name}", kind="stream", state=state, frames=0, dropped=0,
                 reconnects=2, end_reason="", problem="</script><script>alert(1)</script>")
            for name, state in (("a", "live"), ("b", "ended"), ("c", "removed"))]
    view.sources = lambda: rows
    try:
        assert get(url + "/healthz")[:2] == (200, "ok\n")
        for name, state in (("d", "lost"), ("e", "given up"), ("f", "connecting"), ("g", "failed")):
            rows.append(dict(rows[0], name=name, state=state))
        code, text, _ = get(url + "/healthz")
        assert code == 503 and text.splitlines() == ["d: lost", "e: given up", "f: connecting", "g: failed"]
        page = get(url + "/")[1]
        assert "alert" in page and "<script>alert" not in page, "source text must not end the page's script"
        status = get(url + "/status.json")[1]
        assert [s["name"] for s in status["sources"]] == ["a", "b", "c", "d", "e", "f", "g", "cam0"]
        assert status["sources"][-1]["state"] == "live" and status["sources"][-1]["label"] == "calm"
        up = samples(get(url + "/metrics")[1], "catmood_source_up")
        assert up[("a",)] == up[("cam0",)] == 1 and up[("d",)] == up[("b",)] == 0
    finally:
        view.close()


def test_the_strip_keeps_each_change_once_shows_gaps_and_covers_its_window():
    camera = Camera("a")
    times = [(0.0, "calm"), (0.1, "calm"), (0.2, "angry"), (0.3, "angry"), (0.3 + GAP_S + 1, "angry"),
             (0.4 + GAP_S + 1, "calm")]
    for seq, (t, label) in enumerate(times):
        camera.publish(seq, None, dict(label=label), 10.0, t)
    now = 0.4 + GAP_S + 2
    assert camera.strip(now, 100.0) == [[-now, "calm"], [round(0.2 - now, 1), "angry"], [round(0.3 - now, 1), None],
                                        [-1.1, "angry"], [-1.0, "calm"]]
    assert camera.strip(now, 1.5) == [[-1.5, None], [-1.1, "angry"], [-1.0, "calm"]]  # what held at its start
    assert camera.strip(now + GAP_S + 1, 100.0)[-1] == [round(-GAP_S - 2, 1), None]  # frames stopped since
    assert camera.frames == 6 and camera.labels == {"calm": 3, "angry": 3}
    for seq in range(2 * HISTORY_CAP):
        camera.publish(seq, None, dict(label="calm" if seq % 2 else "angry"), 10.0, 10 + seq / 100)
    assert len(camera.history) == HISTORY_CAP


def start_view(token=None, address="127.0.0.1:0", echo=None):
    view = LiveView(address, ["calm", "angry"], token=token, fps=50, echo=echo or (lambda *a: None))
    image = np.full((48, 64, 3), 90, np.uint8)
    event = dict(frame=0, time=0.0, label="calm", confidence=0.9, probs=dict(calm=0.9, angry=0.1),
                 smoothed=dict(calm=0.9, angry=0.1), latency_ms={"inference": 1.0})
    view.publish(image, event, {"inference": 1.0}, 25.0)
    return view, f"http://127.0.0.1:{view.port}"


def test_a_wrong_token_gets_401_and_the_right_one_200(monkeypatch):
    view, url = start_view(token="s3cret")
    try:
        for path in ("/", "/status.json", "/snapshot.jpg", "/metrics", "/stream.mjpg", "/events"):
            code, _, head = get(url + path)
            assert code == 401 and head["WWW-Authenticate"].startswith("Bearer"), path
            assert get(url + path + "?token=wrong")[0] == 401
            assert get(url + path, headers={"Authorization": "Bearer s3cre"})[0] == 401
        assert get(url + "/status.json?token=s3cret")[1]["event"]["label"] == "calm"
        assert get(url + "/snapshot.jpg", headers={"Authorization": "Bearer s3cret"})[1].shape == (48, 64, 3)
        assert get(url + "/healthz")[0] == 200  # health checks carry no token and learn nothing
    finally:
        view.close()
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    view, url = start_view()
    try:
        assert get(url + "/status.json")[0] == 401 and get(url + "/status.json?token=from-env")[0] == 200
    finally:
        view.close()


def test_default_bind_is_loopback_and_addresses_are_checked(capsys):
    args = cli.build_parser().parse_args(["run", "m.onnx", "--source", "0", "--serve", "0"])
    assert args.serve == "0" and args.serve_fps == RuntimeOptions.default("serve_fps")
    assert RuntimeOptions.default("serve") is None and serve_address("8080") == ("127.0.0.1", 8080)
    assert serve_address("0.0.0.0:80") == ("0.0.0.0", 80) and serve_address("[::1]:9") == ("::1", 9)
    view, _ = start_view(address=args.serve)
    try:
        assert view.server.server_address[0] == "127.0.0.1" and view.url == f"http://127.0.0.1:{view.port}/"
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect(("192.0.2.1", 9))  # no packet is sent: only asks which local address routes there
        here = probe.getsockname()[0]
        probe.close()
        if not here.startswith("127."):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((here, view.port), timeout=5)
        with pytest.raises(CatmoodError, match="cannot listen there"):
            LiveView(f"127.0.0.1:{view.port}", ["calm"])
    finally:
        view.close()
    for bad in ("abc", "70000", "host:", "-1"):
        with pytest.raises(CatmoodError, match="--serve must be"):
            RuntimeOptions(serve=bad)
    assert cli.main(["run", "m.onnx", "--source", "0", "--serve", "localhost"]) == 2
    assert capsys.readouterr().err.strip() == ("catmood: error: --serve must be [HOST:]PORT with PORT a number "
                                               "0-65535, got 'localhost'")
    with pytest.raises(CatmoodError, match="give --serve"):
        RuntimeOptions(serve_token="x")
    with pytest.raises(CatmoodError, match="--serve-fps"):
        RuntimeOptions(serve="0", serve_fps=0)
    notes = []
    start_view(address="0.0.0.0:0", echo=notes.append)[0].close()
    assert any("open to anyone" in note for note in notes)


def test_close_ends_open_streams_and_frees_the_port():
    view, url = start_view()
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    connection.request("GET", "/stream.mjpg")
    response = connection.getresponse()
    assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    started = time.perf_counter()
    view.close()
    assert time.perf_counter() - started < 5
    response.read()  # ends: the server closed the stream
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", view.port), timeout=5)


def test_cli_run_with_serve_reports_the_bound_port_and_stops_at_the_end(models, cat_video, tmp_path, capsys):
    _, onnx_model, _ = models
    codes = []
    thread = threading.Thread(target=lambda: codes.append(cli.main(
        ["run", str(onnx_model), "--source", str(cat_video), "--realtime", "--serve", "127.0.0.1:0",
         "--events", str(tmp_path / "ev.jsonl"), "--summary", str(tmp_path / "summary.json")])), daemon=True)
    thread.start()
    printed, url = "", None
    while url is None and thread.is_alive():
        printed += capsys.readouterr().out
        found = re.search(r"live view: (http://127\.0\.0\.1:\d+/)", printed)
        url = found and found.group(1)
    assert url, printed
    wait_for(lambda: get(url + "status.json")[1]["frames"] >= 1, timeout=30)
    assert get(url + "healthz")[0] == 200
    thread.join(60)
    assert codes == [0]
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "healthz", timeout=5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] + summary["dropped"] == 40  # --realtime drops frames that are late
    assert len((tmp_path / "ev.jsonl").read_text().splitlines()) == summary["frames"] > 0


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_the_page_in_headless_chromium_shows_every_camera_with_its_strip(models, cat_video, tmp_path):
    _, onnx_model, _ = models
    frames = video_frames(cat_video)  # one frame each, again and again: the moods settle
    stills = {"a": frames[5], "b": cv2.resize(frames[30], (96, 128), interpolation=cv2.INTER_AREA)}
    sources = {name: LoopingSource([still]) for name, still in stills.items()}
    with live_run(onnx_model, sources, serve_token="t0ken") as (url, _):
        wait_for(lambda: min(s["frames"] for s in get(url + "/status.json", token="t0ken")[1]["sources"]) > 20)
        shot = screenshot(url + "/?token=t0ken", tmp_path / "page.png")
        status = get(url + "/status.json", token="t0ken")[1]
        snapshots = {name: get(url + f"/snapshot.jpg?source={name}", token="t0ken")[1] for name in stills}
    assert shot is not None, "chromium wrote no screenshot"
    tiles = page_tiles(shot)
    assert len(tiles) == 2, f"{len(tiles)} camera tiles on the page"
    strip_colours = [*status["colours"].values(), GREY, TRACK]
    for (x, y, w, h), source in zip(tiles, status["sources"]):
        snapshot = snapshots[source["name"]]
        sh, sw = snapshot.shape[:2]
        scale = min(w / sw, w * 3 / 4 / sh)  # the picture is contained in a 4:3 box as wide as the tile
        dw, dh = round(sw * scale), round(sh * scale)
        left, top = x + (w - dw) // 2, y + (round(w * 3 / 4) - dh) // 2
        shown = cv2.resize(shot[top:top + dh, left:left + dw], (sw, sh), interpolation=cv2.INTER_AREA).astype(int)
        assert np.abs(shown - snapshot).mean() < 12, f"{source['name']}'s tile does not show its stream"
        info = shot[y + round(w * 3 / 4):y + h, x + 12:x + w - 12].astype(int)
        near = [np.abs(info - hex_bgr(c)).sum(axis=2) <= 6 for c in strip_colours]
        rows = [r for r in range(info.shape[0]) if np.any(near, axis=0)[r].mean() > 0.97 and not near[-1][r].all()]
        assert rows, f"no mood strip under {source['name']}'s picture"
        now = info[rows[len(rows) // 2], -2]
        assert np.abs(now - hex_bgr(status["colours"].get(source["label"], GREY))).sum() <= 6, "the strip ends " \
            "in the colour of the mood now"
        badge = np.abs(shot[y:y + h, x:x + w].astype(int) - hex_bgr(LIVE_BADGE)).sum(axis=2) <= 6
        assert badge.sum() > 100, f"{source['name']} has no live badge"


PAGE, TRACK, GREY, LIVE_BADGE = "#16181d", "#353944", "#969696", "#4cc38a"  # live.html's colours


def hex_bgr(colour: str) -> list[int]:
    return [int(colour[i:i + 2], 16) for i in (5, 3, 1)]


def page_tiles(shot: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x, y, width, height) of each camera tile, in reading order: the large areas not of the page's colour."""
    mask = (np.abs(shot.astype(int) - hex_bgr(PAGE)).sum(axis=2) > 12).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    boxes = [tuple(int(v) for v in stats[i][:4]) for i in range(1, count) if stats[i][2] > 200 and stats[i][3] > 200]
    return sorted(boxes, key=lambda box: (box[1] // 50, box[0]))


def screenshot(url: str, path) -> np.ndarray | None:
    """Chromium's screenshot of `url`, once the page has loaded (the streams' first frames in) or `--timeout`
    ms have passed (it stops the load), with a longer try on a busy machine until the strips are drawn."""
    for milliseconds in (3000, 8000):
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1000,700", f"--timeout={milliseconds}", f"--screenshot={path}", url],
                       capture_output=True, timeout=120)
        shot = cv2.imread(str(path))
        if shot is not None and (np.abs(shot.astype(int) - hex_bgr(TRACK)).sum(axis=2) == 0).sum() > 100:
            return shot
    return shot


def raw_get(port: int, host: str | None, path: str = "/status.json") -> tuple[int, dict]:
    """(status, headers) of a GET sent as typed, with this Host header (None: no Host at all)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "Connection: close\r\n\r\n"
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
            data += chunk
    lines = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


def test_only_requests_that_name_this_server_are_answered_dns_rebinding_is_refused():
    view = LiveView("127.0.0.1:0", ["calm"], hosts=("catbox.lan",), echo=lambda *a: None)
    try:
        port = view.port
        for host in (f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", f"[::1]:{port}", "10.0.0.7:8080",
                     "catbox.lan", f"catbox.lan.:{port}", None):
            assert raw_get(port, host)[0] == 200, host
        for host in ("evil.example", f"evil.example:{port}", "catbox.lan.evil.example", "localhost.evil", ""):
            for path in ("/status.json", "/snapshot.jpg", "/healthz", "/"):
                assert raw_get(port, host, path)[0] == 421, (host, path)
    finally:
        view.close()


def test_every_answer_carries_the_hardening_headers_and_no_python_version():
    view, _ = start_view(token="t0ken")
    try:
        for path, code in (("/", 401), ("/?token=t0ken", 200), ("/healthz", 200), ("/nothing?token=t0ken", 404)):
            status, headers = raw_get(view.port, "localhost", path)
            assert status == code, path
            assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["server"].startswith("catmood") and "python" not in headers["server"].lower()
    finally:
        view.close()


def test_an_empty_token_is_refused_in_one_line_and_the_banner_says_whether_one_is_needed(models, capsys,
                                                                                          monkeypatch):
    _, onnx_model, _ = models
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert cli.main(["run", str(onnx_model), "--source", "0", "--serve", "0", "--serve-token", ""]) == 2
    err = capsys.readouterr().err
    assert "--serve-token is empty" in err and err.count("\n") == 1
    lines = []
    for token in (None, "t0ken"):
        view = LiveView("127.0.0.1:0", ["calm"], token=token, echo=lines.append)
        view.close()
    assert "(no token: open to whoever reaches it)" in lines[0] and "(token required)" in lines[1]
