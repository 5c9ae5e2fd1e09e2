"""multimeter: measure the resource usage of Python code while it runs."""

from typing import TYPE_CHECKING, Any

from multimeter._config import flush, get_multimeter, is_configured, reset
from multimeter._configure import configure
from multimeter._measured import measured
from multimeter._version import __version__
from multimeter.multimeter import Multimeter
from multimeter.probe import ResourceProbe
from multimeter.result import Mark, Point, Result
from multimeter.storages.dummy import DummyStorage

if TYPE_CHECKING:
    from multimeter._instrument import instrument
    from multimeter._loading import load_result, load_results
    from multimeter.probes.gc import GCProbe
    from multimeter.probes.nvml import NvmlProbe
    from multimeter.probes.psutil import PsutilProbe
    from multimeter.probes.system import SystemProbe
    from multimeter.probes.tracemalloc import TracemallocProbe
    from multimeter.storages.file import FileStorage, JsonFormat, LineFormat, ResultFileError
    from multimeter.storages.jsonl import JsonLinesStorage

#: Public names whose modules load on first use (`import multimeter` stays light):
#: every program that imports multimeter pays for what is imported here, and most
#: never read results, name a storage or instrument a package.
_LAZY = {
    "instrument": "multimeter._instrument",
    "load_result": "multimeter._loading",
    "load_results": "multimeter._loading",
    "FileStorage": "multimeter.storages.file",
    "JsonFormat": "multimeter.storages.file",
    "LineFormat": "multimeter.storages.file",
    "ResultFileError": "multimeter.storages.file",
    "JsonLinesStorage": "multimeter.storages.jsonl",
    "GCProbe": "multimeter.probes",
    "NvmlProbe": "multimeter.probes",
    "PsutilProbe": "multimeter.probes",
    "SystemProbe": "multimeter.probes",
    "TracemallocProbe": "multimeter.probes",
}


def __getattr__(name: str) -> Any:
    """The names of ``_LAZY``, imported on first use and kept."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multimeter' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DummyStorage",
    "FileStorage",
    "GCProbe",
    "JsonFormat",
    "JsonLinesStorage",
    "LineFormat",
    "Mark",
    "Multimeter",
    "NvmlProbe",
    "Point",
    "PsutilProbe",
    "ResourceProbe",
    "Result",
    "ResultFileError",
    "SystemProbe",
    "TracemallocProbe",
    "__version__",
    "configure",
    "flush",
    "get_multimeter",
    "instrument",
    "is_configured",
    "load_result",
    "load_results",
    "measured",
    "reset",
]
