"""The stand-in IP camera (tests/mjpeg.py) as OpenCV's FFmpeg backend sees it: frames, drops, silence, stalls."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from conftest import natural_image
from mjpeg import MjpegCamera

pytestmark = pytest.mark.skipif(not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG),
                                reason="this OpenCV has no FFmpeg backend")

TIMEOUTS_1S = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 1000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 1000]


def open_capture(url: str, params=None) -> cv2.VideoCapture:
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params or [])


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_frames_read_are_the_frames_served_in_order():
    sources = [natural_image(120, 160, seed=s) for s in range(3)]
    with MjpegCamera(frames=sources, fps=30) as camera:
        capture = open_capture(camera.url)
        assert capture.isOpened()
        for k in range(6):
            ok, image = capture.read()
            assert ok and image.shape == (120, 160, 3)
            diffs = [mean_diff(image, source) for source in sources]
            assert diffs[k % 3] < 6, diffs                     # JPEG loss only
            assert min(d for j, d in enumerate(diffs) if j != k % 3) > 4 * diffs[k % 3], diffs
        capture.release()
        assert camera.connections == 1 and camera.served >= 6


def test_drop_then_reconnect_serves_the_new_size():
    with MjpegCamera(fps=30) as camera:
        capture = open_capture(camera.url)
        assert capture.read()[0]
        camera.drop(0.5, size=(320, 240))
        t0 = time.perf_counter()
        while capture.read()[0]:                                # frames already buffered, then the drop
            assert time.perf_counter() - t0 < 1
        assert time.perf_counter() - t0 < 1
        capture.release()
        refused = open_capture(camera.url)                      # still down: connection reset
        assert not refused.isOpened()
        time.sleep(0.6)
        capture = open_capture(camera.url)
        ok, image = capture.read()
        assert ok and image.shape == (240, 320, 3)
        capture.release()


def test_silent_camera_open_is_bounded_by_the_open_timeout():
    with MjpegCamera(mode="silent") as camera:
        t0 = time.perf_counter()
        capture = open_capture(camera.url, TIMEOUTS_1S)
        elapsed = time.perf_counter() - t0
        assert not capture.isOpened()
        assert 0.8 < elapsed < 2.5, elapsed
        assert camera.connections == 1 and camera.served == 0


def test_stalled_stream_read_gives_up_at_the_read_timeout():
    with MjpegCamera(fps=30) as camera:
        capture = open_capture(camera.url, TIMEOUTS_1S)
        assert capture.read()[0]
        camera.stall(10)
        t0 = time.perf_counter()
        read = 0
        while capture.read()[0]:                                # a frame sent before the stall, if any
            read += 1
        elapsed = time.perf_counter() - t0
        assert read <= 2 and 0.8 < elapsed < 2.5, (read, elapsed)
        capture.release()


def test_a_short_stall_only_delays_the_next_frame():
    with MjpegCamera(fps=30) as camera:
        capture = open_capture(camera.url, TIMEOUTS_1S)
        assert capture.read()[0]
        camera.stall(0.4)
        gaps = []
        for _ in range(4):
            t0 = time.perf_counter()
            assert capture.read()[0]
            gaps.append(time.perf_counter() - t0)
        assert 0.3 < max(gaps) < 0.9, gaps
        capture.release()


def test_max_frames_ends_the_stream_after_exactly_that_many():
    with MjpegCamera(fps=60, max_frames=5) as camera:
        capture = open_capture(camera.url)
        read = 0
        while capture.read()[0]:
            read += 1
        assert read == 5 and camera.served == 5 and camera.ended
        assert not open_capture(camera.url).isOpened()


def test_basic_auth_needs_the_credentials_in_the_url():
    with MjpegCamera(fps=30, auth=("cam", "s3cret")) as camera:
        assert not open_capture(camera.url).isOpened()
        assert not open_capture(camera.url_with("cam", "wrong")).isOpened()
        capture = open_capture(camera.url_with("cam", "s3cret"))
        assert capture.read()[0]
        capture.release()
        assert camera.requests[-1]["headers"]["authorization"].startswith("Basic ")


def test_closed_port_is_refused_at_once():
    with MjpegCamera(mode="closed") as camera:
        t0 = time.perf_counter()
        assert not open_capture(camera.url).isOpened()
        assert time.perf_counter() - t0 < 1
