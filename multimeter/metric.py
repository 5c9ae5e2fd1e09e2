"""Metrics: what kind of value is measured, in which unit, within which limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "BYTES",
    "CALL_COUNT",
    "CONTEXT_SWITCH_INVOLUNTARY_RATE",
    "CONTEXT_SWITCH_VOLUNTARY_RATE",
    "CPU_PERCENT",
    "CPU_SYSTEM_RATE",
    "CPU_SYSTEM_TIME",
    "CPU_USER_RATE",
    "CPU_USER_TIME",
    "DURATION_BUCKETS",
    "DURATION_MAX",
    "DURATION_TOTAL",
    "ERROR_COUNT",
    "FAULT_MAJOR_RATE",
    "FAULT_MINOR_RATE",
    "FDS",
    "GC_COLLECTED_RATE",
    "GC_GEN0_RATE",
    "GC_GEN1_RATE",
    "GC_GEN2_RATE",
    "GC_TIME_RATE",
    "GC_UNCOLLECTABLE_RATE",
    "GPU_MEMORY_BUSY",
    "GPU_MEMORY_TOTAL",
    "GPU_MEMORY_USED",
    "GPU_POWER",
    "GPU_PROCESS_MEMORY",
    "GPU_TEMPERATURE",
    "GPU_TREE_MEMORY",
    "GPU_UTILIZATION",
    "HANDLES",
    "HEAP_CURRENT",
    "HEAP_PEAK",
    "INPUT_BLOCK_RATE",
    "LOAD_1",
    "LOAD_15",
    "LOAD_5",
    "MAX_RSS",
    "MEMORY_AVAILABLE",
    "MEMORY_USED",
    "Metric",
    "OUTPUT_BLOCK_RATE",
    "PEAK_RSS",
    "PROCESSES",
    "PSS",
    "READ_BYTES_RATE",
    "READ_CHARS_RATE",
    "READ_OPS_RATE",
    "RSS",
    "SHARED_MEMORY",
    "SWAP_RATE",
    "SWAP_USED",
    "SYSTEM_CPU_PERCENT",
    "THREADS",
    "UNSHARED_DATA",
    "UNSHARED_STACK",
    "USS",
    "VMS",
    "WRITE_BYTES_RATE",
    "WRITE_CHARS_RATE",
    "WRITE_OPS_RATE",
]


@dataclass(frozen=True)
class Metric:
    """The type of a measured value.

    ``min_value`` and ``max_value`` bound the values a probe may report; ``None``
    disables that bound.

    >>> Metric("cpu_user", unit="s/s").limit_value(-0.1)
    0.0
    """

    key: str
    description: str = ""
    unit: str = ""
    value_type: type = float
    min_value: Any = 0.0
    max_value: Any = None

    def limit_value(self, value: Any) -> Any:
        """Return ``value`` capped to ``[min_value, max_value]``."""
        if self.min_value is not None and value < self.min_value:
            value = self.min_value
        if self.max_value is not None and value > self.max_value:
            value = self.max_value
        return value


BYTES = "B"

CPU_USER_RATE = Metric("cpu_user", "CPU time spent in user mode, per second of wall time", "s/s")
CPU_SYSTEM_RATE = Metric(
    "cpu_system", "CPU time spent in system (kernel) mode, per second of wall time", "s/s"
)
MAX_RSS = Metric("max_rss", "Peak resident set size so far (a high-water mark, never falls)", BYTES)
PEAK_RSS = Metric(
    "peak_rss",
    "Peak resident set size reached within the interval, where it raised the process's"
    " high-water mark; 0 where it did not (the peak then lies below max_rss)",
    BYTES,
)
SHARED_MEMORY = Metric("shared_memory", "Integral shared memory size (0 on Linux)", "KiB*ticks")
UNSHARED_DATA = Metric("unshared_data", "Integral unshared data size (0 on Linux)", "KiB*ticks")
UNSHARED_STACK = Metric("unshared_stack", "Integral unshared stack size (0 on Linux)", "KiB*ticks")
FAULT_MINOR_RATE = Metric("page_faults_no_io", "Page faults served without I/O, per second", "1/s")
FAULT_MAJOR_RATE = Metric("page_faults_io", "Page faults that required I/O, per second", "1/s")
SWAP_RATE = Metric("swaps", "Times swapped out of main memory, per second", "1/s")
INPUT_BLOCK_RATE = Metric(
    "block_input", "Block input operations of the file system, per second", "1/s"
)
OUTPUT_BLOCK_RATE = Metric(
    "block_output", "Block output operations of the file system, per second", "1/s"
)
CONTEXT_SWITCH_VOLUNTARY_RATE = Metric(
    "context_switches_voluntary",
    "Voluntary context switches (waiting for a resource), per second",
    "1/s",
)
CONTEXT_SWITCH_INVOLUNTARY_RATE = Metric(
    "context_switches_involuntary",
    "Involuntary context switches (preempted by the scheduler), per second",
    "1/s",
)

# -- psutil: current sizes, counts and I/O ------------------------------------------

CPU_PERCENT = Metric(
    "cpu_percent", "CPU time in user and system mode, in percent of one core", "%", max_value=None
)
RSS = Metric("rss", "Resident set size now", BYTES)
VMS = Metric("vms", "Virtual memory size now", BYTES)
USS = Metric(
    "uss", "Unique set size now: memory freed if the process ended (read less often)", BYTES
)
PSS = Metric(
    "pss", "Proportional set size now: shared pages split among their users (Linux)", BYTES
)
THREADS = Metric("threads", "Threads now", "1")
FDS = Metric("fds", "Open file descriptors now", "1")
HANDLES = Metric("handles", "Open handles now (Windows)", "1")
PROCESSES = Metric("processes", "Processes now: the process and its live descendants", "1")
READ_BYTES_RATE = Metric("read_bytes", "Bytes read from storage, per second", "B/s")
WRITE_BYTES_RATE = Metric("write_bytes", "Bytes written to storage, per second", "B/s")
READ_CHARS_RATE = Metric(
    "read_chars", "Bytes read through read calls (page cache included), per second", "B/s"
)
WRITE_CHARS_RATE = Metric(
    "write_chars", "Bytes written through write calls (page cache included), per second", "B/s"
)
READ_OPS_RATE = Metric("read_ops", "Read calls, per second", "1/s")
WRITE_OPS_RATE = Metric("write_ops", "Write calls, per second", "1/s")

# -- system-wide ---------------------------------------------------------------------

SYSTEM_CPU_PERCENT = Metric(
    "cpu_percent",
    "CPU time in use on the whole machine, in percent of all its CPUs",
    "%",
    max_value=100.0,
)
MEMORY_USED = Metric("memory_used", "Memory in use (total minus free, buffers and cache)", BYTES)
MEMORY_AVAILABLE = Metric(
    "memory_available", "Memory available to new programs without swapping", BYTES
)
SWAP_USED = Metric("swap_used", "Swap space in use", BYTES)
LOAD_1 = Metric("load_1", "Load average over 1 minute (runnable and waiting tasks)", "1")
LOAD_5 = Metric("load_5", "Load average over 5 minutes", "1")
LOAD_15 = Metric("load_15", "Load average over 15 minutes", "1")
# -- the Python interpreter: its heap (tracemalloc) and garbage collector -------------

HEAP_CURRENT = Metric(
    "heap_current",
    "Memory of the Python allocations traced by tracemalloc that are alive now"
    " (allocated since tracing started)",
    BYTES,
    int,
)
HEAP_PEAK = Metric(
    "heap_peak",
    "Highest memory traced by tracemalloc since the previous point (for the first"
    " point: since the measurement started)",
    BYTES,
    int,
)
GC_GEN0_RATE = Metric(
    "gc_collections_gen0", "Garbage collections of generation 0, per second", "1/s"
)
GC_GEN1_RATE = Metric(
    "gc_collections_gen1", "Garbage collections of generation 1, per second", "1/s"
)
GC_GEN2_RATE = Metric(
    "gc_collections_gen2",
    "Garbage collections of generation 2 (full collections, gc.collect()), per second",
    "1/s",
)
GC_TIME_RATE = Metric("gc_time", "Time spent in garbage collection, per second of wall time", "s/s")
GC_COLLECTED_RATE = Metric(
    "gc_collected", "Objects freed by the garbage collector (unreachable cycles), per second", "1/s"
)
GC_UNCOLLECTABLE_RATE = Metric(
    "gc_uncollectable",
    "Unreachable objects the garbage collector could not free (put in gc.garbage), per second",
    "1/s",
)

# -- NVIDIA GPUs, read through NVML ---------------------------------------------------

GPU_UTILIZATION = Metric(
    "utilization",
    "Percent of NVML's last sample period (1/6 s to 1 s, by GPU) in which a kernel ran",
    "%",
    max_value=100.0,
)
GPU_MEMORY_BUSY = Metric(
    "memory_busy",
    "Percent of NVML's last sample period in which device memory was read or written"
    " (NVML's memory utilisation: how busy, not how full)",
    "%",
    max_value=100.0,
)
GPU_MEMORY_USED = Metric(
    "device_memory_used", "Device memory in use by all processes and the driver", BYTES
)
GPU_MEMORY_TOTAL = Metric("device_memory_total", "Device memory installed", BYTES)
GPU_POWER = Metric("power", "Power drawn by the GPU board now", "W")
GPU_TEMPERATURE = Metric("temperature", "GPU core temperature now", "°C", min_value=None)
GPU_PROCESS_MEMORY = Metric(
    "process_memory",
    "Device memory used by the measured process (as NVML lists processes; see README)",
    BYTES,
)
GPU_TREE_MEMORY = Metric(
    "tree_memory",
    "Device memory used by the measured process and its live descendants",
    BYTES,
)

# -- aggregate mode: the calls of a function that ended in one cycle ----------------

CALL_COUNT = Metric("count", "Calls that ended in the cycle", "1", int)
ERROR_COUNT = Metric("errors", "Calls that ended in the cycle by raising an exception", "1", int)
DURATION_TOTAL = Metric("duration", "The calls' durations (enter to exit), summed", "s")
DURATION_MAX = Metric("duration_max", "The longest call's duration", "s")
CPU_USER_TIME = Metric(
    "cpu_user_time",
    "CPU time of the process in user mode while the calls ran (each call's"
    " process.cpu_user rate times its duration), summed",
    "s",
)
CPU_SYSTEM_TIME = Metric(
    "cpu_system_time",
    "CPU time of the process in system mode while the calls ran (each call's"
    " process.cpu_system rate times its duration), summed",
    "s",
)


def _bucket(bound_s: float, name: str) -> tuple[float, Metric]:
    text = "any time" if bound_s == float("inf") else f"at most {name}"
    return bound_s, Metric(
        f"duration_le_{name}",
        f"Calls that took {text} (cumulative, as Prometheus buckets)",
        "1",
        int,
    )


#: The duration histogram of aggregate mode: (upper bound in seconds, metric),
#: one bucket per decade from 1 us to 10 s and one for any duration. Counts are
#: cumulative (a call of 3 ms counts in ``duration_le_10ms``, ``duration_le_100ms``
#: and every bucket above), so the last bucket equals :data:`CALL_COUNT`.
DURATION_BUCKETS: tuple[tuple[float, Metric], ...] = tuple(
    _bucket(bound, name)
    for bound, name in (
        (1e-6, "1us"),
        (1e-5, "10us"),
        (1e-4, "100us"),
        (1e-3, "1ms"),
        (1e-2, "10ms"),
        (1e-1, "100ms"),
        (1.0, "1s"),
        (10.0, "10s"),
        (float("inf"), "inf"),
    )
)
