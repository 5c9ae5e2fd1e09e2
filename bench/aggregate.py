"""Aggregate mode against one result per call: bytes on disk per 100,000 calls.

One thread calls a measured function (ResourceProbe, one-second cycle, JSON files)
100,000 times with ``calls="aggregate"``, and, as the baseline in the same run,
``CALLS_EACH`` times with ``calls="each"``; each from the first call until
``flush()`` returns. Each-mode writes one file per call, so its bytes per 100,000
calls are its bytes per call times 100,000 (the full figure would take minutes of
disk writes here). Reported: apparent bytes (file sizes) and allocated bytes
(blocks: a small file takes at least one block), files, wall time per call.
Target: aggregate mode stores at most 1 % of each-mode's bytes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from _common import finish, report

import multimeter

CALLS_AGGREGATE = 100_000
CALLS_EACH = 10_000
PER = 100_000


def _run(parent: str, calls_mode: str, calls: int) -> dict[str, float]:
    """Make ``calls`` measured calls in ``calls_mode``; what reached the disk."""
    directory = tempfile.mkdtemp(prefix=f"aggregate-{calls_mode}-", dir=parent)
    multimeter.configure(
        storage=multimeter.FileStorage(directory, multimeter.JsonFormat()),
        cycle_time=1.0,
        calls=calls_mode,
    )

    @multimeter.measured
    def step(i: int) -> int:
        return i

    started = time.perf_counter()
    for i in range(calls):
        step(i)
    assert multimeter.flush(600)
    elapsed = time.perf_counter() - started
    files = [os.path.join(directory, name) for name in os.listdir(directory)]
    stats = [os.stat(path) for path in files]
    shutil.rmtree(directory)
    return {
        "files": len(files),
        "bytes": sum(s.st_size for s in stats),
        "allocated": sum(s.st_blocks * 512 for s in stats),
        "us_per_call": elapsed / calls * 1e6,
    }


def main() -> None:
    parent = sys.argv[sys.argv.index("--dir") + 1] if "--dir" in sys.argv else "results"
    os.makedirs(parent, exist_ok=True)
    aggregate = _run(parent, "aggregate", CALLS_AGGREGATE)
    each = _run(parent, "each", CALLS_EACH)
    scale_a, scale_e = PER / CALLS_AGGREGATE, PER / CALLS_EACH
    bytes_a, bytes_e = aggregate["bytes"] * scale_a, each["bytes"] * scale_e
    allocated_a, allocated_e = aggregate["allocated"] * scale_a, each["allocated"] * scale_e
    ok = report(
        "aggregate",
        {
            "directory": parent,
            "aggregate_calls": CALLS_AGGREGATE,
            "aggregate_files": int(aggregate["files"]),
            "aggregate_bytes_per_100k_calls": round(bytes_a),
            "aggregate_allocated_bytes_per_100k_calls": round(allocated_a),
            "aggregate_us_per_call": round(aggregate["us_per_call"], 1),
            "each_calls": CALLS_EACH,
            "each_files": int(each["files"]),
            "each_bytes_per_100k_calls": round(bytes_e),
            "each_allocated_bytes_per_100k_calls": round(allocated_e),
            "each_us_per_call": round(each["us_per_call"], 1),
            "bytes_ratio": round(bytes_a / bytes_e, 6),
        },
        {"<= 1 % of each-mode's bytes": bytes_a <= 0.01 * bytes_e},
    )
    finish(ok)


if __name__ == "__main__":
    main()
