"""Sustained: 8 threads calling a measured function, results stored as JSON files.

Reports stored results per second (from the first call until flush() returns)
and the writer queue's highest length, against the bounded capacity.
Target: at least 5,000 results/s on this 2-core machine, queue bounded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

from _common import finish, report

import multimeter
from multimeter import _writer

THREADS = 8
CALLS = 2_500


def main() -> None:
    # Under the working tree, like the default ./multimeter-results/ (on this machine
    # file creation in /tmp is several times slower than in /work).
    os.makedirs("results", exist_ok=True)
    directory = tempfile.mkdtemp(prefix="throughput-", dir="results")
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
        writer = _writer.writer()
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
    stored = len([n for n in os.listdir(directory) if n.endswith(".json")]) - 1
    shutil.rmtree(directory)
    rate = stored / elapsed
    ok = report(
        "throughput",
        {
            "threads": THREADS,
            "results": stored,
            "seconds": round(elapsed, 2),
            "calls_seconds": round(calls_done - started, 2),
            "results_per_s": round(rate),
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
