"""Sustained: 8 threads calling a measured function, results stored as JSON files.

Reports stored results per second (from the first call until flush() returns)
and the writer queue's highest length, against the bounded capacity. As a
baseline in the same run: one thread writing the same number of files of the
same size with a temporary file and a rename (this machine's disk is noisy).
Target: at least 5,000 results/s on this 2-core machine, queue bounded.

Also reported, for an honest per-call figure: one thread in a sustained loop of
measured calls into the same JSON files, wall time per call from the first call
until flush() returns (what a real program pays per call, disk included),
against the median overhead of a single call with a storage that discards
(bench/measured.py's figure).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time

from _common import finish, report

import multimeter
from multimeter import _process, _writer

THREADS = 8
CALLS = 2_500


def _raw_files_per_second(data: bytes, count: int, parent: str) -> float:
    """The baseline: one thread writing files of the same size, temporary file and rename."""
    directory = tempfile.mkdtemp(prefix="raw-", dir=parent)
    started = time.perf_counter()
    for n in range(count):
        temporary = os.path.join(directory, f".raw-{n}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(descriptor, data)
        os.close(descriptor)
        os.replace(temporary, os.path.join(directory, f"raw-{n}.json"))
    elapsed = time.perf_counter() - started
    shutil.rmtree(directory)
    return count / elapsed


def _sustained_loop_us(parent: str, calls: int = 20_000) -> float:
    """Wall microseconds per call of one thread's loop into JSON files, flush included."""
    directory = tempfile.mkdtemp(prefix="sustained-", dir=parent)
    multimeter.configure(storage=multimeter.FileStorage(directory, multimeter.JsonFormat()))

    @multimeter.measured
    def step(i: int) -> int:
        return i

    started = time.perf_counter()
    for i in range(calls):
        step(i)
    assert multimeter.flush(120)
    elapsed = time.perf_counter() - started
    shutil.rmtree(directory)
    return elapsed / calls * 1e6


def main() -> None:
    # Default: under the working tree, like ./multimeter-results/. `--dir /dev/shm`
    # takes the disk (noisy on this machine) out of the figure.
    parent = sys.argv[sys.argv.index("--dir") + 1] if "--dir" in sys.argv else "results"
    os.makedirs(parent, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="throughput-", dir=parent)
    multimeter.configure(storage=multimeter.FileStorage(directory, multimeter.JsonFormat()))

    @multimeter.measured(tags={"bench": "throughput"})
    def work(i: int) -> int:
        return i * i

    work(0)
    multimeter.flush()
    highest = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal highest
        writer = _process.current().writer
        while not stop.is_set():
            highest = max(highest, len(writer._queue))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=lambda: [work(i) for i in range(CALLS)]) for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls_done = time.perf_counter()
    assert multimeter.flush(120)
    elapsed = time.perf_counter() - started
    stop.set()
    watcher.join()
    names = [n for n in os.listdir(directory) if n.endswith(".json")]
    stored = len(names) - 1
    with open(os.path.join(directory, names[0]), "rb") as sample:
        data = sample.read()
    shutil.rmtree(directory)
    raw = _raw_files_per_second(data, THREADS * CALLS, parent)
    rate = stored / elapsed
    sustained_us = _sustained_loop_us(parent)
    ok = report(
        "throughput",
        {
            "directory": parent,
            "threads": THREADS,
            "results": stored,
            "seconds": round(elapsed, 2),
            "calls_seconds": round(calls_done - started, 2),
            "results_per_s": round(rate),
            "raw_files_per_s_same_size": round(raw),
            "ratio_to_raw_file_writes": round(rate / raw, 3),
            "sustained_one_thread_us_per_call": round(sustained_us, 1),
            "highest_queue_length": highest,
            "queue_capacity": _writer.CAPACITY,
        },
        {
            "all stored": stored == THREADS * CALLS,
            ">= 5000 results/s": rate >= 5000,
            "queue bounded": highest <= _writer.CAPACITY,
        },
    )
    finish(ok)


if __name__ == "__main__":
    main()
