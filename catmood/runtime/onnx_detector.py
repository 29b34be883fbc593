"""A user's ONNX object detector as the runtime's FaceDetector: the boxes of one class (COCO's "cat").

Two output layouts are read, and anything else is refused with one line when the model is opened:
- YOLOv8 / YOLO11 (an Ultralytics export): one output [1, 4 + classes, boxes]; per box its centre x,
  centre y, width and height in input pixels, then one score per class (no objectness). The input is
  [1, 3, H, W] float RGB in 0..1, the frame letterboxed into it on grey (114), as Ultralytics feeds it.
- torchvision-style: three outputs boxes [N, 4] (x1, y1, x2, y2 in input pixels), scores [N], labels [N],
  found by name or else by shape; the input [3, H, W] or [1, 3, H, W] float RGB in 0..1 (such a model
  normalises inside). With fixed input sides the frame is letterboxed into them; with free ones it goes
  in at its own size.
Class ids differ between exports: COCO's 80-class list (YOLO) has the cat at 15, the 91-id numbering
(torchvision) at 17. A COCO detector boxes the whole cat, not its face; the mood classifier gets that box.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import CatmoodError
from .faces import Box, clip_box

SCORE_THRESHOLD = 0.25  # Ultralytics' default confidence
NMS_IOU = 0.45
LETTERBOX_GREY = 114
FREE_SIDE = 640  # a YOLO input whose sides the graph leaves free is fed at this size
LAYOUTS = ("YOLOv8-style [1, 4+classes, boxes]", "torchvision-style boxes/scores/labels")


class OnnxCatDetector:
    """`detect(frame) -> boxes` of `class_id` scoring at least `score`, best first, in frame pixels."""

    def __init__(self, path: str | Path, class_id: int = 15, score: float = SCORE_THRESHOLD,
                 providers: list[str] | None = None):
        self.path, self.class_id, self.score = Path(path), class_id, score
        self.session = _open_session(self.path, providers)
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_rank = inp.name, len(inp.shape)
        self.dtype = np.float16 if "float16" in inp.type else np.float32
        sides = [d if isinstance(d, int) and d > 0 else None for d in inp.shape[-2:]]
        if self.input_rank not in (3, 4) or len(sides) != 2:
            raise CatmoodError(f"{self.path}: input {inp.shape} is not an image ([1, 3, H, W] or [3, H, W])")
        self.outputs = self.session.get_outputs()
        self.layout = _layout(self.path, self.outputs)
        if self.layout == "yolo":
            sides = [s or FREE_SIDE for s in sides]
        else:
            self.names = _torchvision_names(self.path, self.outputs)
        self.sides = sides
        try:  # wrong shapes and types surface now, in one line, not at the first frame
            self.detect(np.full((48, 64, 3), LETTERBOX_GREY, np.uint8))
        except CatmoodError:
            raise
        except Exception as exc:  # ONNX Runtime's own errors: the input it wants is not an image as fed
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CatmoodError(f"{self.path}: a test frame did not run through it ({first})") from None

    def detect(self, frame: np.ndarray) -> list[Box]:
        tensor, scale, pad = self._input(frame)
        outputs = self.session.run(None, {self.input_name: tensor})
        boxes, scores = (self._yolo if self.layout == "yolo" else self._torchvision)(outputs)
        if not len(boxes):
            return []
        boxes = (boxes - [pad[0], pad[1], 0, 0]) / scale  # x, y, w, h back in frame pixels
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.score, NMS_IOU)
        found = [clip_box(tuple(int(round(v)) for v in boxes[i]), frame.shape) for i in np.asarray(keep).ravel()]
        return [b for b in found if b is not None]

    def _input(self, frame: np.ndarray):
        """The frame as the model's input: RGB 0..1, letterboxed into fixed sides; (tensor, scale, pad)."""
        h, w = frame.shape[:2]
        side_h, side_w = (self.sides[0] or h, self.sides[1] or w)
        scale = min(side_h / h, side_w / w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = np.full((side_h, side_w, 3), LETTERBOX_GREY, np.uint8)
        pad = ((side_w - size[0]) // 2, (side_h - size[1]) // 2)
        resized = frame if size == (w, h) else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        canvas[pad[1]:pad[1] + size[1], pad[0]:pad[0] + size[0]] = resized
        tensor = (canvas[:, :, ::-1].transpose(2, 0, 1) / 255.0).astype(self.dtype)
        return (tensor[None] if self.input_rank == 4 else tensor), scale, pad

    def _yolo(self, outputs):
        (table,) = outputs
        if table.ndim != 3 or table.shape[0] != 1 or not 4 < table.shape[1] < table.shape[2]:
            raise CatmoodError(f"{self.path}: output {list(table.shape)} is not {LAYOUTS[0]}")
        self._check_class(table.shape[1] - 4)
        rows = table[0].T.astype(np.float32)
        scores = rows[:, 4 + self.class_id]
        rows, scores = rows[scores >= self.score], scores[scores >= self.score]
        cx, cy, bw, bh = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        return np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1), scores

    def _torchvision(self, outputs):
        named = dict(zip((o.name for o in self.outputs), outputs))
        boxes, scores, labels = (np.asarray(named[n]) for n in self.names)
        boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
        keep = (labels == self.class_id) & (scores >= self.score)
        boxes, scores = boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
        return np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1), scores

    def _check_class(self, classes: int) -> None:
        if not 0 <= self.class_id < classes:
            raise CatmoodError(f"{self.path}: --detector-class {self.class_id} is not one of its {classes} classes "
                               f"(0..{classes - 1})")


def _open_session(path: Path, providers):
    try:
        import onnxruntime as ort
    except ImportError:
        raise CatmoodError("ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from None
    if not path.is_file():
        raise CatmoodError(f"{path}: --detector model not found")
    available = ort.get_available_providers()
    chain = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        return ort.InferenceSession(str(path), providers=chain)
    except Exception as exc:  # ONNX Runtime raises its own types for a file it cannot load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatmoodError(f"{path}: ONNX Runtime cannot open it as a detector ({first})") from None


def _layout(path: Path, outputs) -> str:
    shapes = [list(o.shape) for o in outputs]
    if len(outputs) == 1 and len(shapes[0]) == 3:
        channels, boxes = shapes[0][1:]
        if isinstance(channels, int) and isinstance(boxes, int) and channels > boxes:
            raise CatmoodError(f"{path}: output {shapes[0]} has one row per box (as YOLOv5 exports); catmood reads "
                               f"{' or '.join(LAYOUTS)}")
        return "yolo"
    if len(outputs) >= 3:
        return "torchvision"
    raise CatmoodError(f"{path}: outputs {shapes} are not a detector layout catmood reads ({' or '.join(LAYOUTS)})")


def _torchvision_names(path: Path, outputs) -> tuple[str, str, str]:
    """(boxes, scores, labels) output names: by name, or else boxes as the [.., 4] float, labels the integer."""
    names = {o.name.lower(): o.name for o in outputs}
    if all(k in names for k in ("boxes", "scores", "labels")):
        return names["boxes"], names["scores"], names["labels"]
    boxes = [o.name for o in outputs if o.shape and o.shape[-1] == 4 and "float" in o.type]
    labels = [o.name for o in outputs if "int" in o.type]
    scores = [o.name for o in outputs if "float" in o.type and o.name not in boxes]
    if len(boxes) == len(labels) == len(scores) == 1:
        return boxes[0], scores[0], labels[0]
    raise CatmoodError(f"{path}: outputs {[o.name for o in outputs]} are not boxes/scores/labels; catmood reads "
                       f"{' or '.join(LAYOUTS)}")
