"""Probes of the Python interpreter: one module per probe.

:class:`~multimeter.probe.ResourceProbe` lives in :mod:`multimeter.probe`.
"""

from multimeter.probes.gc import GCProbe
from multimeter.probes.tracemalloc import TracemallocProbe

__all__ = ["GCProbe", "TracemallocProbe"]
