"""``SystemProbe``: the whole machine's CPU, memory, swap and load, read with psutil."""

from __future__ import annotations

import os
from collections.abc import Sequence

import psutil

from multimeter import metric as _metric
from multimeter._reader import Collector
from multimeter.measure import Measure
from multimeter.probes._background import BackgroundProbe, Figure
from multimeter.subject import SYSTEM

__all__ = ["SystemProbe"]


class SystemProbe(BackgroundProbe):
    """System-wide figures (subject ``system``), collected by the background reader.

    - ``cpu_percent``: CPU time in use on the whole machine (all modes but idle
      and I/O wait), in percent of all its CPUs (0 to 100).
    - ``memory_used``, ``memory_available``: bytes now (psutil's ``used`` and
      ``available``: available counts the cache the kernel can give back).
    - ``swap_used``: bytes now.
    - ``load_1``, ``load_5``, ``load_15``: load averages (where the platform has them).

    Raises:
        ValueError: ``interval`` is not a positive number.
    """

    def __init__(self, *, interval: float = 0.5) -> None:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not (0 < interval < float("inf"))
        ):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        collector = _SystemCollector(float(interval), hasattr(os, "getloadavg"))
        figures = [
            Figure(Measure(SYSTEM, _metric.SYSTEM_CPU_PERCENT), "ratio", (0, 1), 100.0),
            Figure(Measure(SYSTEM, _metric.MEMORY_USED), "gauge", (2,)),
            Figure(Measure(SYSTEM, _metric.MEMORY_AVAILABLE), "gauge", (3,)),
            Figure(Measure(SYSTEM, _metric.SWAP_USED), "gauge", (4,)),
        ]
        if collector.load:
            figures += [
                Figure(Measure(SYSTEM, metric), "gauge", (5 + i,))
                for i, metric in enumerate((_metric.LOAD_1, _metric.LOAD_5, _metric.LOAD_15))
            ]
        super().__init__(collector, figures, "SystemProbe")

    def __repr__(self) -> str:
        return "SystemProbe()"


class _SystemCollector(Collector):
    def __init__(self, interval: float, load: bool) -> None:
        self.interval = interval
        self.load = load

    @property
    def fields(self) -> tuple[str, ...]:
        names = ("cpu_busy", "cpu_total", "memory_used", "memory_available", "swap_used")
        return names + (("load_1", "load_5", "load_15") if self.load else ())

    def collect(self) -> Sequence[float]:
        times = psutil.cpu_times()
        total = sum(times)
        idle = times.idle + getattr(times, "iowait", 0.0)
        # guest time is already part of user time on Linux
        total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        memory = psutil.virtual_memory()
        values = [total - idle, total, memory.used, memory.available, psutil.swap_memory().used]
        if self.load:
            values += os.getloadavg()
        return values
