"""The measuring half of ``bench/gpu_check.sh``: NvmlProbe on a real GPU.

Prints (each part goes on when an earlier one fails, saying why):

1. what NVML lists: every GPU's compute and graphics processes (pid, memory)
   while this process holds device memory, next to this process's pid, so one
   can see whether NVML's pids are this pid namespace's;
2. a ~3 s measurement, ``Multimeter(NvmlProbe(), ResourceProbe(), cycle_time=0.1)``
   around a GPU workload (the CUDA driver API through ctypes, ``tests/_cuda.py``;
   without it, a sleep), as a table per GPU: points with a value, min, median, max;
3. costs: making an ``NvmlProbe``, its first ``read()`` (which opens NVML in the
   measured process for the first reading), one ``collect()`` as the reader runs
   it, one ``read()`` in the measured process (medians of many).

Run it through ``bench/gpu_check.sh`` (it sets ``PYTHONPATH``), or from the
repository root with ``PYTHONPATH=vendor:. python3 bench/gpu_check.py``.
"""

from __future__ import annotations

import os
import pickle
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

MiB = 1 << 20
WORKLOAD_S = 3.0


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def attempt(title: str, part: Callable[[], None]) -> None:
    """Run one part; a failure is printed and the next part runs."""
    section(title)
    try:
        part()
    except Exception as error:  # noqa: BLE001 - report and go on with the rest
        print(f"FAILED: {type(error).__name__}: {error}")
        if not isinstance(error, (RuntimeError, ImportError)):  # those say it all
            traceback.print_exception(error, limit=-3, chain=False, file=sys.stdout)
    sys.stdout.flush()


def median_us(runs: int, call: Callable[[], object], budget_s: float = 3.0) -> float:
    """Median wall time of one ``call()``, in microseconds, over ``runs`` calls
    (fewer where they take more than ``budget_s`` together)."""
    times: list[float] = []
    end = time.perf_counter() + budget_s
    for _ in range(runs):
        if times and time.perf_counter() > end:
            break
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def environment() -> None:
    print(f"python {sys.version.split()[0]} at {sys.executable}; pid {os.getpid()}")
    try:
        print(f"pid namespace: {os.readlink('/proc/self/ns/pid')}")
    except OSError as error:
        print(f"pid namespace: unknown ({error})")
    for name in ("multimeter", "pynvml", "psutil", "wrapt", "structlog", "pytest"):
        try:
            module = __import__(name)
        except Exception as error:  # noqa: BLE001 - report what is missing, go on
            print(f"  {name}: MISSING ({type(error).__name__}: {error})")
        else:
            version = getattr(module, "__version__", "")
            print(f"  {name} {version} from {getattr(module, '__file__', '?')}")


def nvml_processes() -> None:
    import pynvml

    from tests._cuda import CudaBuffer, CudaError

    try:
        buffer: Any = CudaBuffer(256 * MiB)
        print(f"holding 256 MiB on CUDA device 0 (pid {os.getpid()})")
    except CudaError as error:
        buffer = None
        print(f"no CUDA buffer ({error}); NVML's lists as they are (pid {os.getpid()})")
    try:
        time.sleep(0.2)
        pynvml.nvmlInit()
        try:
            print(f"driver {pynvml.nvmlSystemGetDriverVersion()}")
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                print(f"GPU {index}: {pynvml.nvmlDeviceGetName(handle)}")
                for kind in ("Compute", "Graphics"):
                    call = getattr(pynvml, f"nvmlDeviceGet{kind}RunningProcesses")
                    try:
                        entries = call(handle)
                    except Exception as error:  # noqa: BLE001 - print and go on
                        print(f"  {kind.lower()}: {type(error).__name__}: {error}")
                        continue
                    listed = [(e.pid, e.usedGpuMemory) for e in entries]
                    mine = [m for p, m in listed if p == os.getpid()]
                    print(f"  {kind.lower()}: {listed} -> this pid: {mine}")
        finally:
            pynvml.nvmlShutdown()
    finally:
        if buffer is not None:
            buffer.close()


def measurement() -> None:
    from multimeter import Multimeter, NvmlProbe, ResourceProbe
    from tests._cuda import CudaBuffer, CudaError

    probe = NvmlProbe()
    meter = Multimeter(probe, ResourceProbe(), cycle_time=0.1)
    work = "sleep"
    with meter.measure("gpu-check") as result:
        try:
            with CudaBuffer(1024 * MiB) as buffer:
                fills = buffer.busy(WORKLOAD_S)
                work = f"{fills} fills of 1 GiB with cuMemsetD32 on CUDA device 0"
        except CudaError as error:
            work = f"sleep (no CUDA workload: {error})"
            time.sleep(WORKLOAD_S)
    seconds = result.duration.total_seconds()
    print(f"{len(result.points)} points over {seconds:.2f} s; workload: {work}")
    print(f"NvmlProbe interval {probe.interval} s: points between two readings repeat one")
    units = {m.key: m.metric.unit for m in probe.measures}
    print(f"{'figure':32} {'unit':>4} {'points':>6} {'min':>14} {'median':>14} {'max':>14}")
    for key in units:
        values = [v for v in result.values(key) if v is not None]
        if units[key] == "B":  # bytes read better in MiB
            units[key], values = "MiB", [v / MiB for v in values]
        if values:
            low, mid, high = min(values), statistics.median(values), max(values)
            row = f"{low:14.6g} {mid:14.6g} {high:14.6g}"
        else:
            row = f"{'-':>14} {'-':>14} {'-':>14}"
        print(f"{key:32} {units[key]:>4} {len(values):>6} {row}")
    for key in ("process.cpu_user", "process.cpu_system"):
        values = [v for v in result.values(key) if v is not None]
        if values:
            print(f"{key:32} {'s/s':>4} {len(values):>6} median {statistics.median(values):.3g}")


def costs() -> None:
    from multimeter import NvmlProbe

    start = time.perf_counter()
    probe = NvmlProbe()
    made = time.perf_counter() - start
    start = time.perf_counter()
    first = probe.read()
    first_read = time.perf_counter() - start
    print(
        f"NvmlProbe(): {made * 1e3:.1f} ms; first read() (opens NVML here): "
        f"{first_read * 1e3:.1f} ms, got {'a reading' if first else 'nothing'}"
    )
    local: Any = pickle.loads(pickle.dumps(probe.collector))
    start = time.perf_counter()
    local.open()
    print(f"collector open() (nvmlInit and handles): {(time.perf_counter() - start) * 1e3:.1f} ms")
    try:
        print(
            f"collect() in the reader: median {median_us(200, local.collect):.1f} us "
            f"({len(local.fields)} fields, {len(probe.devices)} GPU(s))"
        )
    finally:
        local.close()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # the reader's own readings, not the local first one
        reading = probe.read()
        if reading is not None and reading is not first:
            break
        time.sleep(0.05)
    print(f"read() in the measured process: median {median_us(20000, probe.read):.2f} us")
    values: dict[str, Any] = {}
    current = probe.read()
    print(
        f"derive() of one reading: median "
        f"{median_us(5000, lambda: probe.derive(values, current, None, 0.1)):.2f} us"
    )


def main() -> None:
    attempt("environment", environment)
    attempt("what NVML lists (processes per GPU)", nvml_processes)
    attempt(
        f"measurement: NvmlProbe + ResourceProbe, cycle 0.1 s, ~{WORKLOAD_S:.0f} s", measurement
    )
    attempt("costs", costs)


if __name__ == "__main__":
    main()
