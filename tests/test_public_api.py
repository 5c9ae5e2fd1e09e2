"""The public surface: names, module paths, and what importing costs."""

from __future__ import annotations

import importlib

import pytest

import multimeter
from tests._programs import run_python


def test_top_level_exports_exactly_the_public_names():
    """`multimeter.__all__` is the documented front door, sorted."""
    expected = [
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
    assert expected == multimeter.__all__
    assert sorted(multimeter.__all__) == multimeter.__all__
    for name in expected:
        assert hasattr(multimeter, name)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("multimeter.metric", "Metric"),
        ("multimeter.subject", "Subject"),
        ("multimeter.measure", "Measure"),
        ("multimeter.probe", "Probe"),
        ("multimeter.probe", "ResourceProbe"),
        ("multimeter.probes", "GCProbe"),
        ("multimeter.probes", "TracemallocProbe"),
        ("multimeter.probes.gc", "GCProbe"),
        ("multimeter.probes.tracemalloc", "TracemallocProbe"),
        ("multimeter.result", "Result"),
        ("multimeter.result", "Schema"),
        ("multimeter.result", "Point"),
        ("multimeter.result", "Mark"),
        ("multimeter.measurement", "Measurement"),
        ("multimeter.multimeter", "Multimeter"),
        ("multimeter.storages.base", "Storage"),
        ("multimeter.storages.dummy", "DummyStorage"),
        ("multimeter.storages.file", "FileStorage"),
        ("multimeter.storages.file", "FileFormat"),
        ("multimeter.storages.file", "JsonFormat"),
        ("multimeter.storages.file", "LineFormat"),
        ("multimeter.storages.file", "ResultFileError"),
        ("multimeter.storages.jsonl", "JsonLinesStorage"),
    ],
)
def test_documented_names_live_at_their_documented_module_paths(module, name):
    """Every class on the API page is importable from the module the page names."""
    assert isinstance(getattr(importlib.import_module(module), name), type)


def test_top_level_names_are_the_documented_classes():
    """The re-exports are the very classes of the documented modules."""
    from multimeter.probe import ResourceProbe
    from multimeter.storages.file import FileStorage

    assert multimeter.ResourceProbe is ResourceProbe
    assert multimeter.FileStorage is FileStorage


def test_importing_multimeter_does_not_import_influxdb_client():
    """The optional InfluxDB client stays unloaded until an InfluxDB storage is built."""
    code = "import sys, multimeter; print('influxdb_client' in sys.modules)"
    output = run_python("-c", code, check=True).stdout
    assert "False" == output.strip()
