"""Per-call overhead of @measured against OpenTelemetry, prometheus_client and wrapt.

All in the same run: the median duration of 20,000 single calls of an empty
function (each timed with perf_counter_ns), minus the same median for the bare
function; 9 rounds that interleave the variants, figures are medians over rounds:

- enabled: ResourceProbe, a storage that discards (results are still built and
  handed to it by the background writer);
- enabled, batch files: ResourceProbe and the default storage (JSON Lines batch
  files in a temporary directory): the call packed for the writer (see
  ``multimeter._packed``);
- disabled (``enabled=False``) and not drawn (``MULTIMETER_SAMPLE_RATE=0``);
- baselines: OpenTelemetry SDK ``@tracer.start_as_current_span()``, prometheus_client
  ``@Histogram.time()``, and a bare wrapt passthrough decorator.

- nested: a chain of 10 measured functions, each calling the next (real code
  is nested: every call has enclosing calls); its cost per call, against the
  same chain of plain functions, is compared with a flat call's.
- probe sets: the enabled call with more probes (``resource`` plus ``psutil``,
  ``system`` and ``gc``), each against ``resource`` alone in the same round: the
  background probes are read at once (one look at the reader's counter of slot
  writes), so the cost must not grow with them. Small differences on a busy
  machine: 31 shorter rounds of 3,000 calls per probe set.
- tracemalloc, in a process of its own (tracing, once on, slows every later
  allocation): ``resource+tracemalloc`` against ``resource`` with tracing on.

Targets: enabled <= 0.5x OpenTelemetry and <= 5x prometheus_client;
disabled and not drawn <= 1.5x wrapt passthrough; a nested call <= 1.3x a flat one;
``resource+psutil+system+gc`` <= 1.1x ``resource``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import wrapt
from _common import Discard, finish, per_call, report

import multimeter
from multimeter.storages.jsonl import JsonLinesStorage

CALLS = 20_000
REPEATS = 1
ROUNDS = 9
DEPTH = 10
#: Probe sets measured against ``resource`` alone (the enabled call) in each round.
PROBE_SETS = {
    "psutil": ["resource", "psutil"],
    "psutil_system": ["resource", "psutil", "system"],
    "psutil_system_gc": ["resource", "psutil", "system", "gc"],
}
#: Seconds for the reader process to start and make its first two collections.
READER_WARM_UP = 3.0
PROBE_ROUNDS = 31
PROBE_CALLS = 3_000


def chain(depth: int, decorate: Callable[[Callable[[], None]], Callable[[], None]]):
    """``depth`` functions, each (decorated) calling the next; returns the outermost."""

    def leaf() -> None:
        pass

    function = decorate(leaf)
    for _ in range(depth - 1):

        def step(inner: Callable[[], None] = function) -> None:
            inner()

        function = decorate(step)
    return function


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

    nested_bare = chain(DEPTH, lambda f: f)
    nested_measured = chain(DEPTH, multimeter.measured)

    enabled_config = {"storage": Discard(), "probes": [multimeter.ResourceProbe()]}
    multimeter.configure(**enabled_config)
    with_multimeter()
    multimeter.flush()

    # configure() changes only what it is given: each variant starts afresh (reset()).
    def measure_enabled() -> float:
        multimeter.reset()
        multimeter.configure(**enabled_config)
        cost = per_call(with_multimeter, CALLS, REPEATS)
        multimeter.flush()
        return cost

    batch_directory = tempfile.mkdtemp(prefix="measured-batch-")
    batch_config = {
        "storage": JsonLinesStorage(batch_directory),
        "probes": [multimeter.ResourceProbe()],
    }

    def measure_enabled_batch() -> float:
        multimeter.reset()
        multimeter.configure(**batch_config)
        cost = per_call(with_multimeter, CALLS, REPEATS)
        multimeter.flush()
        return cost

    def measure_nested() -> float:
        multimeter.reset()
        multimeter.configure(**enabled_config)
        cost = per_call(nested_measured, CALLS, REPEATS) - per_call(nested_bare, CALLS, REPEATS)
        multimeter.flush()
        return cost / DEPTH + medians_bare[-1]  # per call; "bare" is subtracted below

    def measure_disabled() -> float:
        multimeter.reset()
        multimeter.configure(enabled=False)
        return per_call(with_multimeter, CALLS, REPEATS)

    def measure_not_drawn() -> float:
        os.environ["MULTIMETER_SAMPLE_RATE"] = "0"
        multimeter.reset()
        multimeter.configure(storage=Discard())
        del os.environ["MULTIMETER_SAMPLE_RATE"]
        return per_call(with_multimeter, CALLS, REPEATS)

    medians_bare: list[float] = []

    def measure_bare() -> float:
        medians_bare.append(per_call(bare, CALLS, REPEATS))
        return medians_bare[-1]

    variants: dict[str, Callable[[], float]] = {
        "bare": measure_bare,
        "nested": measure_nested,
        "enabled": measure_enabled,
        "enabled_batch": measure_enabled_batch,
        "otel": lambda: per_call(with_otel, CALLS, REPEATS),
        "prometheus": lambda: per_call(with_prometheus, CALLS, REPEATS),
        "wrapt": lambda: per_call(with_wrapt, CALLS, REPEATS),
        "disabled": measure_disabled,
        "not_drawn": measure_not_drawn,
    }
    # Rounds interleave the variants so that the machine's drifts hit them alike;
    # each figure is the median over rounds, each ratio the median of per-round ratios.
    rounds: list[dict[str, float]] = []
    for _ in range(ROUNDS):
        medians = {name: measure() for name, measure in variants.items()}
        rounds.append(
            {
                name: value if name == "bare" else value - medians["bare"]
                for name, value in medians.items()
            }
        )

    def figure(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    def ratio(name: str, baseline: str) -> float:
        return statistics.median(r[name] / r[baseline] for r in rounds)

    base = statistics.median(r["bare"] for r in rounds)
    enabled, otel, prometheus = figure("enabled"), figure("otel"), figure("prometheus")
    wrapt_cost, disabled, not_drawn = figure("wrapt"), figure("disabled"), figure("not_drawn")
    enabled_vs_otel = ratio("enabled", "otel")
    batch_vs_otel = ratio("enabled_batch", "otel")
    shutil.rmtree(batch_directory, ignore_errors=True)
    enabled_vs_prometheus = ratio("enabled", "prometheus")
    disabled_vs_wrapt = ratio("disabled", "wrapt")
    not_drawn_vs_wrapt = ratio("not_drawn", "wrapt")
    nested, nested_vs_flat = figure("nested"), ratio("nested", "enabled")
    us = 1e6
    probe_sets = probe_set_costs(bare, with_multimeter)
    traced = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--tracemalloc"], capture_output=True, text=True, check=True
        ).stdout
    )
    ok = report(
        "measured",
        {
            "bare_call_us": round(base * us, 3),
            "enabled_overhead_us": round(enabled * us, 2),
            "enabled_batch_files_overhead_us": round(figure("enabled_batch") * us, 2),
            "enabled_batch_files_vs_opentelemetry": round(batch_vs_otel, 3),
            "opentelemetry_overhead_us": round(otel * us, 2),
            "prometheus_overhead_us": round(prometheus * us, 2),
            "wrapt_passthrough_overhead_us": round(wrapt_cost * us, 3),
            "disabled_overhead_us": round(disabled * us, 3),
            "not_drawn_overhead_us": round(not_drawn * us, 3),
            "nested_overhead_us": round(nested * us, 2),
            "nested_vs_flat": round(nested_vs_flat, 3),
            "enabled_vs_opentelemetry": round(enabled_vs_otel, 3),
            "enabled_vs_prometheus": round(enabled_vs_prometheus, 3),
            "disabled_vs_wrapt": round(disabled_vs_wrapt, 3),
            "not_drawn_vs_wrapt": round(not_drawn_vs_wrapt, 3),
            **probe_sets,
            **traced,
            "rounds": ROUNDS,
        },
        {
            "enabled <= 0.5x opentelemetry": enabled_vs_otel <= 0.5,
            "enabled, default batch files <= 0.5x opentelemetry": batch_vs_otel <= 0.5,
            "enabled <= 5x prometheus": enabled_vs_prometheus <= 5,
            "disabled <= 1.5x wrapt": disabled_vs_wrapt <= 1.5,
            "not drawn <= 1.5x wrapt": not_drawn_vs_wrapt <= 1.5,
            "nested <= 1.3x flat": nested_vs_flat <= 1.3,
            "resource+psutil+system+gc <= 1.1x resource": (
                probe_sets["psutil_system_gc_vs_resource"] <= 1.1
            ),
        },
    )
    finish(ok)


def probe_set_costs(
    bare: Callable[[], None], with_multimeter: Callable[[], None]
) -> dict[str, float]:
    """The enabled call with each of :data:`PROBE_SETS` against ``resource`` alone."""
    sets = {"resource": ["resource"], **PROBE_SETS}
    multimeter.reset()
    multimeter.configure(storage=Discard(), probes=PROBE_SETS["psutil_system_gc"])
    with_multimeter()  # starts the reader process
    time.sleep(READER_WARM_UP)
    rounds = []
    for number in range(PROBE_ROUNDS):
        base = per_call(bare, PROBE_CALLS)
        costs = {}
        names = list(sets)
        names = names[number % len(names) :] + names[: number % len(names)]  # no fixed order
        for name in names:
            multimeter.reset()
            multimeter.configure(storage=Discard(), probes=sets[name])
            with_multimeter()
            costs[name] = per_call(with_multimeter, PROBE_CALLS) - base
            multimeter.flush()
        rounds.append(costs)
    us = 1e6
    out = {"resource_overhead_us": round(statistics.median(r["resource"] for r in rounds) * us, 2)}
    for name in PROBE_SETS:
        out[f"{name}_overhead_us"] = round(statistics.median(r[name] for r in rounds) * us, 2)
        out[f"{name}_vs_resource"] = round(
            statistics.median(r[name] / r["resource"] for r in rounds), 3
        )
    return out


def tracemalloc_costs() -> dict[str, float]:
    """``resource+tracemalloc`` against ``resource``, both with tracing on."""
    import tracemalloc

    tracemalloc.start()

    def bare() -> None:
        pass

    @multimeter.measured
    def with_multimeter() -> None:
        pass

    sets = {"resource": ["resource"], "tracemalloc": ["resource", "tracemalloc"]}
    rounds = []
    for _ in range(PROBE_ROUNDS):
        base = per_call(bare, PROBE_CALLS)
        costs = {}
        for name, probes in sets.items():
            multimeter.reset()
            multimeter.configure(storage=Discard(), probes=probes)
            with_multimeter()
            costs[name] = per_call(with_multimeter, PROBE_CALLS) - base
            multimeter.flush()
        rounds.append(costs)
    us = 1e6
    return {
        "traced_resource_overhead_us": round(
            statistics.median(r["resource"] for r in rounds) * us, 2
        ),
        "traced_tracemalloc_overhead_us": round(
            statistics.median(r["tracemalloc"] for r in rounds) * us, 2
        ),
        "traced_tracemalloc_vs_resource": round(
            statistics.median(r["tracemalloc"] / r["resource"] for r in rounds), 3
        ),
    }


if __name__ == "__main__":
    if "--tracemalloc" in sys.argv:
        print(json.dumps(tracemalloc_costs()))
    else:
        main()
