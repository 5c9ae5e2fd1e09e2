"""What TracemallocProbe and GCProbe cost an allocation-heavy loop.

The loop runs 50,000 iterations, each building a dict, a list, a tuple and two
strings (some 250,000 small objects per run, dropped in batches of 1,000), every
tenth one also a reference cycle, so the young generation of the garbage
collector collects all along. Each round times it, in this order: plain (no
probe, tracemalloc off); inside a measurement with ``GCProbe`` at a 10 ms cycle;
with tracemalloc tracing and no probe; inside a measurement with
``TracemallocProbe`` at a 10 ms cycle (tracing started by the probe's first
reading). Tracing is stopped after each traced run. 9 rounds interleave the
variants; each ratio is the median of the per-round ratios within a round. Also:
one ``read()`` of each probe, the best of 3 times 200,000 reads (tracing on for
TracemallocProbe).

Nearly all of TracemallocProbe's cost is tracemalloc's own (every allocation of
the process is traced); the probe itself reads every cycle. Targets: the probe <=
1.1x tracing alone; GCProbe <= 1.15x the plain loop; a TracemallocProbe read <= 5 us
and a GCProbe read <= 1 us. Tracing against the plain loop is reported, with no
target (it is CPython's figure, not ours).
"""

from __future__ import annotations

import gc
import statistics
import time
import timeit
import tracemalloc
from typing import Any

from _common import finish, report

from multimeter import GCProbe, Multimeter, TracemallocProbe

ITERATIONS = 50_000
ROUNDS = 9
CYCLE = 0.01


def _workload() -> None:
    """Allocate and drop small objects; every tenth a two-object reference cycle."""
    kept: list[Any] = []
    for i in range(ITERATIONS):
        record = {"id": i, "name": f"item-{i}", "tags": [i, i + 1]}
        kept.append((record, str(i)))
        if i % 10 == 0:
            a: list[Any] = [record]
            a.append([a])
        if len(kept) > 1000:
            kept.clear()


def _timed(run: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _measured(probe: Any) -> Any:
    meter = Multimeter(probe, cycle_time=CYCLE)

    def run() -> None:
        with meter.measure():
            _workload()

    return run


def _read_us(probe: Any) -> float:
    probe.read()
    return min(timeit.repeat(probe.read, number=200_000, repeat=3)) / 200_000 * 1e6


def main() -> None:
    tracemalloc.stop()
    with_gc = _measured(GCProbe())
    with_tracemalloc = _measured(TracemallocProbe())
    plain_s, gc_s, tracing_s, tm_s = [], [], [], []
    gc_ratios, tracing_ratios, tm_ratios, probe_ratios = [], [], [], []
    _workload()  # warm up
    for _ in range(ROUNDS):
        plain = _timed(_workload)
        on_gc = _timed(with_gc)
        tracemalloc.start()
        tracing = _timed(_workload)
        tracemalloc.stop()
        on_tm = _timed(with_tracemalloc)
        tracemalloc.stop()
        plain_s.append(plain)
        gc_s.append(on_gc)
        tracing_s.append(tracing)
        tm_s.append(on_tm)
        gc_ratios.append(on_gc / plain)
        tracing_ratios.append(tracing / plain)
        tm_ratios.append(on_tm / plain)
        probe_ratios.append(on_tm / tracing)
    gc_read = _read_us(GCProbe())
    tm_read = _read_us(TracemallocProbe())
    tracemalloc.stop()
    probe_ratio = statistics.median(probe_ratios)
    gc_ratio = statistics.median(gc_ratios)
    ok = report(
        "tracemalloc_overhead",
        {
            "iterations_per_run": ITERATIONS,
            "plain_ms": round(statistics.median(plain_s) * 1000, 1),
            "gc_probe_ms": round(statistics.median(gc_s) * 1000, 1),
            "tracing_only_ms": round(statistics.median(tracing_s) * 1000, 1),
            "tracemalloc_probe_ms": round(statistics.median(tm_s) * 1000, 1),
            "gc_probe_ratio": round(gc_ratio, 3),
            "tracing_only_ratio": round(statistics.median(tracing_ratios), 2),
            "tracemalloc_probe_ratio": round(statistics.median(tm_ratios), 2),
            "tracemalloc_probe_vs_tracing_only": round(probe_ratio, 3),
            "gc_read_us": round(gc_read, 3),
            "tracemalloc_read_us": round(tm_read, 3),
        },
        {
            "tracemalloc probe <= 1.1x tracing alone": probe_ratio <= 1.1,
            "gc ratio <= 1.15": gc_ratio <= 1.15,
            "tracemalloc read <= 5 us": tm_read <= 5,
            "gc read <= 1 us": gc_read <= 1,
        },
    )
    finish(ok)


if __name__ == "__main__":
    main()
