"""Delivery to a real VictoriaMetrics: the batched @measured path against one
synchronous influxdb-client write per result, in the same run.

Starts Debian's victoria-metrics on a free loopback port (needs the package).
Ours: a function under @measured with MULTIMETER_STORAGE=influxdb, 8 threads, from the
first call until flush() returns. Baseline: for each of the same kind of results,
influxdb_client.Point objects built and written with the synchronous write API, one
request per result (what the earlier implementation did).
Target: at least 5x the baseline's results per second.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import finish, report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import multimeter
from tests.servers import VictoriaMetrics

THREADS = 8
CALLS = 1_000
BASELINE_RESULTS = 1_000


def main() -> None:
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    if VictoriaMetrics.binary is None:
        print("victoria-metrics is not installed: apt-get install victoria-metrics")
        sys.exit(2)
    server = VictoriaMetrics(Path(tempfile.mkdtemp(prefix="bench-vm-")))
    server.start()
    try:
        os.environ.update(
            {
                "MULTIMETER_STORAGE": "influxdb",
                "MULTIMETER_INFLUXDB_URL": server.url,
                "MULTIMETER_INFLUXDB_TOKEN": "bench",
                "MULTIMETER_SPOOL_DIR": tempfile.mkdtemp(prefix="bench-spool-"),
            }
        )
        multimeter.configure()

        @multimeter.measured(name="bench_delivery")
        def work(i: int) -> int:
            return i

        started = time.perf_counter()
        threads = [
            threading.Thread(target=lambda: [work(i) for i in range(CALLS)]) for _ in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert multimeter.flush(120)
        ours = THREADS * CALLS / (time.perf_counter() - started)
        # One series per lane (the calls in flight at once): count them all.
        stored = sum(
            len(series["values"]) for series in server.export("bench_delivery_process.cpu_user")
        )

        # The baseline, with results of the same shape (built here, not timed).
        multimeter.configure(storage=multimeter.DummyStorage())
        meter = multimeter.Multimeter(multimeter.ResourceProbe())
        results = []
        for n in range(BASELINE_RESULTS):
            with meter.measure(f"baseline-{n}") as result:
                pass
            results.append(result)
        client = InfluxDBClient(url=server.url, token="bench", org="kantai")
        write_api = client.write_api(write_options=SYNCHRONOUS)
        started = time.perf_counter()
        for result in results:
            points = [
                Point("bench_baseline").time(point.datetime, WritePrecision.NS)
                for point in result.points
            ]
            for influx_point, point in zip(points, result.points, strict=True):
                influx_point.tag("call", result.identifier)
                for key, value in point.values.items():
                    influx_point.field(key, value)
            write_api.write(bucket="multimeter", record=points)
        baseline = BASELINE_RESULTS / (time.perf_counter() - started)
        client.close()
    finally:
        server.stop()
    ratio = ours / baseline
    ok = report(
        "influx_delivery",
        {
            "results": THREADS * CALLS,
            "stored_points_found": stored,
            "batched_results_per_s": round(ours),
            "sync_write_per_result_per_s": round(baseline),
            "ratio": round(ratio, 2),
        },
        {"all stored": stored == THREADS * CALLS, "ratio >= 5": ratio >= 5},
    )
    finish(ok)


if __name__ == "__main__":
    main()
