"""Per-call overhead of @measured against OpenTelemetry, prometheus_client and wrapt.

All in the same run: the median duration of 100,000 single calls of an empty
function (each timed with perf_counter_ns), minus the same median for the bare
function:

- enabled: ResourceProbe, a storage that discards (results are still built and
  handed to it by the background writer);
- disabled (``enabled=False``) and not drawn (``MULTIMETER_SAMPLE_RATE=0``);
- baselines: OpenTelemetry SDK ``@tracer.start_as_current_span()``, prometheus_client
  ``@Histogram.time()``, and a bare wrapt passthrough decorator.

Targets: enabled <= 0.5x OpenTelemetry and <= 5x prometheus_client;
disabled and not drawn <= 1.5x wrapt passthrough.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import wrapt
from _common import finish, report

import multimeter
from multimeter.storages.base import Storage

CALLS = 20_000
REPEATS = 5


class Discard(Storage):
    """Takes every result and keeps none (unlike DummyStorage, results are built)."""

    def store(self, result) -> None:
        pass


def per_call(function: Callable[[], None]) -> float:
    """The median duration of single calls, in seconds (timer cost included)."""
    clock = time.perf_counter_ns
    durations = []
    for _ in range(REPEATS):
        for _ in range(CALLS):
            started = clock()
            function()
            durations.append(clock() - started)
    durations.sort()
    return durations[len(durations) // 2] / 1e9


def main() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry, Histogram

    def bare() -> None:
        pass

    @wrapt.decorator
    def passthrough(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    tracer = TracerProvider().get_tracer("bench")
    histogram = Histogram("bench_seconds", "bench", registry=CollectorRegistry())

    @passthrough
    def with_wrapt() -> None:
        pass

    @tracer.start_as_current_span("empty")
    def with_otel() -> None:
        pass

    @histogram.time()
    def with_prometheus() -> None:
        pass

    @multimeter.measured
    def with_multimeter() -> None:
        pass

    multimeter.configure(storage=Discard(), probes=[multimeter.ResourceProbe()])
    with_multimeter()
    base = per_call(bare)
    enabled = per_call(with_multimeter) - base
    multimeter.flush()
    otel = per_call(with_otel) - base
    prometheus = per_call(with_prometheus) - base
    wrapt_cost = per_call(with_wrapt) - base
    multimeter.configure(enabled=False)
    disabled = per_call(with_multimeter) - base
    os.environ["MULTIMETER_SAMPLE_RATE"] = "0"
    multimeter.configure(storage=Discard())
    not_drawn = per_call(with_multimeter) - base
    del os.environ["MULTIMETER_SAMPLE_RATE"]
    us = 1e6
    ok = report(
        "measured",
        {
            "bare_call_us": round(base * us, 3),
            "enabled_overhead_us": round(enabled * us, 2),
            "opentelemetry_overhead_us": round(otel * us, 2),
            "prometheus_overhead_us": round(prometheus * us, 2),
            "wrapt_passthrough_overhead_us": round(wrapt_cost * us, 3),
            "disabled_overhead_us": round(disabled * us, 3),
            "not_drawn_overhead_us": round(not_drawn * us, 3),
            "enabled_vs_opentelemetry": round(enabled / otel, 3),
            "enabled_vs_prometheus": round(enabled / prometheus, 3),
            "disabled_vs_wrapt": round(disabled / wrapt_cost, 3),
            "not_drawn_vs_wrapt": round(not_drawn / wrapt_cost, 3),
        },
        {
            "enabled <= 0.5x opentelemetry": enabled <= 0.5 * otel,
            "enabled <= 5x prometheus": enabled <= 5 * prometheus,
            "disabled <= 1.5x wrapt": disabled <= 1.5 * wrapt_cost,
            "not drawn <= 1.5x wrapt": not_drawn <= 1.5 * wrapt_cost,
        },
    )
    finish(ok)


if __name__ == "__main__":
    main()
