"""``PsutilProbe``: a process and its live child tree, read with psutil.

The figures are collected by the background reader (``multimeter._reader``):
a helper process reads ``/proc`` (or the platform's equivalent) every
``interval`` seconds, so neither the sampler nor a measured call ever waits
for psutil, even while the program runs CPU-bound Python.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil

from multimeter import metric as _metric
from multimeter._reader import Collector
from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.probes._background import BackgroundProbe, Figure
from multimeter.subject import PROC, TREE, Subject

__all__ = ["PsutilProbe"]

# The counters summed over the tree: (field, metric of its rate, scale).
_CPU = ("cpu_user", "cpu_system")
_IO = ("read_bytes", "write_bytes", "read_chars", "write_chars", "read_ops", "write_ops")
_CTX = ("ctx_voluntary", "ctx_involuntary")
_RATE_METRICS: dict[str, Metric] = {
    "cpu_user": _metric.CPU_USER_RATE,
    "cpu_system": _metric.CPU_SYSTEM_RATE,
    "read_bytes": _metric.READ_BYTES_RATE,
    "write_bytes": _metric.WRITE_BYTES_RATE,
    "read_chars": _metric.READ_CHARS_RATE,
    "write_chars": _metric.WRITE_CHARS_RATE,
    "read_ops": _metric.READ_OPS_RATE,
    "write_ops": _metric.WRITE_OPS_RATE,
    "ctx_voluntary": _metric.CONTEXT_SWITCH_VOLUNTARY_RATE,
    "ctx_involuntary": _metric.CONTEXT_SWITCH_INVOLUNTARY_RATE,
}
_GAUGE_METRICS: dict[str, Metric] = {
    "rss": _metric.RSS,
    "vms": _metric.VMS,
    "uss": _metric.USS,
    "pss": _metric.PSS,
    "threads": _metric.THREADS,
    "fds": _metric.FDS,
    "handles": _metric.HANDLES,
    "processes": _metric.PROCESSES,
}


def _platform_fields() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(counters, gauges, full-memory gauges) that psutil has on this platform."""
    counters = list(_CPU)
    probe = psutil.Process()
    if hasattr(psutil.Process, "io_counters"):
        try:
            io = probe.io_counters()
        except (psutil.Error, OSError, NotImplementedError):
            io = None
        if io is not None:
            counters += ["read_bytes", "write_bytes"]
            if hasattr(io, "read_chars"):
                counters += ["read_chars", "write_chars"]
            counters += ["read_ops", "write_ops"]
    counters += _CTX
    gauges = ["rss", "vms", "threads"]
    if hasattr(psutil.Process, "num_fds"):
        gauges.append("fds")
    elif hasattr(psutil.Process, "num_handles"):  # pragma: no cover - Windows
        gauges.append("handles")
    full: list[str] = []
    try:
        memory = probe.memory_full_info()
    except (psutil.Error, OSError, NotImplementedError):  # pragma: no cover
        memory = None
    for name in ("uss", "pss"):
        if memory is not None and hasattr(memory, name):
            full.append(name)
    return tuple(counters), tuple(gauges), tuple(full)


class PsutilProbe(BackgroundProbe):
    """A process (this one, or any by ``pid``) and its live child tree, via psutil.

    Subjects: ``proc`` (the process) and, with ``children=True``, ``tree`` (the
    process and all its live descendants, recursively, summed; plus
    ``tree.processes``, how many there are).

    Values per subject (only those the platform has; see the README for the table):

    - ``cpu_user``, ``cpu_system``: CPU seconds per second of wall time;
      ``cpu_percent``: both together, in percent of one core.
    - ``rss``, ``vms``: resident and virtual memory now, in bytes. ``uss`` and
      ``pss`` (unique and proportional set size; ``pss`` on Linux only) cost
      far more to read: they are read every ``full_interval`` seconds.
    - ``threads``, ``fds`` (``handles`` on Windows): counts now.
    - ``read_bytes``, ``write_bytes`` (storage layer), ``read_chars``,
      ``write_chars`` (through read/write calls, page cache included; Linux):
      bytes per second; ``read_ops``, ``write_ops``: read and write calls per
      second (where psutil has I/O counters: not on macOS).
    - ``context_switches_voluntary``, ``context_switches_involuntary``: per second.

    Figures are collected every ``interval`` seconds by the background reader;
    a point holds the latest collection, and rates between two collections.
    A child that starts between two collections is counted from the next one,
    with all it used so far; a child that ends is counted up to its last
    collection (and never twice: a pid reused by a new process is a new child).
    A child that starts and ends between two collections is not seen at all:
    that is the limit of sampling (``ResourceProbe``'s ``children`` figures count
    it once it has been waited for).

    Raises:
        ValueError: ``pid`` is not a positive integer or no such process exists;
            an interval is not a positive number.
    """

    def __init__(
        self,
        pid: int | None = None,
        children: bool = True,
        *,
        interval: float = 0.1,
        full_interval: float = 1.0,
    ) -> None:
        if pid is not None:
            if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
                raise ValueError(f"pid must be a positive integer or None, got {pid!r}")
            if not psutil.pid_exists(pid):
                raise ValueError(f"pid={pid}: no such process")
        for name, value in (("interval", interval), ("full_interval", full_interval)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.pid = pid
        self.children = bool(children)
        counters, gauges, full = _platform_fields()
        subjects = (PROC, TREE) if self.children else (PROC,)
        collector = _TreeCollector(
            pid, self.children, counters, gauges + full, float(interval), float(full_interval)
        )
        index = {name: i for i, name in enumerate(collector.fields)}
        figures: list[Figure] = []
        for subject in subjects:
            figures += _figures(subject, counters, gauges + full, index)
        super().__init__(collector, figures, "PsutilProbe")

    def __repr__(self) -> str:
        return f"PsutilProbe(pid={self.pid!r}, children={self.children!r})"


def _figures(
    subject: Subject, counters: Sequence[str], gauges: Sequence[str], index: dict[str, int]
) -> list[Figure]:
    def at(name: str) -> int:
        return index[f"{subject.key}.{name}"]

    figures = [
        Figure(Measure(subject, _metric.CPU_USER_RATE), "rate", (at("cpu_user"),)),
        Figure(Measure(subject, _metric.CPU_SYSTEM_RATE), "rate", (at("cpu_system"),)),
        Figure(
            Measure(subject, _metric.CPU_PERCENT),
            "rate",
            (at("cpu_user"), at("cpu_system")),
            100.0,
        ),
    ]
    figures += [
        Figure(Measure(subject, _RATE_METRICS[name]), "rate", (at(name),))
        for name in counters
        if name not in _CPU
    ]
    names = list(gauges) + (["processes"] if subject is TREE else [])
    figures += [
        Figure(Measure(subject, _GAUGE_METRICS[name]), "gauge", (at(name),)) for name in names
    ]
    return figures


class _TreeCollector(Collector):
    """Runs in the reader: reads the process and its descendants.

    The tree's counters are kept monotonic: a descendant's counters are added
    while it lives, and its last ones stay in the sum once it is gone.
    """

    def __init__(
        self,
        pid: int | None,
        children: bool,
        counters: tuple[str, ...],
        gauges: tuple[str, ...],
        interval: float,
        full_interval: float,
    ) -> None:
        self.target = pid  # None: the measured process (measured_pid)
        self.children = children
        self.counters = counters
        self.gauges = gauges
        self.interval = interval
        self.full_interval = full_interval
        subjects = ("proc", "tree") if children else ("proc",)
        names = list(counters) + list(gauges)
        self._fields = tuple(f"{s}.{n}" for s in subjects for n in names) + (
            ("tree.processes",) if children else ()
        )
        self._process: Any = None
        self.problem: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    def open(self) -> None:
        self.pid = self.target if self.target is not None else (self.measured_pid or os.getpid())
        self._process = psutil.Process(self.pid)
        self._skip = self.exclude | {os.getpid()}
        self._live: dict[tuple[int, float], tuple[float, ...]] = {}
        self._gone = [0.0] * len(self.counters)
        self._full: dict[tuple[int, float], tuple[float, ...]] = {}
        self._full_names = tuple(n for n in self.gauges if n in ("uss", "pss"))
        self._plain_gauges = tuple(n for n in self.gauges if n not in ("uss", "pss"))
        self._full_due = 0.0
        self._denied: set[str] = set()
        # On Linux a process's I/O counters take in those of each child it reaps: a
        # descendant reaped within the tree is counted by its parent from then on.
        self._absorbed = (
            tuple(i for i, name in enumerate(self.counters) if name in _IO)
            if sys.platform.startswith("linux")
            else ()
        )
        self._io_high = [0.0] * len(self._absorbed)

    def collect(self) -> Sequence[float]:
        now = time.monotonic()
        full = now >= self._full_due
        if full:
            self._full_due = now + self.full_interval
        process = self._process
        own_counters, own_gauges = self._read(process, full)
        if own_counters is None:
            raise ProcessLookupError(f"process {self.pid} has ended")
        values = list(own_counters) + list(own_gauges)
        if not self.children:
            return values
        tree_counters = [0.0 if c != c else c for c in own_counters]
        tree_gauges = [0.0 if g != g else g for g in own_gauges]
        count = 1
        seen: dict[tuple[int, float], tuple[float, ...]] = {}
        try:
            kids = process.children(recursive=True)
        except psutil.Error:
            kids = []
        for kid in kids:
            if kid.pid in self._skip:
                continue
            try:
                key = (kid.pid, kid.create_time())
            except psutil.Error:
                continue
            counters, gauges = self._read(kid, full, key)
            if counters is None:
                continue
            count += 1
            seen[key] = tuple(0.0 if c != c else c for c in counters)
            tree_gauges = [
                t + (0.0 if g != g else g) for t, g in zip(tree_gauges, gauges, strict=True)
            ]
        for key, last in self._live.items():
            if key not in seen:  # ended since the last collection: keep what it used
                if self._absorbed and not _left_alive(key):
                    # Ended (a zombie, or reaped): its parent's I/O counters take in
                    # its own when it is reaped; count them there, not twice.
                    last = tuple(0.0 if i in self._absorbed else c for i, c in enumerate(last))
                self._gone = [g + c for g, c in zip(self._gone, last, strict=True)]
                self._full.pop(key, None)
        self._live = seen
        for kept in seen.values():
            tree_counters = [t + c for t, c in zip(tree_counters, kept, strict=True)]
        tree_counters = [t + g for t, g in zip(tree_counters, self._gone, strict=True)]
        # Between a child's end and its parent reaping it, its I/O is in neither:
        # the tree's figures hold their high until the parent's take it in.
        for n, i in enumerate(self._absorbed):
            tree_counters[i] = self._io_high[n] = max(tree_counters[i], self._io_high[n])
        return values + tree_counters + tree_gauges + [float(count)]

    def _read(
        self, process: Any, full: bool, key: tuple[int, float] | None = None
    ) -> tuple[list[float] | None, list[float]]:
        """(counters, gauges) of one process; ``(None, [])`` once it is gone."""
        counters: list[float] = []
        gauges: dict[str, float] = {}
        try:
            with process.oneshot():
                if process.status() == psutil.STATUS_ZOMBIE:
                    return None, []  # ended, not yet waited for: nothing left to read
                cpu = process.cpu_times()
                counters += [cpu.user, cpu.system]
                if "read_bytes" in self.counters:
                    io = self._guarded(process, "io_counters")
                    if io is None:
                        counters += [math.nan] * (len(self.counters) - 4)
                    else:
                        counters += [io.read_bytes, io.write_bytes]
                        if "read_chars" in self.counters:
                            counters += [io.read_chars, io.write_chars]
                        counters += [io.read_count, io.write_count]
                ctx = process.num_ctx_switches()
                counters += [ctx.voluntary, ctx.involuntary]
                memory = process.memory_info()
                gauges["rss"], gauges["vms"] = memory.rss, memory.vms
                gauges["threads"] = process.num_threads()
                if "fds" in self.gauges:
                    fds = self._guarded(process, "num_fds")
                    gauges["fds"] = math.nan if fds is None else fds
                if "handles" in self.gauges:  # pragma: no cover - Windows
                    handles = self._guarded(process, "num_handles")
                    gauges["handles"] = math.nan if handles is None else handles
            if self._full_names:
                gauges.update(self._full_memory(process, full, key))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None, []
        except psutil.AccessDenied as error:
            self._note(f"AccessDenied: {error}")
            return None, []
        return counters, [float(gauges.get(n, math.nan)) for n in self.gauges]

    def _full_memory(
        self, process: Any, full: bool, key: tuple[int, float] | None
    ) -> dict[str, float]:
        key = key if key is not None else (process.pid, 0.0)
        if full or key not in self._full:
            memory = self._guarded(process, "memory_full_info")
            self._full[key] = tuple(
                math.nan if memory is None else float(getattr(memory, n)) for n in self._full_names
            )
        return dict(zip(self._full_names, self._full[key], strict=True))

    def _guarded(self, process: Any, method: str) -> Any:
        try:
            return getattr(process, method)()
        except psutil.AccessDenied:
            if method not in self._denied:
                self._denied.add(method)
                self._note(f"AccessDenied: {method}() of pid {process.pid}")
            return None

    def _note(self, text: str) -> None:
        self.problem = text


def _left_alive(key: tuple[int, float]) -> bool:
    """Whether the process ``key`` (pid, create time) still runs outside the tree
    (reparented when its parent ended): nobody in the tree will reap it."""
    try:
        process = psutil.Process(key[0])
        return process.create_time() == key[1] and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
