"""multimeter: measure the resource usage of Python code while it runs."""

from multimeter._config import configure, flush, get_multimeter
from multimeter._instrument import instrument
from multimeter._loading import load_result, load_results
from multimeter._measured import measured
from multimeter._version import __version__
from multimeter.multimeter import Multimeter
from multimeter.probe import ResourceProbe
from multimeter.probes import GCProbe, TracemallocProbe
from multimeter.storages.dummy import DummyStorage
from multimeter.storages.file import FileStorage, JsonFormat, LineFormat, ResultFileError
from multimeter.storages.jsonl import JsonLinesStorage

__all__ = [
    "DummyStorage",
    "FileStorage",
    "GCProbe",
    "JsonFormat",
    "JsonLinesStorage",
    "LineFormat",
    "Multimeter",
    "ResourceProbe",
    "ResultFileError",
    "TracemallocProbe",
    "__version__",
    "configure",
    "flush",
    "get_multimeter",
    "instrument",
    "load_result",
    "load_results",
    "measured",
]
