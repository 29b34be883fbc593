"""Cat-face detectors: boxes against the true face of a real photo (IoU) at several sizes and places, and a
user's ONNX object detector's outputs decoded into frame boxes (generated models with known outputs)."""

import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from catmood.errors import CatmoodError
from catmood.runtime.faces import HaarCatFaceDetector, covered, iou
from catmood.runtime.onnx_detector import OnnxCatDetector

DATA = Path(__file__).parent / "data"
CHELSEA = cv2.imread(str(DATA / "chelsea.png"))
# The face in chelsea.png (451x300), read off the image by eye: ears cut by the top edge, chin at the
# bottom, cheeks from x=30 to x=365. Kept in chelsea.json for benchmarks/cat_faces.py as well.
CHELSEA_FACE = (30, 0, 335, 300)


def test_the_recorded_face_box_is_the_one_in_the_data_file():
    assert tuple(json.loads((DATA / "chelsea.json").read_text())["face_box"]) == CHELSEA_FACE
    assert CHELSEA.shape == (300, 451, 3)


def paste(width_share: float, place, frame=(240, 320)):
    """chelsea.png scaled to `width_share` of a grey frame at `place`; (frame, the true face box in it)."""
    height, width = frame
    w = int(round(width_share * width))
    scale = w / CHELSEA.shape[1]
    h = int(round(CHELSEA.shape[0] * scale))
    out = np.full((height, width, 3), 128, np.uint8)
    x, y = int(place[0] * (width - w)), int(place[1] * (height - h))
    out[y:y + h, x:x + w] = cv2.resize(CHELSEA, (w, h), interpolation=cv2.INTER_AREA)
    face = tuple(int(round(v)) for v in (x + CHELSEA_FACE[0] * scale, y + CHELSEA_FACE[1] * scale,
                                         CHELSEA_FACE[2] * scale, CHELSEA_FACE[3] * scale))
    return out, face


@pytest.mark.parametrize("share, place", [(0.3, (0.0, 0.0)), (0.4, (1.0, 1.0)), (0.5, (0.5, 0.5)),
                                          (0.65, (0.2, 0.8)), (0.8, (1.0, 0.0)), (1.0, (0.0, 0.5))])
def test_haar_finds_the_real_face_at_its_place(share, place):
    frame, face = paste(share, place)
    boxes = HaarCatFaceDetector().detect(frame)
    assert len(boxes) == 1, boxes  # the face, and no false box on its nose or eye
    assert iou(boxes[0], face) >= 0.5, (boxes, face)


def test_a_face_filling_the_frame_is_found_only_thanks_to_the_shrunk_copies():
    (box,) = HaarCatFaceDetector().detect(CHELSEA)
    assert iou(box, CHELSEA_FACE) >= 0.6 and box[2] >= 250
    frame_only = HaarCatFaceDetector(copies=()).detect(CHELSEA)  # the cascade alone: a patch beside the nose
    assert all(iou(b, CHELSEA_FACE) < 0.2 for b in frame_only)


def test_haar_finds_nothing_on_a_plain_wall_and_boxes_stay_in_the_frame():
    assert HaarCatFaceDetector().detect(np.full((240, 320, 3), 128, np.uint8)) == []
    frame, _ = paste(1.0, (0.0, 0.0))
    for x, y, w, h in HaarCatFaceDetector().detect(frame):
        assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 240
    assert covered((10, 10, 10, 10), (0, 0, 15, 15)) == pytest.approx(0.25)


# ---- a user's ONNX detector -------------------------------------------------------------------------------

def save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime catmood supports
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_yolo(path: Path, table: np.ndarray, side: int = 64, dtype=TensorProto.FLOAT) -> Path:
    """A YOLOv8-layout model [1, 3, side, side] -> `table` (its output whatever the image; the input is
    used, times zero, so the graph is a real function of it)."""
    nodes = [helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["pixels"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Add", ["table", "nothing"], ["output0"])]
    graph = helper.make_graph(nodes, "yolo", [helper.make_tensor_value_info("images", dtype, [1, 3, side, side])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(table.shape))],
                              [numpy_helper.from_array(table.astype(np.float32), "table"),
                               numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    return save(graph, path)


def yolo_table(rows, classes: int = 80, boxes: int = 100) -> np.ndarray:
    """rows: (cx, cy, w, h, class, score) in model input pixels."""
    table = np.zeros((1, 4 + classes, boxes), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(rows):
        table[0, :4, i] = cx, cy, w, h
        table[0, 4 + cls, i] = score
    return table


def test_yolo_layout_is_decoded_into_frame_boxes(tmp_path):
    model = constant_yolo(tmp_path / "yolo.onnx", yolo_table([
        (32, 32, 20, 16, 15, 0.90),   # a cat
        (33, 32, 20, 16, 15, 0.80),   # the same cat again: suppressed
        (10, 20, 8, 8, 16, 0.95),     # a dog
        (50, 50, 10, 10, 15, 0.10),   # a cat too unsure to keep
        (58, 12, 16, 12, 15, 0.60),   # a cat reaching over the letterbox border: clipped to the frame
    ]))
    detector = OnnxCatDetector(model)
    frame = np.zeros((96, 128, 3), np.uint8)  # into 64x64: scale 0.5, 8 grey rows above and below
    assert detector.detect(frame) == [(44, 32, 40, 32), (100, 0, 28, 20)]
    assert OnnxCatDetector(model, class_id=16).detect(frame) == [(12, 16, 16, 16)]
    assert OnnxCatDetector(model, score=0.95).detect(frame) == []


def test_torchvision_layout_reads_rgb_in_0_to_1(tmp_path):
    """scores = the mean of the input's first channel: a red frame (BGR 0,0,255) scores 1 only if the
    detector feeds RGB scaled to 0..1; the boxes come in x1, y1, x2, y2 of the frame itself."""
    nodes = [helper.make_node("Slice", ["images", "starts", "ends", "axes"], ["red"]),
             helper.make_node("ReduceMean", ["red"], ["mean"], keepdims=0),
             helper.make_node("Reshape", ["mean", "one"], ["mean1"]),
             helper.make_node("Concat", ["mean1", "half"], ["scores"], axis=0),
             helper.make_node("Identity", ["box_values"], ["boxes"]),
             helper.make_node("Identity", ["label_values"], ["labels"])]
    init = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
            (("starts", [0]), ("ends", [1]), ("axes", [1]), ("one", [1]))]
    init += [numpy_helper.from_array(np.array([0.5], np.float32), "half"),
             numpy_helper.from_array(np.array([[10, 20, 50, 60], [0, 0, 30, 30]], np.float32), "box_values"),
             numpy_helper.from_array(np.array([17, 18], np.int64), "label_values")]
    graph = helper.make_graph(nodes, "tv",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, 4]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("labels", TensorProto.INT64, [2])], init)
    model = save(graph, tmp_path / "tv.onnx")
    red, blue = np.zeros((80, 100, 3), np.uint8), np.zeros((80, 100, 3), np.uint8)
    red[:, :, 2], blue[:, :, 0] = 255, 255
    assert OnnxCatDetector(model, class_id=17).detect(red) == [(10, 20, 40, 40)]
    assert OnnxCatDetector(model, class_id=17).detect(blue) == []
    assert OnnxCatDetector(model, class_id=18).detect(blue) == [(0, 0, 30, 30)]  # score 0.5, any colour


def test_other_layouts_and_bad_files_are_refused_in_one_line(tmp_path):
    cases = [(constant_yolo(tmp_path / "v5.onnx", np.zeros((1, 200, 85), np.float32)), "one row per box"),
             (constant_yolo(tmp_path / "cls.onnx", np.zeros((1, 3), np.float32)), "not a detector layout"),
             (constant_yolo(tmp_path / "small.onnx", yolo_table([], classes=3)), "not one of its 3 classes"),
             (constant_yolo(tmp_path / "u8.onnx", yolo_table([]), dtype=TensorProto.UINT8), "a test frame did not run")]
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    cases += [(tmp_path / "junk.onnx", "cannot open it as a detector"), (tmp_path / "none.onnx", "not found")]
    for path, words in cases:
        with pytest.raises(CatmoodError) as caught:
            OnnxCatDetector(path)
        assert words in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_detection_is_its_own_stage_in_the_timings(models, tmp_path):
    from catmood.backends import select_classifier
    from catmood.runtime.classify import classify_frames
    from catmood.runtime.options import RuntimeOptions
    from catmood.runtime.sources import open_source

    from conftest import write_video

    class SlowDetector:
        def detect(self, frame):
            time.sleep(0.05)
            return [(10, 10, 60, 60)]

    _, onnx_model, _ = models
    video = write_video(tmp_path / "v.mp4", 3)
    results = list(classify_frames(select_classifier(onnx_model), open_source(str(video)),
                                   RuntimeOptions(faces=True), detector=SlowDetector()))
    for r in results:
        assert list(r.latency_ms) == ["capture", "detect", "preprocess", "inference", "postprocess"]
        assert r.latency_ms["detect"] >= 50 > r.latency_ms["preprocess"]
