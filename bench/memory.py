"""Memory per stored sample: column arrays against a dict per point.

Stores 100,000 samples of ResourceProbe's 26 values (real derived readings, varied
so no float object is shared) both ways and counts allocated bytes with tracemalloc.
Targets: at most 300 bytes per sample, at most 0.2x the dict-per-point baseline.
"""

from __future__ import annotations

import gc
import resource
import tracemalloc
from datetime import datetime, timedelta, timezone

from _common import finish, report

from multimeter.probe import ResourceProbe
from multimeter.result import Point, Result, ResultBuilder, datetime_to_us

SAMPLES = 100_000


def _sample_values(probe: ResourceProbe) -> list[dict[str, float]]:
    """Realistic value sets: derived from real readings, varied per sample."""
    first = probe.read()
    rows = []
    for n in range(SAMPLES):
        values: dict[str, float] = {}
        probe.derive(values, probe.read() if n % 1000 == 0 else first, first, 0.01 + n * 1e-9)
        rows.append({k: v + n * 1e-12 for k, v in values.items()})
    return rows


def _allocated(build) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return after - before


def main() -> None:
    probe = ResourceProbe()
    rows = _sample_values(probe)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    step = timedelta(milliseconds=10)

    def columns() -> Result:
        result = Result(probe, identifier="bench")
        builder = ResultBuilder.of(result)
        start = datetime_to_us(t0)
        for n, values in enumerate(rows):
            builder.add_values(start + n * 10_000, values)
        return result

    def dicts() -> list[Point]:
        # The baseline: what a naive implementation keeps, one Point with a fresh
        # dict of fresh float objects per sample.
        return [
            Point(t0 + n * step, {k: v + 0.0 for k, v in values.items()})
            for n, values in enumerate(rows)
        ]

    ours = _allocated(columns)
    baseline = _allocated(dicts)
    per_sample = ours / SAMPLES
    ratio = ours / baseline
    ok = report(
        "memory",
        {
            "samples": SAMPLES,
            "values_per_sample": len(rows[0]),
            "bytes_per_sample": round(per_sample, 1),
            "baseline_bytes_per_sample": round(baseline / SAMPLES, 1),
            "ratio_to_baseline": round(ratio, 3),
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        {"bytes_per_sample <= 300": per_sample <= 300, "ratio <= 0.2": ratio <= 0.2},
    )
    finish(ok)


if __name__ == "__main__":
    main()
