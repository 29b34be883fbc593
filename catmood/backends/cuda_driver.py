"""The few CUDA calls a TensorRT engine needs, through the driver library every NVIDIA driver installs.

`libcuda.so.1` is on every machine that can run TensorRT, x86 and Jetson alike, whether or not a CUDA build
of PyTorch is (Jetson has none on PyPI), so GPU detection, buffers, the stream and CUDA graphs go through it
with ctypes. The driver's primary context is the one the CUDA runtime (and so TensorRT and PyTorch) uses,
so memory made here is valid for them and the other way round.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

import numpy as np

from ..errors import CatmoodError

# cuDeviceGetAttribute ids (cuda.h, stable since CUDA 6)
_CC_MAJOR, _CC_MINOR = 75, 76
_STREAM_NON_BLOCKING = 1
_CAPTURE_MODE_THREAD_LOCAL = 1


class CudaError(CatmoodError):
    """A CUDA driver call failed, or there is no usable NVIDIA GPU."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str
    driver_version: str


def _load_driver():
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        return ctypes.CDLL(name)
    except OSError:
        raise CudaError("no NVIDIA driver found (libcuda.so.1): TensorRT needs an NVIDIA GPU and its driver") from None


class CudaDriver:
    """One GPU's primary context; every call made current in the calling thread first (the runtime's
    inference thread is not the one that loaded the engine)."""

    def __init__(self, index: int = 0, lib=None):
        self.lib = lib or _load_driver()
        self.index = index
        self._check(self.lib.cuInit(0), "cuInit")
        count = ctypes.c_int()
        self._check(self.lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
        if not 0 <= index < count.value:
            raise CudaError(f"CUDA device {index} not found ({count.value} GPU(s) visible)")
        self.device = ctypes.c_int()
        self._check(self.lib.cuDeviceGet(ctypes.byref(self.device), index), "cuDeviceGet")
        self.context = ctypes.c_void_p()
        self._check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), self.device), "cuDevicePrimaryCtxRetain")
        self.make_current()

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            text = ctypes.c_char_p()
            self.lib.cuGetErrorString(status, ctypes.byref(text))
            raise CudaError(f"CUDA {what} failed: {(text.value or b'error %d' % status).decode()}")

    def make_current(self) -> None:
        self._check(self.lib.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def info(self) -> GpuInfo:
        name = ctypes.create_string_buffer(256)
        self._check(self.lib.cuDeviceGetName(name, 256, self.device), "cuDeviceGetName")
        major, minor, driver = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, self.device), "cuDeviceGetAttribute")
        self._check(self.lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, self.device), "cuDeviceGetAttribute")
        self._check(self.lib.cuDriverGetVersion(ctypes.byref(driver)), "cuDriverGetVersion")
        return GpuInfo(self.index, name.value.decode(), f"{major.value}.{minor.value}",
                       f"{driver.value // 1000}.{driver.value % 1000 // 10}")

    # memory
    def alloc(self, nbytes: int) -> int:
        ptr = ctypes.c_uint64()
        self._check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cuMemAlloc")
        return ptr.value

    def free(self, ptr: int) -> None:
        self.lib.cuMemFree_v2(ctypes.c_uint64(ptr))

    def host_array(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A page-locked host array: asynchronous copies from pageable memory are not asynchronous."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = ctypes.c_void_p()
        self._check(self.lib.cuMemHostAlloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1)), 0), "cuMemHostAlloc")
        buffer = (ctypes.c_byte * max(nbytes, 1)).from_address(ptr.value)
        return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free_host(self, array: np.ndarray) -> None:
        self.lib.cuMemFreeHost(ctypes.c_void_p(array.ctypes.data))

    # the stream and the work on it
    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cuStreamCreate(ctypes.byref(handle), _STREAM_NON_BLOCKING), "cuStreamCreate")
        return handle.value or 0

    def copy_to_device(self, dst: int, src: np.ndarray, nbytes: int, stream: int) -> None:
        self._check(self.lib.cuMemcpyHtoDAsync_v2(ctypes.c_uint64(dst), ctypes.c_void_p(src.ctypes.data),
                                                  ctypes.c_size_t(nbytes), ctypes.c_void_p(stream)), "cuMemcpyHtoDAsync")

    def copy_to_host(self, dst: np.ndarray, src: int, nbytes: int, stream: int) -> None:
        self._check(self.lib.cuMemcpyDtoHAsync_v2(ctypes.c_void_p(dst.ctypes.data), ctypes.c_uint64(src),
                                                  ctypes.c_size_t(nbytes), ctypes.c_void_p(stream)), "cuMemcpyDtoHAsync")

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cuStreamSynchronize(ctypes.c_void_p(stream)), "cuStreamSynchronize")

    def begin_capture(self, stream: int) -> None:
        self._check(self.lib.cuStreamBeginCapture_v2(ctypes.c_void_p(stream), _CAPTURE_MODE_THREAD_LOCAL),
                    "cuStreamBeginCapture")

    def end_capture(self, stream: int) -> int:
        """Ends the capture and returns the instantiated, launchable graph."""
        graph, executable = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(self.lib.cuStreamEndCapture(ctypes.c_void_p(stream), ctypes.byref(graph)), "cuStreamEndCapture")
        self._check(self.lib.cuGraphInstantiateWithFlags(ctypes.byref(executable), graph, ctypes.c_ulonglong(0)),
                    "cuGraphInstantiate")
        self.lib.cuGraphDestroy(graph)
        return executable.value or 0

    def launch_graph(self, graph: int, stream: int) -> None:
        self._check(self.lib.cuGraphLaunch(ctypes.c_void_p(graph), ctypes.c_void_p(stream)), "cuGraphLaunch")
