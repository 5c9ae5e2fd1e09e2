"""``NvmlProbe``: NVIDIA GPUs, read through NVML (the library behind ``nvidia-smi``).

NVML comes with the NVIDIA driver (``libnvidia-ml.so.1``); its Python binding is
the package ``nvidia-ml-py`` (imported as ``pynvml``), installed with the extra
``pip install 'multimeter[nvml]'``. Neither is needed to import multimeter: the
binding is imported when an :class:`NvmlProbe` is made.

The figures are collected by the background reader (``multimeter._reader``),
every ``interval`` seconds, so neither the sampler nor a measured call waits
for NVML.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from multimeter import metric as _metric
from multimeter._reader import Collector
from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.probes._background import BackgroundProbe, Figure
from multimeter.subject import Subject

__all__ = ["NvmlProbe"]

INSTALL_HINT = "pip install 'multimeter[nvml]'"

#: What one NVML call gives, in the order of the collector's fields: a GPU that
#: does not support a call (``NVMLError_NotSupported``) has none of its figures.
_SOURCES: dict[str, tuple[Metric, ...]] = {
    "utilization": (_metric.GPU_UTILIZATION, _metric.GPU_MEMORY_BUSY),
    "memory": (_metric.GPU_MEMORY_USED, _metric.GPU_MEMORY_TOTAL),
    "power": (_metric.GPU_POWER,),
    "temperature": (_metric.GPU_TEMPERATURE,),
    "processes": (_metric.GPU_PROCESS_MEMORY, _metric.GPU_TREE_MEMORY),
}
#: The lists of processes NVML keeps per GPU.
_PROCESS_LISTS = ("compute", "graphics")
#: NVML's "value not available" (an unsigned -1), where the binding leaves it raw.
_NOT_AVAILABLE = (1 << 64) - 1


@dataclass(frozen=True)
class _Device:
    """One GPU as the constructor found it: what the collector reads of it."""

    index: int
    name: str
    sources: tuple[str, ...]
    process_lists: tuple[str, ...]
    legacy_temperature: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(
            f"gpu{self.index}.{metric.key}"
            for source in self.sources
            for metric in _SOURCES[source]
        )


class NvmlProbe(BackgroundProbe):
    """NVIDIA GPUs through NVML: one subject per GPU, ``gpu0``, ``gpu1``, ...

    Values per GPU (only those the GPU supports; see the README for the table):

    - ``utilization``: percent of NVML's last sample period in which a kernel ran;
      ``memory_busy``: percent in which device memory was read or written (how
      busy the memory is, not how full).
    - ``device_memory_used``, ``device_memory_total``: bytes, all processes and
      the driver together.
    - ``power``: watts the board draws now; ``temperature``: °C of the GPU core.
    - ``process_memory``: bytes of device memory that the measured process holds;
      ``tree_memory``: the same for the process and its live descendants. NVML
      lists processes by pid: in a container with its own pid namespace it may
      list pids of the host (then these figures are missing, with a warning) or
      no process at all (then they read 0). A process in NVML's compute and
      graphics lists is counted once.

    ``devices`` are NVML's indices, the numbers ``nvidia-smi`` shows (not CUDA's,
    which ``CUDA_VISIBLE_DEVICES`` renumbers); ``None`` reads every GPU. Figures
    are collected every ``interval`` seconds by the background reader; one that
    fails while the program runs is missing from the points, and the failure is
    logged once.

    Raises:
        RuntimeError: ``nvidia-ml-py`` is not installed, NVML (the NVIDIA driver)
            cannot be loaded, or it finds no GPU.
        ValueError: ``devices`` is not a list of distinct GPU indices of this
            machine; ``interval`` is not a positive number.
    """

    def __init__(self, *, devices: Iterable[int] | None = None, interval: float = 0.5) -> None:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not (0 < interval < float("inf"))
        ):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        wanted = _check_devices(devices)
        found = _discover(_load_nvml(), wanted)
        collector = _NvmlCollector(found, float(interval))
        index = {name: i for i, name in enumerate(collector.fields)}
        figures: list[Figure] = []
        for device in found:
            subject = Subject(
                f"gpu{device.index}", f"GPU {device.index} (NVML index): {device.name}"
            )
            figures += [
                Figure(Measure(subject, metric), "gauge", (index[f"{subject.key}.{metric.key}"],))
                for source in device.sources
                for metric in _SOURCES[source]
            ]
        super().__init__(collector, figures, "NvmlProbe")
        self.devices = tuple(device.index for device in found)
        self.names = tuple(device.name for device in found)
        self.interval = float(interval)

    def __repr__(self) -> str:
        return f"NvmlProbe(devices={list(self.devices)!r}, interval={self.interval!r})"


def _check_devices(devices: Iterable[int] | None) -> tuple[int, ...] | None:
    if devices is None:
        return None
    allowed = "a list of distinct GPU indices (0, 1, ... as nvidia-smi numbers them) or None"
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Iterable):
        raise ValueError(f"devices must be {allowed}, got {devices!r}")
    wanted = tuple(devices)
    if (
        not wanted
        or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in wanted)
        or len(set(wanted)) != len(wanted)
    ):
        raise ValueError(f"devices must be {allowed}, got {devices!r}")
    return wanted


def _load_nvml() -> Any:
    try:
        import pynvml
    except ImportError as error:
        raise RuntimeError(
            "NvmlProbe needs the package nvidia-ml-py (imported as pynvml), which is not"
            f" installed: {INSTALL_HINT}"
        ) from error
    return pynvml


def _discover(nvml: Any, wanted: tuple[int, ...] | None) -> tuple[_Device, ...]:
    """The GPUs to read and what each supports (NVML is started and stopped)."""
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError and ctypes' errors alike: all say the same
        raise RuntimeError(
            f"NvmlProbe cannot start NVML ({_describe(error)}): it needs an NVIDIA GPU and"
            " the NVIDIA driver, whose libnvidia-ml.so.1 must be loadable (in a container:"
            " run it with the GPU and driver mounted, e.g. docker --gpus all)"
        ) from error
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            raise RuntimeError("NvmlProbe found no NVIDIA GPU (NVML started, but lists none)")
        for index in wanted or ():
            if index >= count:
                raise ValueError(
                    f"devices: there is no GPU {index}; this machine has GPUs 0 to {count - 1}"
                    " (NVML indices, as nvidia-smi numbers them)"
                )
        return tuple(_inspect(nvml, index) for index in (wanted or range(count)))
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _inspect(nvml: Any, index: int) -> _Device:
    """Which figures GPU ``index`` supports: a call it does not support is left out."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    try:
        name = nvml.nvmlDeviceGetName(handle)
    except Exception:  # noqa: BLE001 - the name only describes the subject
        name = "unknown NVIDIA GPU"
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    sources: list[str] = []
    legacy_temperature = False
    for source in _SOURCES:
        if source == "processes":
            continue
        if source == "temperature":
            if _supported(nvml, _temperature, handle, False):
                sources.append(source)
            elif _supported(nvml, _temperature, handle, True):
                sources.append(source)
                legacy_temperature = True
        elif _supported(nvml, _READERS[source], handle):
            sources.append(source)
    lists = tuple(kind for kind in _PROCESS_LISTS if _supported(nvml, _process_list, handle, kind))
    if lists:
        sources.append("processes")
    return _Device(index, str(name), tuple(sources), lists, legacy_temperature)


def _supported(nvml: Any, call: Callable[..., object], *args: Any) -> bool:
    """False where ``call(nvml, *args)`` says the GPU (or driver) does not have it;
    other failures may pass, so the figure stays (missing while it fails)."""
    try:
        call(nvml, *args)
    except Exception as error:  # noqa: BLE001 - classified below
        return not _unsupported(nvml, error)
    return True


def _unsupported(nvml: Any, error: Exception) -> bool:
    if isinstance(error, AttributeError):  # a binding without the function
        return True
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    if isinstance(mismatch, type) and isinstance(error, mismatch):  # a driver without it
        return True
    codes = {
        getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3),
        getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13),
    }
    return getattr(error, "value", None) in codes


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# -- the NVML calls, one per source; each returns its source's values ------------------


def _utilization(nvml: Any, handle: Any) -> tuple[float, ...]:
    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
    return (_number(rates.gpu), _number(rates.memory))


def _memory(nvml: Any, handle: Any) -> tuple[float, ...]:
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    return (_number(memory.used), _number(memory.total))


def _power(nvml: Any, handle: Any) -> tuple[float, ...]:
    return (_number(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0,)  # NVML gives milliwatts


def _temperature(nvml: Any, handle: Any, legacy: bool) -> tuple[float, ...]:
    sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
    if legacy:  # deprecated in NVML 13; the only call older drivers have
        return (_number(nvml.nvmlDeviceGetTemperature(handle, sensor)),)
    return (_number(nvml.nvmlDeviceGetTemperatureV(handle, sensor)),)


_READERS: dict[str, Callable[[Any, Any], tuple[float, ...]]] = {
    "utilization": _utilization,
    "memory": _memory,
    "power": _power,
}


def _process_list(nvml: Any, handle: Any, kind: str) -> dict[int, float]:
    """Device memory per pid in one of NVML's lists (NaN where NVML has no figure)."""
    if kind == "compute":
        entries = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    else:
        entries = nvml.nvmlDeviceGetGraphicsRunningProcesses(handle)
    memory: dict[int, float] = {}
    for entry in entries:
        pid = int(entry.pid)
        memory[pid] = memory.get(pid, 0.0) + _number(entry.usedGpuMemory)
    return memory


def _larger(a: float, b: float) -> float:
    """The larger of two figures for one process (in NVML's compute and graphics
    lists: counted once); a known one beats an unknown (NaN) one."""
    if a != a:
        return b
    return a if b != b else max(a, b)


def _number(value: Any) -> float:
    """A float, or NaN for NVML's "not available" (``None`` or an unsigned -1)."""
    if value is None or value == _NOT_AVAILABLE:
        return math.nan
    return float(value)


# -- the collector ----------------------------------------------------------------------


class _NvmlCollector(Collector):
    """Runs in the reader: reads every GPU's figures with NVML.

    ``pid`` is the measured process: ``None`` means the process that hands the
    collector to its reader (it is fixed when the collector is pickled for it,
    in that process, so a forked child measures itself).
    """

    def __init__(self, devices: tuple[_Device, ...], interval: float) -> None:
        self.devices = devices
        self.interval = interval
        self.pid: int | None = None
        self.problem: str | None = None
        self._fields = tuple(field for device in devices for field in device.fields)
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._noted: set[str] = set()

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["pid"] = os.getpid() if self.pid is None else self.pid
        state["_nvml"], state["_handles"] = None, []  # made again by open()
        return state

    def open(self) -> None:
        nvml = _load_nvml()
        nvml.nvmlInit()
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(d.index) for d in self.devices]
        self._noted = set()

    def close(self) -> None:
        """Stop NVML (the reader never calls it: NVML ends with the reader)."""
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None

    def collect(self) -> Sequence[float]:
        nvml = self._nvml
        values: list[float] = []
        fresh: list[str] = []
        for device, handle in zip(self.devices, self._handles, strict=True):
            for source in device.sources:
                width = len(_SOURCES[source])
                got: Sequence[float]
                try:
                    if source == "processes":
                        got = self._processes(device, handle, fresh)
                    elif source == "temperature":
                        got = _temperature(nvml, handle, device.legacy_temperature)
                    else:
                        got = _READERS[source](nvml, handle)
                except Exception as error:  # noqa: BLE001 - one figure failing hides no other
                    self._note(f"gpu{device.index}.{source}", _describe(error), fresh)
                    got = (math.nan,) * width
                values += got
        if fresh:
            self.problem = "; ".join(fresh)
        return values

    def _processes(self, device: _Device, handle: Any, fresh: list[str]) -> tuple[float, ...]:
        """(the measured process's memory, its tree's) on one GPU."""
        merged: dict[int, float] = {}
        for kind in device.process_lists:
            for pid, used in _process_list(self._nvml, handle, kind).items():
                merged[pid] = _larger(merged.get(pid, math.nan), used)
        root = self.pid if self.pid is not None else os.getpid()
        listed = root in merged
        own = merged.pop(root, 0.0)
        tree = own
        strangers: list[int] = []
        for pid, used in merged.items():
            try:
                ancestors = psutil.Process(pid).parents()
            except psutil.NoSuchProcess:
                strangers.append(pid)
                continue
            except psutil.Error:
                continue
            if any(parent.pid == root for parent in ancestors):
                tree += used
        # A pid that is no process here: another pid namespace, or one that just ended.
        if strangers and not listed:
            some = ", ".join(map(str, strangers[:3])) + (", ..." if len(strangers) > 3 else "")
            self._note(
                f"gpu{device.index}.processes",
                f"NVML lists pids that are no processes here ({some}): another pid namespace"
                " (a container?), so this process's GPU memory is unknown",
                fresh,
            )
            return math.nan, math.nan
        if own != own or tree != tree:
            self._note(
                f"gpu{device.index}.process_memory",
                "NVML has no memory figure for a process (NVML_VALUE_NOT_AVAILABLE)",
                fresh,
            )
        return own, tree

    def _note(self, key: str, text: str, fresh: list[str]) -> None:
        """Report ``text`` through :attr:`problem`, once per ``key``."""
        if key not in self._noted:
            self._noted.add(key)
            fresh.append(f"{key}: {text}")
