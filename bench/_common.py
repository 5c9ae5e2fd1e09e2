"""Helpers shared by the benchmarks: medians and a uniform report line."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

from multimeter.storages.base import Storage


def median_of(runs: int, measure: Callable[[], float]) -> float:
    """The median of ``runs`` calls of ``measure``."""
    return statistics.median(measure() for _ in range(runs))


def report(name: str, figures: dict[str, float | int | str], checks: dict[str, bool]) -> bool:
    """Print one JSON line with the figures and whether each target was met."""
    ok = all(checks.values())
    print(json.dumps({"benchmark": name, **figures, "targets": checks, "ok": ok}), flush=True)
    return ok


def finish(ok: bool) -> None:
    """Exit non-zero when a target was missed."""
    sys.exit(0 if ok else 1)


class Discard(Storage):
    """Takes every result and keeps none (unlike DummyStorage, results are built)."""

    def store(self, result) -> None:
        pass


def per_call(function: Callable[[], None], calls: int, repeats: int = 1) -> float:
    """The median duration of ``calls`` single calls (``repeats`` times over), in
    seconds, the timer's own cost included."""
    clock = time.perf_counter_ns
    durations = []
    for _ in range(repeats):
        for _ in range(calls):
            started = clock()
            function()
            durations.append(clock() - started)
    durations.sort()
    return durations[len(durations) // 2] / 1e9
