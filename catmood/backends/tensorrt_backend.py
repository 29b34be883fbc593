"""Run a TensorRT engine (8.6, 10.x, 11.x). Refuses an engine built for another TensorRT or GPU generation.

All work for one call is queued on one CUDA stream, in order: copy in (from page-locked memory), execute,
copy out, then one synchronize. Device and host buffers are allocated once, in the engine's own dtypes, up to
the profile's max batch; tensor addresses are set once. Optionally each batch size is captured as a CUDA
graph after its first run (batch 1 on a big GPU is bound by kernel launches). No PyTorch is needed: CUDA is
reached through the driver (`cuda_driver`), so Jetson with JetPack's TensorRT works.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..metadata import (LOGITS_NAME, ArtifactError, EngineTarget, check_engine_target, check_graph_against_spec,
                        read_sidecar)
from .base import Classifier
from .cuda_driver import CudaDriver, CudaError
from .tensorrt_api import TensorRTApi, tensorrt_api


def current_target(api: TensorRTApi | None = None, cuda: CudaDriver | None = None) -> EngineTarget:
    """The TensorRT version and GPU of this machine, as engine sidecars record them."""
    api = api or tensorrt_api()
    gpu = (cuda or CudaDriver(0)).info()
    return EngineTarget(api.trt.__version__, gpu.name, gpu.compute_capability)


@dataclass
class _Binding:
    """One engine I/O tensor and the memory bound to it for the engine's whole life."""

    name: str
    is_input: bool
    row_shape: tuple[int, ...]    # without the batch dimension
    dtype: np.dtype
    device: int
    host: np.ndarray              # page-locked, max_batch rows

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape)) * self.dtype.itemsize


class TensorRTBackend(Classifier):
    name = "tensorrt"
    device_type = "cuda"

    def __init__(self, engine: str | os.PathLike, *, device_index: int = 0, cuda_graphs: bool = False,
                 here: EngineTarget | None = None, api: TensorRTApi | None = None, cuda: CudaDriver | None = None):
        """`here`: this machine's GPU and TensorRT (found out when not given); checked against the sidecar
        before anything is loaded. `api`/`cuda` default to the installed TensorRT and the GPU's driver."""
        self.path = Path(engine)
        self.spec, self.sidecar = read_sidecar(self.path)
        if here is not None:  # checked before TensorRT or CUDA is touched, so a wrong engine fails fast
            self.notes = check_engine_target(self.path, self.sidecar, here)
        self.api = api or tensorrt_api()
        self.cuda = cuda or CudaDriver(device_index)
        if here is None:
            here = current_target(self.api, self.cuda)
            self.notes = check_engine_target(self.path, self.sidecar, here)
        trt = self.api.trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if self.sidecar.get("version_compatible"):
            self.runtime.engine_host_code_allowed = True  # the lean runtime travels inside such engines
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{self.path}: TensorRT could not deserialize the engine (see the messages above)")
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()
        self._bind()
        self.precision = str(self.sidecar.get("precision", "fp16"))
        self.cuda_graphs = cuda_graphs
        self.graphs: dict[int, int] = {}
        self.device = f"cuda:{device_index} ({here.gpu}, TensorRT {here.tensorrt}, " \
                      f"{self.sidecar.get('precision_mode', 'fp16')}{', CUDA graphs' if cuda_graphs else ''})"

    def _bind(self) -> None:
        trt, engine = self.api.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ArtifactError(f"{self.path}: expected one input tensor, found {len(inputs)}")
        self.max_batch = int(engine.get_tensor_profile_shape(inputs[0], 0)[2][0])
        self.bindings: dict[str, _Binding] = {}
        for name in names:
            row = tuple(int(d) for d in engine.get_tensor_shape(name))[1:]
            if any(d < 0 for d in row):
                raise ArtifactError(f"{self.path}: tensor {name} has a dynamic dimension besides the batch: {row}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            rows = (self.max_batch, *row)
            binding = _Binding(name, name in inputs, row, dtype, 0, self.cuda.host_array(rows, dtype))
            binding.device = self.cuda.alloc(self.max_batch * binding.row_bytes)
            self.context.set_tensor_address(name, binding.device)
            self.bindings[name] = binding
        self.input = self.bindings[inputs[0]]
        outputs = [n for n in names if n not in inputs]
        self.output = self.bindings[LOGITS_NAME if LOGITS_NAME in outputs else outputs[0]]
        # An engine may take FP16 where the spec says float32 (the copy converts); never another layout or size.
        dtype = "float32" if self.input.dtype.kind == "f" else self.input.dtype.name
        check_graph_against_spec(self.path, self.spec, dtype, self.input.row_shape, self.output.row_shape[-1])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.cuda.make_current()
        return np.concatenate([self._run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n, inp, out = len(batch), self.input, self.output
        if tuple(batch.shape[1:]) != inp.row_shape:
            raise ArtifactError(f"{self.path}: input rows of shape {batch.shape[1:]}, the engine takes {inp.row_shape}")
        np.copyto(inp.host[:n], batch, casting="unsafe")  # into page-locked memory, in the engine's dtype
        if not self.context.set_input_shape(inp.name, (n, *inp.row_shape)):
            raise ArtifactError(f"{self.path}: batch {n} is outside the engine's profile (max {self.max_batch})")
        self.cuda.copy_to_device(inp.device, inp.host, n * inp.row_bytes, self.stream)
        self._execute(n)
        self.cuda.copy_to_host(out.host, out.device, n * out.row_bytes, self.stream)
        self.cuda.synchronize(self.stream)
        return out.host[:n].astype(np.float32)  # a copy: the buffer is reused by the next call

    def _execute(self, n: int) -> None:
        graph = self.graphs.get(n)
        if graph:
            self.cuda.launch_graph(graph, self.stream)
            return
        if not self.context.execute_async_v3(self.stream):
            raise ArtifactError(f"{self.path}: TensorRT execution failed (see the messages above)")
        if self.cuda_graphs and n not in self.graphs:  # the first run did the shape's lazy setup: capture now
            self.graphs[n] = self._capture()

    def _capture(self) -> int:
        """A CUDA graph of one execution at the current shape; 0 (run without graphs) if it cannot be captured."""
        try:
            self.cuda.begin_capture(self.stream)
        except CudaError as exc:
            self.notes.append(f"CUDA graphs off: {exc}")
            self.cuda_graphs = False
            return 0
        ok = self.context.execute_async_v3(self.stream)
        try:
            graph = self.cuda.end_capture(self.stream)
        except CudaError as exc:
            ok, graph = False, 0
            self.notes.append(f"CUDA graphs off: {exc}")
        if not ok:
            self.cuda_graphs = False
            return 0
        return graph
