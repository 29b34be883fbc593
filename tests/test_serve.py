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
from prometheus_client.parser import text_string_to_metric_families

from catmood import cli
from catmood.data.synth.video import render_mood_video
from catmood.errors import CatmoodError
from catmood.runtime.options import TOKEN_ENV, RuntimeOptions, serve_address
from catmood.runtime.pipeline import run_pipeline
from catmood.runtime.serve import LiveView
from catmood.runtime.sources import Frame, FrameSource

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
def live_run(model, source: LoopingSource, **options):
    """run_pipeline with --serve on a free loopback port, on a thread; yields (base URL, result dict)."""
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
        source.stop.set()
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
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: test\r\n\r\n")
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
def test_the_page_in_headless_chromium_shows_the_stream_and_the_mood_bars(models, cat_video, tmp_path):
    _, onnx_model, _ = models
    still = video_frames(cat_video)[5]  # one frame again and again: the smoothed bars settle on its probabilities
    with live_run(onnx_model, LoopingSource([still]), serve_token="t0ken") as (url, _):
        wait_for(lambda: get(url + "/status.json", token="t0ken")[1]["frames"] > 40)
        shot = screenshot(url + "/?token=t0ken", tmp_path / "page.png")
        status = get(url + "/status.json", token="t0ken")[1]
        snapshot = get(url + "/snapshot.jpg", token="t0ken")[1]
    assert shot is not None, "chromium wrote no screenshot"
    background = np.array([29, 24, 22])  # the page's #16181d, BGR
    left = np.abs(shot[50:, :600].astype(int) - background).sum(axis=2) > 30
    ys, xs = np.nonzero(left)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min() + 50, ys.max() + 51
    assert x1 - x0 > 300 and abs((x1 - x0) / (y1 - y0) - 160 / 120) < 0.05, "the stream is not on the page"
    shown = cv2.resize(shot[y0:y1, x0:x1], (160, 120), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shown - snapshot).mean() < 12, "the page does not show the stream's frame"
    bars = bar_widths(shot[:, x1:], status["classes"], status["colours"])
    smoothed = status["event"]["smoothed"]
    assert set(bars) == set(smoothed), bars
    for name, p in smoothed.items():
        assert bars[name] == pytest.approx(200 * p, abs=3), (name, bars[name], p)


def screenshot(url: str, path) -> np.ndarray | None:
    """Chromium's screenshot of `url`; `--timeout` stops the load (the streams never finish) after n ms,
    with longer tries on a busy machine until the page has drawn its bars."""
    for milliseconds in (3000, 8000):
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1000,600", f"--timeout={milliseconds}", f"--screenshot={path}", url],
                       capture_output=True, timeout=120)
        shot = cv2.imread(str(path))
        if shot is not None and (np.abs(shot.astype(int) - [68, 57, 53]).sum(axis=2) == 0).sum() > 100:
            return shot  # the bars' empty tracks (#353944) are drawn
    return shot


def bar_widths(image: np.ndarray, classes, colours: dict[str, str]) -> dict[str, int]:
    """{class: filled pixels} of the mood bars, in the page's class order: the rows where a 200-px track
    (filled in the class colour + empty) runs, grouped into bars."""
    track = np.abs(image.astype(int) - [68, 57, 53]).sum(axis=2) <= 6
    fills = [np.abs(image.astype(int) - [int(colours[n][i:i + 2], 16) for i in (5, 3, 1)]).sum(axis=2) <= 6
             for n in classes]
    bar_rows = [y for y in range(image.shape[0]) if 190 <= (track[y] | np.any([f[y] for f in fills], axis=0)).sum() <= 210]
    groups = np.split(bar_rows, np.nonzero(np.diff(bar_rows) > 1)[0] + 1) if bar_rows else []
    assert len(groups) == len(classes), f"{len(groups)} bars on the page for {len(classes)} classes"
    return {name: int(fill[rows[len(rows) // 2]].sum()) for name, fill, rows in zip(classes, fills, groups)}
