"""Probes beyond :class:`~multimeter.probe.ResourceProbe`: one module per probe.

Each is imported on first use (``from multimeter.probes import PsutilProbe``), so
importing this package costs nothing and needs none of the optional packages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multimeter.probes.gc import GCProbe
    from multimeter.probes.nvml import NvmlProbe
    from multimeter.probes.psutil import PsutilProbe
    from multimeter.probes.system import SystemProbe
    from multimeter.probes.tracemalloc import TracemallocProbe

_MODULES = {
    "GCProbe": "gc",
    "NvmlProbe": "nvml",
    "PsutilProbe": "psutil",
    "SystemProbe": "system",
    "TracemallocProbe": "tracemalloc",
}

__all__ = ["GCProbe", "NvmlProbe", "PsutilProbe", "SystemProbe", "TracemallocProbe"]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'multimeter.probes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"multimeter.probes.{module}"), name)
    globals()[name] = value
    return value
