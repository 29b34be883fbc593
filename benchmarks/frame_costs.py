"""Where a camera frame's CPU time goes in `catmood run`: decoding (a video file, an MJPEG stream), the spec's
preprocessing, and inference per image at the batch sizes the many-camera scheduler sends (and with ONNX
Runtime's pool threads spinning between runs, its default, and not, catmood's); so how many 15 fps cameras a
machine can hold at most.

Reproduce:  PYTHONPATH=$PWD .venv/bin/python benchmarks/frame_costs.py [--graphs float int8] [--seconds 3]
Each part runs alone, for --seconds of wall time, and is timed in CPU seconds of the whole process (threads
included: ONNX Runtime's pool, FFmpeg's decoder threads). Models are random-init tf_efficientnet_lite0 at 224 px
(weights do not change speed), exported as `catmood export` does; the INT8 file as multi_camera.py makes it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mjpeg_cameras import ClipCamera, encode_clip  # noqa: E402
from multi_camera import MODEL, make_clip, make_int8  # noqa: E402
from runtime_fps import make_onnx  # noqa: E402

from catmood.backends import select_classifier  # noqa: E402
from catmood.preprocess import preprocess  # noqa: E402
from catmood.tables import format_table  # noqa: E402

BATCHES = (1, 4, 12, 16)


def cpu_ms_per_item(step, seconds: float) -> tuple[float, float]:
    """(CPU ms per item, items per wall second) of `step()`, which returns how many items it did."""
    step()  # warm-up
    cpu, wall, items = time.process_time(), time.perf_counter(), 0
    while time.perf_counter() - wall < seconds:
        items += step()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / items * 1000, items / wall


def decoding(clip: Path, jpegs: list[bytes], seconds: float) -> list[list]:
    capture = cv2.VideoCapture(str(clip))

    def read_file() -> int:
        ok, _ = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return 1

    rows = [["decode", "video file (mp4v 640x480)", *cpu_ms_per_item(read_file, seconds)]]
    # Served as fast as it is read (the server's socket writes, in this process, are counted too: small).
    with ClipCamera(jpegs, fps=1000.0, max_frames=10**9) as camera:
        stream = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)
        rows.append(["decode", "MJPEG stream (640x480)", *cpu_ms_per_item(lambda: int(stream.read()[0]), seconds)])
        stream.release()
    return rows


def preprocessing(clip: Path, spec, seconds: float) -> list[list]:
    frame = cv2.VideoCapture(str(clip)).read()[1]
    out = np.empty((1, 3, spec.input_size, spec.input_size), np.float32)
    return [["preprocess", f"640x480 -> {spec.input_size} px, float", *cpu_ms_per_item(
        lambda: len(preprocess(frame, spec, out=out)), seconds)]]


def inference(model: Path, graph: str, seconds: float) -> list[list]:
    classifier = select_classifier(model, device="cpu")
    rows = []
    for batch in BATCHES:
        x = np.random.default_rng(0).random((batch, 3, 224, 224), np.float32)
        rows.append(["inference", f"{graph}, batch {batch}", *cpu_ms_per_item(
            lambda: len(classifier.predict(x)), seconds)])
    return rows


def spinning(model: Path, seconds: float) -> list[list]:
    """ONNX Runtime with its pool threads spinning between runs (its default) and without (catmood's)."""
    import onnxruntime as ort

    rows = []
    for spin in ("1", "0"):
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for batch in (1, 4, 12):
            x = np.random.default_rng(0).random((batch, 3, 224, 224), np.float32)
            rows.append(["inference", f"float, batch {batch}, spinning {'on' if spin == '1' else 'off'}",
                         *cpu_ms_per_item(lambda: len(session.run(None, {name: x})[0]), seconds)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", nargs="+", choices=("float", "int8"), default=["float", "int8"])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip.mp4", 4)
        rows = decoding(clip, encode_clip(clip), args.seconds)
        model = make_onnx(MODEL, tmp, "float32")
        rows += preprocessing(clip, select_classifier(model, device="cpu").spec, args.seconds)
        rows += spinning(model, args.seconds)
        for graph in args.graphs:
            rows += inference(model if graph == "float" else make_int8(model, tmp), graph, args.seconds)
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(format_table(["stage", "what", "CPU ms per frame/image", "per wall second"],
                       [[s, w, f"{ms:.2f}", f"{rate:.0f}"] for s, w, ms, rate in rows], align_left=2))


if __name__ == "__main__":
    main()
