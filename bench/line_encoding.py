"""LineFormat encoding speed against influxdb_client.Point.to_line_protocol().

Encodes the same 100,000 points of ResourceProbe's 26 values (with two tags)
both ways, in the same run. Target: LineFormat at least 2.5x faster.
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone

from _common import finish, median_of, report

from multimeter.probe import ResourceProbe
from multimeter.result import Result, ResultBuilder, datetime_to_us
from multimeter.storages.file import LineFormat

POINTS = 100_000


def _result() -> Result:
    probe = ResourceProbe()
    first = probe.read()
    result = Result(probe, identifier="etl-run", tags={"stage": "etl", "host": "box-1"})
    builder = ResultBuilder.of(result)
    start = datetime_to_us(datetime(2026, 1, 1, tzinfo=timezone.utc))
    for n in range(POINTS):
        values: dict[str, float] = {}
        probe.derive(values, probe.read() if n % 5000 == 0 else first, first, 0.01)
        builder.add_values(start + n * 10_000, {k: v + n * 1e-6 for k, v in values.items()})
    return result


def main() -> None:
    from influxdb_client import Point, WritePrecision

    result = _result()
    rows = [(p.datetime, p.values) for p in result.points]  # prepared outside the timing

    def ours() -> float:
        started = time.perf_counter()
        stream = io.BytesIO()
        LineFormat().save_result_to_stream(result, stream)
        return time.perf_counter() - started

    def baseline() -> float:
        started = time.perf_counter()
        lines = []
        for moment, values in rows:
            point = Point(result.identifier).time(moment, WritePrecision.NS)
            for key, value in result.tags.items():
                point.tag(key, value)
            for key, value in values.items():
                point.field(key, value)
            lines.append(point.to_line_protocol())
        "\n".join(lines).encode()
        return time.perf_counter() - started

    ours_s = median_of(3, ours)
    baseline_s = median_of(3, baseline)
    speedup = baseline_s / ours_s
    ok = report(
        "line_encoding",
        {
            "points": POINTS,
            "fields_per_point": 26,
            "lineformat_points_per_s": round(POINTS / ours_s),
            "influxdb_client_points_per_s": round(POINTS / baseline_s),
            "speedup": round(speedup, 2),
        },
        {"speedup >= 2.5": speedup >= 2.5},
    )
    finish(ok)


if __name__ == "__main__":
    main()
