"""ONNX -> INT8 ONNX with explicit quantization (QuantizeLinear/DequantizeLinear pairs), calibrated on real images.

ONNX Runtime's quantization pre-processing (optimisation, shape inference), then its static quantization in
QDQ format: int8 weights per output channel (symmetric) and activation ranges calibrated on images of the
training split, read as the runtime reads frames and made into model input by the spec's own `preprocess`.

One calibration serves two files, because the two targets need different activation types:
- `model.int8.onnx`, for CPUs: uint8 activations with zero points (asymmetric). x86 VNNI multiplies uint8 by
  int8 (vpdpbusd), and asymmetric ranges let ONNX Runtime drop ReLU/Clip into the integer convolutions;
  symmetric activations measured 1.1-1.2x faster than FP32 on this CPU, asymmetric ones 2-3x.
- `model.int8-sym.onnx`, for TensorRT: int8 activations with zero point 0, the only form TensorRT's
  quantization takes (symmetric, signed); activations stay explicit in the graph and biases in float (TensorRT
  dequantizes int8 tensors only). Built only for engines.

Kept in float (ONNX Runtime's `nodes_to_exclude`): the in-graph input preparation of raw-frame graphs (cast,
channel swap, normalisation: quantizing its steps stacks rounding on the pixels), the first `float_first`
convolutions or matrix products and what lies between them and the input, the classifier head (the last
Gemm/MatMul and what follows it to the outputs: logits move least there for the least work) and the op types
in `KEEP_FLOAT_OPS` (softmax, normalisation layers: long reductions lose most in 8 bits).

Why the first layers: a normalised image does not fit an 8-bit grid (with mean 0.5 every pixel lies half a level
between two steps, and three channels with their own mean and std share one grid), so quantizing the stem's
input takes about a bit off every pixel; and the first layers sum few inputs (27 at a 3x3 stem, 9 at a
depthwise filter), so their rounding errors do not average out. They are a small part of the work (the stem and
first depthwise layer of tf_efficientnet_lite0: 4% of its multiply-adds). Measured on real photos
(benchmarks/RESULTS.md): keeping lite0's first two layers in float cut the INT8 model's KL divergence from the
checkpoint threefold, for little speed (2.2x -> 2.0x FP32's). Not by default, because the cost depends on the
model: ONNX Runtime runs resnet18's float stem and the max-pooling after it far slower than their share of the
FP32 model (3.5x -> 1.7x FP32's speed). Float layers form one run from the input on purpose: ONNX Runtime's
graph optimisations mis-computed a lone float convolution between INT8 layers (25 flipped answers in 200 with
them, 4 without).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2

from ..errors import CatmoodError
from ..metadata import graph_input, read_onnx_metadata
from ..preprocess import preprocess
from .options import MIN_CALIBRATION_IMAGES, Int8Options
from .verify import list_images, split_samples, spread

KEEP_FLOAT_OPS = ("Softmax", "LogSoftmax", "LayerNormalization", "GroupNormalization", "InstanceNormalization")
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # what INT8 is for; the head is found by them
FIRST_LAYERS = "first layers, on the image"  # why the first `float_first` layers stay in float
FLOAT_FIRST_HINT = 2  # what a failed gate suggests: what the real-image benchmark ran (benchmarks/RESULTS.md)
STRIDE_BATCHES = 4  # calibration batches whose activations are held at once (histogram methods keep them all)


@dataclass
class CalibrationImages:
    paths: list[Path]
    source: str


def calibration_images(checkpoint, options: Int8Options) -> CalibrationImages:
    """Up to `options.calib_images` real images: `calib_dir`, else the training split of the checkpoint's
    dataset (split with training's seed), spread over the classes. Never random data."""
    if options.calib_dir:
        root = Path(options.calib_dir)
        paths, source = spread(list_images(root, "--calib-dir"), options.calib_images), f"images in {root}"
    else:
        data = checkpoint.config.get("data")
        found = split_samples(data, checkpoint.spec.class_names, "train", int(checkpoint.config.get("seed", 0)),
                              options.calib_images)
        if not found:
            raise CatmoodError(f"{checkpoint.path}: INT8 calibration needs real images, and the training split of "
                               f"its dataset ({data}) is not there or has other classes; pass --calib-dir DIR")
        paths, source = [s.path for s in found[0]], f"training split of {found[1]}"
    if len(paths) < MIN_CALIBRATION_IMAGES:
        raise CatmoodError(f"{source}: {len(paths)} image(s) for INT8 calibration; at least "
                           f"{MIN_CALIBRATION_IMAGES} are needed")
    return CalibrationImages(paths, source)


def read_images(paths: list[Path], spec):
    """The calibration images as one torch tensor of model input (N x C x H x W), read and preprocessed as
    CalibrationReader feeds them: for the weight rounding and fine-tuning that need them all at once."""
    import torch

    frames = [f for f in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths) if f is not None]
    if not frames:
        raise CatmoodError("INT8 calibration: none of the images could be read")
    return torch.from_numpy(preprocess(frames, spec))


class CalibrationReader:
    """ONNX Runtime's CalibrationDataReader (get_next, and the range protocol of its strided calibration):
    batches of real images, preprocessed with the graph's own spec as `catmood run` would feed them."""

    def __init__(self, paths: list[Path], spec, input_name: str, batch: int):
        self.spec, self.input_name = spec, input_name
        self.batches = [paths[i:i + batch] for i in range(0, len(paths), batch)]
        self.start, self.end, self.next = 0, len(self.batches), 0
        self.used: set[Path] = set()
        self.unreadable: set[Path] = set()

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.next = start_index, end_index, start_index

    def rewind(self) -> None:
        self.next = self.start

    def get_next(self) -> dict | None:
        while self.next < self.end:
            paths, self.next = self.batches[self.next], self.next + 1
            frames = []
            for path in paths:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
                (self.unreadable if frame is None else self.used).add(path)
                if frame is not None:
                    frames.append(frame)
            if frames:
                return {self.input_name: preprocess(frames, self.spec)}
        return None


def _stride(batches: int) -> int:
    """The largest divisor of `batches` up to STRIDE_BATCHES (ONNX Runtime wants equal strides)."""
    return max(d for d in range(1, min(STRIDE_BATCHES, batches) + 1) if batches % d == 0)


def float_nodes(graph, keep_ops=KEEP_FLOAT_OPS, first: int = 0) -> dict[str, tuple[str, str]]:
    """name -> (op type, why) of the nodes that stay in float: see the module's docstring. `first`: how many of
    the first convolutions or matrix products (in graph order) stay in float with what feeds them."""
    nodes = list(graph.node)
    producer = {output: node for node in nodes for output in node.output}
    keep: dict[str, tuple[str, str]] = {}

    def with_ancestors(node, why: str) -> None:
        todo = [node]
        while todo:
            node = todo.pop()
            if node.op_type != "Constant" and node.name not in keep:
                keep[node.name] = (node.op_type, why)
                todo += [producer[i] for i in node.input if i in producer]

    compute = [n for n in nodes if n.op_type in COMPUTE_OPS]
    if compute:  # every ancestor of the first convolution: the graph's own input preparation
        for i in compute[0].input:
            if i in producer:
                with_ancestors(producer[i], "input preparation")
    for node in compute[:first]:
        with_ancestors(node, FIRST_LAYERS)
    for output in graph.output:  # back from each output to the last Gemm/MatMul, included
        node = producer.get(output.name)
        while node is not None:
            keep.setdefault(node.name, (node.op_type, "classifier head"))
            if node.op_type in COMPUTE_OPS:
                break
            feeding = [producer[i] for i in node.input if i in producer and producer[i].op_type != "Constant"]
            node = feeding[0] if len(feeding) == 1 else None
    for node in nodes:
        if node.op_type in keep_ops:
            keep.setdefault(node.name, (node.op_type, "loses most in 8 bits"))
    return keep


def quantized_layers(graph) -> int:
    """Convolutions and matrix products that take a dequantized input: the layers that run in INT8."""
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(1 for n in graph.node if n.op_type in COMPUTE_OPS and dequantized & set(n.input))


class Int8Quantizer:
    """Quantizes FP32 ONNX files with one set of calibration images and options. Each source file is
    pre-processed and calibrated once; its CPU and TensorRT flavours both use those ranges."""

    def __init__(self, images: CalibrationImages, options: Int8Options = Int8Options()):
        self.images, self.options = images, options
        # ONNX Runtime's histogram calibrators (entropy, percentile) stack each stride's outputs into one array,
        # which fails when batches differ in size (a last partial batch, an unreadable image): one image each.
        self.batch = options.batch if options.calib_method == "minmax" else 1
        self._tmp = tempfile.TemporaryDirectory(prefix="catmood-int8-")  # removed with this object
        self._prepared: dict[str, tuple[Path, Path, dict]] = {}  # source sha256 -> (model, ranges, facts)

    def __call__(self, src: str | os.PathLike, out: str | os.PathLike, *, symmetric: bool = False,
                 before: dict | None = None) -> Path:
        """Write `out`: `src` (a catmood FP32 ONNX) in QDQ INT8, with its spec and provenance in metadata.
        `before`: what made `src`'s weights when they are not the checkpoint's ("weight_rounding":
        catmood.export.rounding, "qat": catmood.export.qat), recorded with the calibration."""
        import onnx

        from ..checkpoint import file_sha256
        from .onnx import onnx_opset, save_onnx, set_metadata

        src, out = Path(src), Path(out)
        spec, info = read_onnx_metadata(src)
        sha = file_sha256(src)
        prepared, ranges, facts = self._prepared.get(sha) or self._prepare(src, sha)
        input_name = graph_input(onnx.load(str(prepared), load_external_data=False).graph).name
        reader = CalibrationReader(self.images.paths, spec, input_name, self.batch)
        quantized_path = Path(self._tmp.name) / f"{sha[:16]}-{'sym' if symmetric else 'cpu'}.onnx"
        _quantize(src, prepared, quantized_path, reader, self.options, facts["keep"], symmetric, ranges)
        if reader.used or reader.unreadable:  # calibrated now (not from the ranges of an earlier flavour)
            facts.update(images=len(reader.used), unreadable=len(reader.unreadable))
        if facts["images"] < MIN_CALIBRATION_IMAGES:
            raise CatmoodError(f"{self.images.source}: only {facts['images']} of {len(self.images.paths)} "
                               f"calibration images could be read; at least {MIN_CALIBRATION_IMAGES} are needed")
        model = onnx.load(str(quantized_path))
        layers = quantized_layers(model.graph)
        if not layers:
            ops = sorted({n.op_type for n in model.graph.node} - {"QuantizeLinear", "DequantizeLinear"})
            raise CatmoodError(f"{src}: ONNX Runtime quantized none of its convolutions or matrix products (ops: "
                               f"{', '.join(ops)}): an INT8 copy would gain nothing"
                               + (f" (--float-first {self.options.float_first} keeps the first ones in float)"
                                  if any(why == FIRST_LAYERS for _, why in facts["keep"].values()) else ""))
        used = {n.domain for n in model.graph.node} | {"", "ai.onnx"}
        kept = [o for o in model.opset_import if o.domain in used]  # pre-processing adds every domain it knows
        del model.opset_import[:]
        model.opset_import.extend(kept)
        info.update(precision="int8", opset=onnx_opset(model), source_onnx_sha256=sha,
                    quantization={**self._provenance(facts, symmetric, layers),
                                  "weight_rounding": (before or {}).get("weight_rounding"),
                                  "qat": (before or {}).get("qat")})
        set_metadata(model, spec, info)
        save_onnx(model, out, external=False)
        return out

    def _prepare(self, src: Path, sha: str):
        """ONNX Runtime's quantization pre-processing (optimisation, shape inference), named nodes, and the
        nodes that stay in float; remembered with where this source's calibrated ranges go."""
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = Path(self._tmp.name) / f"{sha[:16]}-prepared.onnx"
        here = os.getcwd()
        os.chdir(self._tmp.name)  # its symbolic shape inference drops sym_shape_infer_temp.onnx in the cwd on failure
        try:
            quant_pre_process(str(src.resolve()), str(prepared))
        except Exception as exc:  # ONNX Runtime raises whatever its optimiser or shape inference met
            raise CatmoodError(f"{src}: ONNX Runtime's quantization pre-processing failed ({_first_line(exc)})") \
                from None
        finally:
            os.chdir(here)
        model = onnx.load(str(prepared))
        for i, node in enumerate(model.graph.node):  # exclusion works by name; some exporters leave names empty
            node.name = node.name or f"{node.op_type}_{i}"
        onnx.save(model, str(prepared))
        keep = float_nodes(model.graph, first=self.options.float_first)
        entry = (prepared, prepared.with_name(f"{sha[:16]}-ranges.json"), {"keep": keep})
        self._prepared[sha] = entry
        return entry

    def _provenance(self, facts: dict, symmetric: bool, layers: int) -> dict:
        import onnxruntime

        options = self.options
        return {"format": "QDQ", "onnxruntime": onnxruntime.__version__, "int8_layers": layers,
                "activations": "int8 symmetric (zero point 0)" if symmetric else "uint8 asymmetric",
                "weights": "int8 symmetric per output channel",
                "calibration": {"method": options.calib_method, "images": facts["images"],
                                "unreadable": facts["unreadable"], "source": self.images.source,
                                "batch": self.batch, "input": "catmood.preprocess with the graph's spec"},
                "float_nodes": [{"name": name, "op": op, "why": why} for name, (op, why) in facts["keep"].items()]}


def _quantize(src: Path, prepared: Path, out: Path, reader: CalibrationReader, options: Int8Options,
              keep: dict, symmetric: bool, ranges: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    try:
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        calibrate_method=methods[options.calib_method], nodes_to_exclude=list(keep),
                        # TensorRT dequantizes int8 only: its biases stay float (it folds them into its kernels)
                        extra_options={"ActivationSymmetric": symmetric, "QuantizeBias": not symmetric,
                                       "CalibStridedMinMax": _stride(len(reader))},
                        calibration_cache_path=ranges)
    except CatmoodError:
        raise
    except Exception as exc:  # the quantizer's own errors (an op it cannot handle, a shape it cannot infer)
        raise CatmoodError(f"{src}: ONNX Runtime could not quantize it to INT8 ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def quantization_notes(path: Path) -> list[str]:
    """What the report says about an INT8 file: its calibration and what stayed in float."""
    q = read_onnx_metadata(path)[1].get("quantization") or {}
    if not q:
        return []
    c = q["calibration"]
    kept: dict[str, list[str]] = {}
    for node in q["float_nodes"]:
        kept.setdefault(node["why"], []).append(f"{node['name']} ({node['op']})")
    notes = [f"calibrated ({c['method']}) on {c['images']} images of the {c['source']}"
             + (f" ({c['unreadable']} unreadable, skipped)" if c["unreadable"] else "")
             + f"; activations {q['activations']}, weights {q['weights']}; {q['int8_layers']} layers in INT8"]
    notes += [f"kept in float ({why}): {', '.join(names)}" for why, names in kept.items()]
    if q.get("weight_rounding"):
        r = q["weight_rounding"]
        notes.append(f"weights rounded to int8 with error compensation ({r['method']}) on {r['images']} images: "
                     f"{r['layers']} layers, {r['seconds']:.0f} s on {r['device']}")
    if q.get("qat"):
        t = q["qat"]
        notes.append(f"INT8-aware fine-tuning first: {t['epochs']} epoch(s) over {t['images']} images (and their "
                     f"mirror images) at lr {t['lr']:g}, distilled from the checkpoint; simulated INT8 agreement "
                     f"on them {t['simulated_agreement']['before']:.2%} -> {t['simulated_agreement']['after']:.2%}")
    return notes
