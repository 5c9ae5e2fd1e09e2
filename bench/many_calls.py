"""Many short measured calls: bytes on disk per call, and sustained calls per second.

(a) Bytes per short call (the ``resource`` probe's 26 values, two marks, tags):
the default storage (JSON Lines batch files) against ``FileStorage`` +
``JsonFormat`` (one file per call), both as the files' sizes and as the disk
blocks they take. Target: at most 300 bytes per call.

(c) Memory per call waiting for the writer (tracemalloc, the writer held): against
two bare ``getrusage()`` readings kept per call. Target: at most 300 bytes.

(b) Sustained calls per second, one thread, a tight loop of a trivial
``@measured`` function, from the first call until ``flush()`` returns: into the
default storage (``MULTIMETER_STORAGE=file``), against the same loop with
storage ``none`` (the caller's own cost, nothing stored) and with one file per
call. Target: at least 50,000 calls/s into the default storage. The CPU time per
call is split into the calling thread's and the rest (the writer thread, which
makes the records and encodes and writes them, and the sampler), since the
writer shares the GIL with the caller; the writer's CPU time inside
``JsonLinesStorage.store_calls`` (encoding and writing) is counted apart.

    python bench/many_calls.py [--dir /dev/shm]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from _common import finish, report

import multimeter
from multimeter import _config, _env
from multimeter.storages.jsonl import JsonLinesStorage

CALLS = 50_000
FILE_CALLS = 5_000  # one file per call is slow: fewer calls, per-call figures alike
RUNS = 3


def _configure(kind: str, directory: str) -> None:
    """The global configuration from the environment, as a user program gets it."""
    environ = {_env.DIR: directory}
    if kind == "none":
        environ[_env.STORAGE] = "none"
    elif kind == "json":
        environ[_env.FORMAT] = "json"
    _config.reset()
    for name in (_env.STORAGE, _env.FORMAT, _env.DIR):
        os.environ.pop(name, None)
    os.environ.update(environ)
    multimeter.configure()


def _loop(calls: int) -> tuple[float, float, float]:
    """(wall seconds, calling thread's CPU seconds, process CPU seconds) of ``calls``
    calls and the flush after them."""

    @multimeter.measured(tags={"bench": "many_calls"})
    def step(i: int) -> int:
        return i

    step(-1)  # first call: configuration, meta data, writer thread
    assert multimeter.flush(60)
    wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
    for i in range(calls):
        step(i)
    assert multimeter.flush(300)
    return (
        time.perf_counter() - wall,
        time.thread_time() - thread,
        time.process_time() - process,
    )


class _StoreCallsClock:
    """Counts the CPU time of the thread that runs ``JsonLinesStorage.store_calls``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = JsonLinesStorage.store_calls

    def __enter__(self) -> _StoreCallsClock:
        original, clock = self._original, self

        def store_calls(storage: JsonLinesStorage, records: Any) -> None:
            started = time.thread_time()
            try:
                original(storage, records)
            finally:
                clock.seconds += time.thread_time() - started

        JsonLinesStorage.store_calls = store_calls  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: object) -> None:
        JsonLinesStorage.store_calls = self._original  # type: ignore[method-assign]


def _disk_bytes(directory: str) -> tuple[int, int]:
    """(sum of file sizes, bytes of disk blocks taken) of the files under ``directory``."""
    size = blocks = 0
    for root, _, names in os.walk(directory):
        for name in names:
            status = os.stat(os.path.join(root, name))
            size += status.st_size
            blocks += status.st_blocks * 512
    return size, blocks


def _run(kind: str, parent: str, calls: int) -> dict[str, float]:
    """One loop into a fresh directory: its rate, CPU split and bytes per call."""
    directory = tempfile.mkdtemp(prefix=f"many-{kind}-", dir=parent)
    try:
        _configure(kind, directory)
        with _StoreCallsClock() as store_calls:
            wall, thread, process = _loop(calls)
        stored = calls + 1
        size, blocks = _disk_bytes(directory)
        if kind != "none":
            assert stored == sum(1 for _ in multimeter.load_results(directory))
    finally:
        shutil.rmtree(directory)
    return {
        "calls_per_s": calls / wall,
        "caller_cpu_us": thread / calls * 1e6,
        "other_cpu_us": (process - thread) / calls * 1e6,
        "store_calls_cpu_us": store_calls.seconds / calls * 1e6,
        "bytes_per_call": size / stored,
        "disk_bytes_per_call": blocks / stored,
    }


def _median_run(kind: str, parent: str, calls: int) -> dict[str, float]:
    """The median of each figure over ``RUNS`` runs."""
    runs = [_run(kind, parent, calls) for _ in range(RUNS)]
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


PENDING_CALLS = 5_000


def pending_bytes_per_call() -> tuple[float, float]:
    """(bytes of memory per call waiting for the writer, and the same for a baseline
    that keeps each call's start and end ``getrusage()`` readings in a list): the
    writer is held in its first store while ``PENDING_CALLS`` more calls queue up,
    allocations traced with tracemalloc."""
    import gc
    import resource
    import threading
    import tracemalloc

    from multimeter.calls import CallStorage

    gate = threading.Event()

    class Held(CallStorage):
        def store_calls(self, records: Any) -> None:
            gate.wait()

        def store(self, result: Any) -> None:
            gate.wait()

    _config.reset()
    multimeter.configure(storage=Held())

    @multimeter.measured
    def short(x: int) -> int:
        return x

    short(0)
    time.sleep(0.3)  # the writer holds the first call and waits
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(PENDING_CALLS):
        short(i)
    gc.collect()
    measured = (tracemalloc.get_traced_memory()[0] - before) / PENDING_CALLS
    kept: list[Any] = []
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(PENDING_CALLS):
        start = resource.getrusage(resource.RUSAGE_SELF)
        kept.append((start, resource.getrusage(resource.RUSAGE_SELF)))
    baseline = (tracemalloc.get_traced_memory()[0] - before) / PENDING_CALLS
    tracemalloc.stop()
    gate.set()
    multimeter.flush(30)
    _config.reset()
    return measured, baseline


def main() -> None:
    # Default: under the working tree, like ./multimeter-results/. `--dir /dev/shm`
    # takes the disk (noisy on this machine) out of the figure.
    parent = sys.argv[sys.argv.index("--dir") + 1] if "--dir" in sys.argv else "results"
    os.makedirs(parent, exist_ok=True)
    batch = _median_run("jsonl", parent, CALLS)
    none = _median_run("none", parent, CALLS)
    files = _median_run("json", parent, FILE_CALLS)
    pending, readings_only = pending_bytes_per_call()
    ok = report(
        "many_calls",
        {
            "directory": parent,
            "calls": CALLS,
            "batch_bytes_per_call": round(batch["bytes_per_call"], 1),
            "batch_disk_bytes_per_call": round(batch["disk_bytes_per_call"], 1),
            "json_file_bytes_per_call": round(files["bytes_per_call"], 1),
            "json_file_disk_bytes_per_call": round(files["disk_bytes_per_call"], 1),
            "ratio_bytes_batch_to_json_files": round(
                batch["disk_bytes_per_call"] / files["disk_bytes_per_call"], 4
            ),
            "batch_calls_per_s": round(batch["calls_per_s"]),
            "none_calls_per_s": round(none["calls_per_s"]),
            "json_file_calls_per_s": round(files["calls_per_s"]),
            "ratio_batch_to_none": round(batch["calls_per_s"] / none["calls_per_s"], 3),
            "ratio_batch_to_json_files": round(batch["calls_per_s"] / files["calls_per_s"], 2),
            "batch_caller_cpu_us_per_call": round(batch["caller_cpu_us"], 2),
            "batch_writer_cpu_us_per_call": round(batch["other_cpu_us"], 2),
            "batch_store_calls_cpu_us_per_call": round(batch["store_calls_cpu_us"], 2),
            "none_caller_cpu_us_per_call": round(none["caller_cpu_us"], 2),
            "none_other_cpu_us_per_call": round(none["other_cpu_us"], 2),
            "pending_bytes_per_call": round(pending, 1),
            "two_bare_readings_bytes": round(readings_only, 1),
            "ratio_pending_to_two_bare_readings": round(pending / readings_only, 2),
        },
        {
            "<= 300 bytes per call": max(batch["bytes_per_call"], batch["disk_bytes_per_call"])
            <= 300,
            ">= 50000 calls/s": batch["calls_per_s"] >= 50_000,
            "<= 300 bytes pending per call": pending <= 300,
        },
    )
    finish(ok)


if __name__ == "__main__":
    main()
