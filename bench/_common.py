"""Helpers shared by the benchmarks: medians and a uniform report line."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable


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
