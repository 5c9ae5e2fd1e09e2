"""A GPU workload without extra packages: the CUDA driver API through ctypes.

``libcuda.so.1`` comes with the NVIDIA driver, as NVML does, so where NVML works
this can usually hold device memory and keep the GPU busy (``cuMemsetD32``
over a large buffer, again and again) without torch, cupy or a compiler.
Used by ``tests/test_probes_nvml.py`` and ``bench/gpu_check.py``.
"""

from __future__ import annotations

import ctypes
import time


class CudaError(RuntimeError):
    """A CUDA driver call failed, or the driver cannot be loaded."""


class CudaBuffer:
    """``size`` bytes of device memory on CUDA device ``device``, in a context of
    its own; a context manager (frees the memory and the context on exit)."""

    def __init__(self, size: int, device: int = 0) -> None:
        try:
            self._cuda = ctypes.CDLL("libcuda.so.1")
        except OSError as error:
            raise CudaError(f"cannot load libcuda.so.1: {error}") from error
        self.size = size
        self._context = ctypes.c_void_p()
        self._pointer = ctypes.c_uint64()
        self._device = ctypes.c_int()
        self._call("cuInit", 0)
        self._call("cuDeviceGet", ctypes.byref(self._device), device)
        # the device's primary context: the one the runtime API (torch, cupy) uses too
        self._call("cuDevicePrimaryCtxRetain", ctypes.byref(self._context), self._device)
        try:
            self._call("cuCtxSetCurrent", self._context)
            self._call("cuMemAlloc_v2", ctypes.byref(self._pointer), ctypes.c_size_t(size))
        except CudaError:
            self._release()
            raise

    def _call(self, name: str, *args: object) -> None:
        try:
            function = getattr(self._cuda, name)
        except AttributeError as error:
            raise CudaError(f"libcuda.so.1 has no {name}") from error
        result = function(*args)
        if result != 0:
            raise CudaError(f"{name} failed with CUDA error {result}")

    def busy(self, seconds: float) -> int:
        """Fill the buffer again and again for about ``seconds``; how many times."""
        words = ctypes.c_size_t(self.size // 4)
        end = time.monotonic() + seconds
        count = 0
        while time.monotonic() < end:
            for value in range(8):
                self._call("cuMemsetD32_v2", self._pointer, ctypes.c_uint(value), words)
            self._call("cuCtxSynchronize")
            count += 8
        return count

    def close(self) -> None:
        """Free the memory and the context."""
        if self._context:
            self._call("cuMemFree_v2", self._pointer)
            self._release()

    def _release(self) -> None:
        self._context = ctypes.c_void_p()
        if hasattr(self._cuda, "cuDevicePrimaryCtxRelease_v2"):
            self._call("cuDevicePrimaryCtxRelease_v2", self._device)
        else:
            self._call("cuDevicePrimaryCtxRelease", self._device)

    def __enter__(self) -> CudaBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
