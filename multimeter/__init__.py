"""multimeter: measure the resource usage of Python code while it runs."""

from typing import TYPE_CHECKING, Any

from multimeter._config import flush, get_multimeter, is_configured, reset
from multimeter._configure import configure
from multimeter._instrument import instrument
from multimeter._loading import load_result, load_results
from multimeter._measured import measured
from multimeter._version import __version__
from multimeter.multimeter import Multimeter
from multimeter.probe import ResourceProbe
from multimeter.result import Mark, Point, Result
from multimeter.storages.dummy import DummyStorage
from multimeter.storages.file import FileStorage, JsonFormat, LineFormat, ResultFileError
from multimeter.storages.jsonl import JsonLinesStorage

if TYPE_CHECKING:
    from multimeter.probes.gc import GCProbe
    from multimeter.probes.nvml import NvmlProbe
    from multimeter.probes.psutil import PsutilProbe
    from multimeter.probes.system import SystemProbe
    from multimeter.probes.tracemalloc import TracemallocProbe


def __getattr__(name: str) -> Any:
    """Probes beyond ResourceProbe, imported on first use: `import multimeter` stays light."""
    import importlib

    probes = importlib.import_module("multimeter.probes")
    if name not in probes.__all__:
        raise AttributeError(f"module 'multimeter' has no attribute {name!r}")
    value = getattr(probes, name)
    globals()[name] = value
    return value


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
