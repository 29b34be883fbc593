"""A stand-in `tensorrt` module limited to one real release's Python API surface, and a stand-in CUDA driver.

These check API *use*, not numerics. TensorRT cannot be installed here; its bindings' names can be read
(tools/tensorrt_api_surface.py writes tests/data/tensorrt_api/<version>.json from the real wheels). The
stand-in lets catmood touch only names that the release defines, per class and enum, with AttributeError
otherwise, exactly as the real module would; a name the release has but the stand-in does not model fails
loudly too (NotImplementedError), so nothing passes by accident. Deprecated names used are recorded.

Behaviour is the least that drives catmood's build and run code, and follows the documented rules that
matter here: an 8.x network created without EXPLICIT_BATCH is implicit batch (the ONNX parser refuses it);
the 8.x parser reads opset <= 17; strongly typed networks refuse precision flags and layer precisions; an
engine deserialises only in the release that built it. Quantization is symmetric and signed in every release
("Working with Quantized Types"): the parser refuses Q/DQ nodes whose zero point is not an int8 zero, and a
weakly typed network with Q/DQ layers builds only with the INT8 flag set (8.x: "to enable any quantization
operations, the INT8 flag must be set"; 10.x keeps that rule for weakly typed networks). The "engine" computes with ONNX Runtime on the
ONNX it was built from, so a gate against PyTorch can pass; its numbers are ONNX Runtime's, not TensorRT's.
The CUDA stand-in runs queued work only when *its own* stream is synchronised, so work put on another
stream, or read before the synchronise, gives wrong numbers.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import onnx

SURFACES = Path(__file__).parent / "data" / "tensorrt_api"
NPTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "UINT8": np.uint8,
           "BOOL": np.bool_, "INT64": np.int64}
ONNX_TYPES = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.UINT8: "UINT8",
              onnx.TensorProto.INT8: "INT8"}
LAYER_TYPES = {"Conv": "CONVOLUTION", "Gemm": "MATRIX_MULTIPLY", "MatMul": "MATRIX_MULTIPLY", "Relu": "ACTIVATION",
               "Softmax": "SOFTMAX", "ReduceMean": "REDUCE", "LayerNormalization": "NORMALIZATION",
               "GlobalAveragePool": "POOLING", "MaxPool": "POOLING", "Cast": "CAST", "Reshape": "SHUFFLE",
               "Flatten": "SHUFFLE", "Transpose": "SHUFFLE", "QuantizeLinear": "QUANTIZE",
               "DequantizeLinear": "DEQUANTIZE"}
PRECISION_FLAGS = {"FP16", "BF16", "INT8", "FP8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"}


def surface_files() -> list[Path]:
    """Oldest release first."""
    from catmood.backends.tensorrt_api import parse_version

    return sorted(SURFACES.glob("*.json"), key=lambda p: parse_version(p.stem))


class _CheckedType(type):
    def __getattribute__(cls, name):
        if not name.startswith("_"):
            _check(cls, name)
        return type.__getattribute__(cls, name)


def _check(cls, name: str) -> None:
    surface = type.__getattribute__(cls, "_surface")
    if name not in surface["members"]:
        raise AttributeError(f"TensorRT {surface['version']}: {type.__getattribute__(cls, '_trt_name')} has no "
                             f"attribute {name!r}")
    note = surface["deprecated"].get(name)
    if note:
        surface["used_deprecated"].add(f"{type.__getattribute__(cls, '_trt_name')}.{name}: {note}")
    try:
        type.__getattribute__(cls, "_models")(name)
    except AttributeError:
        raise NotImplementedError(f"the stand-in does not model {type.__getattribute__(cls, '_trt_name')}.{name}; "
                                  "extend tests/trt_standin.py") from None


class Checked(metaclass=_CheckedType):
    """Instances and classes answer only the names of their class in the loaded surface."""

    _surface: dict
    _trt_name: str

    @classmethod
    def _models(cls, name):
        for klass in cls.__mro__:
            if name in vars(klass):
                return
        raise AttributeError(name)

    def __getattribute__(self, name):
        if not name.startswith("_"):
            _check(type(self), name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            _check(type(self), name)
        object.__setattr__(self, name, value)


class EnumValue(int):
    def __new__(cls, value: int, name: str, enum: str):
        obj = int.__new__(cls, value)
        obj.name, obj.enum = name, enum
        return obj

    def __repr__(self):
        return f"{self.enum}.{self.name}"


class Logger(Checked):
    def __init__(self, min_severity=None):
        self._severity = min_severity


class ITensor(Checked):
    def __init__(self, name, shape, dtype):
        self._name, self._shape, self._dtype = name, shape, dtype

    name = property(lambda self: self._name)
    shape = property(lambda self: tuple(self._shape))
    dtype = property(lambda self: self._dtype)


class ILayer(Checked):
    def __init__(self, network, name, kind):
        self._network, self._name, self._type = network, name, kind

    name = property(lambda self: self._name)
    type = property(lambda self: self._type)
    num_outputs = property(lambda self: 1)

    def _pin(self, *_):
        if self._network._strongly_typed:  # documented: not allowed in strongly typed networks
            self._network._violations.append(f"layer precision set on {self._name} in a strongly typed network")
        self._network._pinned.add(self._name)

    precision = property(lambda self: None, _pin)
    set_output_type = _pin


class INetworkDefinition(Checked):
    def __init__(self, module, flags):
        bits = module.NetworkDefinitionCreationFlag.__members__
        has = lambda flag: flag in bits and bool(flags & (1 << int(bits[flag])))  # noqa: E731
        self._explicit_batch = module._major >= 10 or has("EXPLICIT_BATCH")
        self._strongly_typed = module._major >= 11 or has("STRONGLY_TYPED")
        self._layers, self._inputs, self._outputs = [], [], []
        self._violations, self._pinned, self._onnx, self._quantized = [], set(), None, False

    num_layers = property(lambda self: len(self._layers))
    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))
    get_layer = lambda self, i: self._layers[i]  # noqa: E731
    get_input = lambda self, i: self._inputs[i]  # noqa: E731
    get_output = lambda self, i: self._outputs[i]  # noqa: E731


class ParserError(Checked):
    def __init__(self, text):
        self._text = text

    def desc(self):
        return self._text

    def __str__(self):
        return self._text


class OnnxParser(Checked):
    def __init__(self, network, logger):
        self._network, self._errors = network, []

    num_errors = property(lambda self: len(self._errors))
    get_error = lambda self, i: type(self)._module.ParserError(self._errors[i])  # noqa: E731

    def parse_from_file(self, path):
        net, module = self._network, type(self)._module
        model = onnx.load(str(path), load_external_data=False)
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if not net._explicit_batch:
            self._errors.append("ONNX parser only supports networks with an explicit batch dimension")
        elif module._major < 10 and opset > 17:
            self._errors.append(f"model opset {opset} is newer than this parser supports (17)")
        if not self._errors:
            self._errors += _asymmetric_quantization(model)
        if self._errors:
            return False
        net._quantized = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
        shape = lambda v: [-1] + [d.dim_value for d in v.type.tensor_type.shape.dim[1:]]  # noqa: E731
        dtype = lambda v: _enum(module, "DataType", ONNX_TYPES[v.type.tensor_type.elem_type])  # noqa: E731
        net._inputs = [module.ITensor(v.name, shape(v), dtype(v)) for v in model.graph.input]
        net._outputs = [module.ITensor(v.name, shape(v), dtype(v)) for v in model.graph.output]
        net._layers = [module.ILayer(net, n.name or f"{n.op_type}_{i}",
                                     _enum(module, "LayerType", LAYER_TYPES.get(n.op_type, "ELEMENTWISE")))
                       for i, n in enumerate(model.graph.node)]
        net._onnx = str(path)
        return True


def _asymmetric_quantization(model) -> list[str]:
    """Q/DQ nodes TensorRT cannot take: a zero point missing (uint8 by the ONNX default), not int8 (uint8
    activations, int32 biases) or not 0."""
    weights = {t.name: t for t in model.graph.initializer}
    errors = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = weights.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None or zero.data_type != onnx.TensorProto.INT8 or onnx.numpy_helper.to_array(zero).any():
            errors.append(f"{node.name}: TensorRT quantization is symmetric INT8 only (an int8 zero point of 0)")
    return errors[:3]


class IHostMemory(Checked):
    def __init__(self, data: bytes):
        self._data = data

    nbytes = property(lambda self: len(self._data))

    def __bytes__(self):
        return self._data


class ITimingCache(Checked):
    def serialize(self):
        return type(self)._module.IHostMemory(b"timing cache")


class IOptimizationProfile(Checked):
    def __init__(self):
        self._shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's own keyword names
        assert all(a <= b <= c for a, b, c in zip(min, opt, max)), (min, opt, max)
        self._shapes[name] = [list(min), list(opt), list(max)]


class IBuilderConfig(Checked):
    def __init__(self):
        self._flags, self._profiles, self._pools, self._cache = set(), [], {}, None
        self._hardware = None

    def set_flag(self, flag):
        self._flags.add(flag.name)

    def set_memory_pool_limit(self, pool, size):
        self._pools[pool.name] = size

    def create_timing_cache(self, data):
        return type(self)._module.ITimingCache()

    def set_timing_cache(self, cache, ignore_mismatch):
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache

    def add_optimization_profile(self, profile):
        self._profiles.append(profile)
        return len(self._profiles) - 1

    hardware_compatibility_level = property(lambda self: self._hardware,
                                            lambda self, level: object.__setattr__(self, "_hardware", level.name))


class Builder(Checked):
    def __init__(self, logger):
        self._logger = logger

    def create_network(self, flags=0):
        return type(self)._module.INetworkDefinition(type(self)._module, flags)

    def create_builder_config(self):
        return type(self)._module.IBuilderConfig()

    def create_optimization_profile(self):
        return type(self)._module.IOptimizationProfile()

    def build_serialized_network(self, network, config):
        module = type(self)._module
        problems = list(network._violations)
        if network._strongly_typed and config._flags & PRECISION_FLAGS:
            problems.append(f"precision flags {sorted(config._flags & PRECISION_FLAGS)} on a strongly typed network")
        if network._quantized and not network._strongly_typed and "INT8" not in config._flags:
            problems.append("Q/DQ layers in a weakly typed network without the INT8 builder flag")
        if not config._profiles or network._inputs[0].name not in config._profiles[0]._shapes:
            problems.append("dynamic input without an optimization profile")
        if module._fail_builds.get("strongly" if network._strongly_typed else "weak"):
            problems.append("the test asked this build to fail")
        if problems:
            module._log.extend(problems)
            return None
        io = [(t.name, "INPUT", t.dtype.name, t.shape) for t in network._inputs]
        io += [(t.name, "OUTPUT", t.dtype.name, t.shape) for t in network._outputs]
        corrupt = module._corrupt_builds > 0  # a test's way to make an engine fail the parity gate
        module._corrupt_builds -= corrupt
        blob = dict(version=module.__version__, onnx=network._onnx, io=io, flags=sorted(config._flags), corrupt=corrupt,
                    strongly_typed=network._strongly_typed, pinned=sorted(network._pinned),
                    profile=config._profiles[0]._shapes[network._inputs[0].name], hardware=config._hardware)
        module._built.append(blob)
        return module.IHostMemory(json.dumps(blob).encode())


class Runtime(Checked):
    def __init__(self, logger):
        self._host_code = False

    engine_host_code_allowed = property(lambda self: self._host_code,
                                        lambda self, v: object.__setattr__(self, "_host_code", v))

    def deserialize_cuda_engine(self, data):
        module = type(self)._module
        blob = json.loads(bytes(data))
        if blob["version"] != module.__version__:  # engines are bound to the release that built them
            return None
        return module.ICudaEngine(blob)


class ICudaEngine(Checked):
    def __init__(self, blob):
        self._blob = blob
        self._io = {name: (mode, dtype, shape) for name, mode, dtype, shape in blob["io"]}
        self._names = [row[0] for row in blob["io"]]

    num_io_tensors = property(lambda self: len(self._names))
    get_tensor_name = lambda self, i: self._names[i]  # noqa: E731
    get_tensor_mode = lambda self, n: _enum(type(self)._module, "TensorIOMode", self._io[n][0])  # noqa: E731
    get_tensor_dtype = lambda self, n: _enum(type(self)._module, "DataType", self._io[n][1])  # noqa: E731
    get_tensor_shape = lambda self, n: tuple(self._io[n][2])  # noqa: E731

    def get_tensor_profile_shape(self, name, profile_index):
        return [tuple(s) for s in self._blob["profile"]]

    def create_execution_context(self):
        return type(self)._module.IExecutionContext(self)


class IExecutionContext(Checked):
    def __init__(self, engine):
        import onnxruntime as ort

        self._engine, self._shapes, self._addresses = engine, {}, {}
        self._session = ort.InferenceSession(engine._blob["onnx"], providers=["CPUExecutionProvider"])

    def set_input_shape(self, name, shape):
        low, _, high = self._engine._blob["profile"]
        if not low[0] <= shape[0] <= high[0]:
            return False
        self._shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, address):
        self._addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        module, engine = type(self)._module, self._engine
        shapes = dict(self._shapes)
        addresses = dict(self._addresses)

        def run():  # reads and writes device memory when the stream gets to it
            (name,) = [n for n in engine._names if engine._io[n][0] == "INPUT"]
            dtype = NPTYPES[engine._io[name][1]]
            x = module._cuda.read(addresses[name], shapes[name], dtype)
            outputs = self._session.run(None, {name: x})
            for out_name, value in zip([o.name for o in self._session.get_outputs()], outputs):
                value = value[:, ::-1] if engine._blob["corrupt"] else value  # classes reversed: labels flip
                module._cuda.write(addresses[out_name], value.astype(NPTYPES[engine._io[out_name][1]]))

        module._cuda.enqueue(stream_handle, run)
        return True


def nptype(data_type):
    return NPTYPES[data_type.name]


def _enum(module, enum: str, member: str):
    """The stand-in's own look-ups: not catmood's use, so not checked or recorded."""
    return getattr(module, enum).__members__[member]


def load(surface_file: Path, cuda: FakeCuda | None = None) -> types.ModuleType:
    """A fresh stand-in module for one surface JSON."""
    data = json.loads(Path(surface_file).read_text())
    version = data["tensorrt"]
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module._major = int(version.split(".")[0])
    module._used_deprecated = set()
    module._built, module._log, module._fail_builds, module._corrupt_builds = [], [], {}, 0
    module._cuda = cuda
    unmodelled = set()
    for name, entry in data["names"].items():
        deprecated = entry.get("deprecated") if isinstance(entry.get("deprecated"), dict) else {}
        surface = dict(version=version, members=set(entry.get("members", ())), deprecated=deprecated,
                       used_deprecated=module._used_deprecated)
        if entry["kind"] == "enum":
            enum = {v: EnumValue(i, v, name) for i, v in enumerate(entry["values"])}
            setattr(module, name, _CheckedType(name, (Checked,), {**enum, "_surface": surface, "_trt_name": name,
                                                                  "__members__": enum}))
        elif entry["kind"] == "class" and name in MODELLED:
            setattr(module, name, _CheckedType(name, (MODELLED[name],), {"_surface": surface, "_trt_name": name,
                                                                         "_module": module}))
        else:
            unmodelled.add(name)
    for i, severity in enumerate(("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")):
        setattr(module.Logger, severity, EnumValue(i, severity, "Logger.Severity"))
    for alias, kind in (("float32", "FLOAT"), ("float16", "HALF"), ("int8", "INT8"), ("uint8", "UINT8")):
        setattr(module, alias, _enum(module, "DataType", kind))
    module.nptype = nptype

    def missing(name):
        if name in unmodelled:
            raise NotImplementedError(f"the stand-in does not model tensorrt.{name}; extend tests/trt_standin.py")
        raise AttributeError(f"TensorRT {version} has no attribute {name!r}")
    module.__getattr__ = missing
    return module


MODELLED = {c.__name__: c for c in (Logger, ITensor, ILayer, INetworkDefinition, ParserError, OnnxParser,
                                    IHostMemory, ITimingCache, IOptimizationProfile, IBuilderConfig, Builder,
                                    Runtime, ICudaEngine, IExecutionContext)}


class FakeCuda:
    """CudaDriver's interface over host memory. Work queued on a stream runs when that stream is synchronised
    (in order); graphs record the work queued while capturing. Everything done is logged in `ops`."""

    def __init__(self, gpu="NVIDIA H100 80GB HBM3", capability="9.0"):
        from catmood.backends.cuda_driver import GpuInfo

        self.gpu = GpuInfo(0, gpu, capability, "13.0")
        self.memory: dict[int, bytearray] = {}
        self.pinned: list[np.ndarray] = []
        self.queues: dict[int, list] = {}
        self.graphs: dict[int, list] = {}
        self.capturing: dict[int, list] = {}
        self.ops: list[tuple] = []
        self._next = 0x1000

    def info(self):
        return self.gpu

    def make_current(self):
        self.ops.append(("make_current",))

    def alloc(self, nbytes):
        self._next += 0x10000 + nbytes
        self.memory[self._next] = bytearray(nbytes)
        self.ops.append(("alloc", nbytes))
        return self._next

    def host_array(self, shape, dtype):
        array = np.zeros(shape, dtype)
        self.pinned.append(array)
        self.ops.append(("host_alloc", array.nbytes))
        return array

    def stream(self):
        handle = 0x5000 + len(self.queues)
        self.queues[handle] = []
        return handle

    def enqueue(self, stream, work, name="execute"):
        assert stream in self.queues, f"work queued on a stream the stand-in never created: {stream}"
        self.ops.append((name, stream))
        (self.capturing.get(stream) if stream in self.capturing else self.queues[stream]).append(work)

    def copy_to_device(self, dst, src, nbytes, stream):
        assert any(src is p or src.base is p for p in self.pinned), "copy from pageable host memory"
        view = src.reshape(-1).view(np.uint8)

        def run():
            self.memory[dst][:nbytes] = view[:nbytes].tobytes()
        self.enqueue(stream, run, "copy_to_device")

    def copy_to_host(self, dst, src, nbytes, stream):
        assert any(dst is p for p in self.pinned), "copy to pageable host memory"
        view = dst.reshape(-1).view(np.uint8)

        def run():
            view[:nbytes] = np.frombuffer(bytes(self.memory[src][:nbytes]), np.uint8)
        self.enqueue(stream, run, "copy_to_host")

    def synchronize(self, stream):
        assert stream not in self.capturing, "synchronize during graph capture is an error in CUDA"
        self.ops.append(("synchronize", stream))
        work, self.queues[stream] = self.queues[stream], []
        for item in work:
            item()

    def begin_capture(self, stream):
        self.capturing[stream] = []
        self.ops.append(("begin_capture", stream))

    def end_capture(self, stream):
        handle = 0x9000 + len(self.graphs)
        self.graphs[handle] = self.capturing.pop(stream)
        self.ops.append(("end_capture", stream))
        return handle

    def launch_graph(self, graph, stream):
        for work in self.graphs[graph]:
            self.enqueue(stream, work, "graph")

    # the engine's side
    def read(self, address, shape, dtype):
        count = int(np.prod(shape))
        return np.frombuffer(bytes(self.memory[address][:count * np.dtype(dtype).itemsize]), dtype).reshape(shape)

    def write(self, address, value):
        raw = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
        self.memory[address][:raw.size] = raw.tobytes()
