"""Per-call cost of ``@measured`` with the OpenTelemetry span bridge on and off.

All in the same run, with OpenTelemetry imported and an SDK ``TracerProvider``
(spans recorded, no processor): the median duration of 20,000 single calls of
an empty function, minus the bare function's; 9 rounds that interleave the
variants, each ratio the median of the per-round ratios:

- no span: calls made outside any span; ``spans="attributes"`` (the bridge
  on: it looks for a recording span at each call) against ``spans="off"``;
- in a span: the calls made inside one recording span (the bridge adds each
  call's figures to the span's); on against off;
- a span per call (a traced handler calling one measured function):
  ``with tracer.start_as_current_span(): f()``, the cost of ``@measured`` in it
  (against the same span around the bare function) on against off; with the
  bridge on the span also gets the figures (one ``set_attributes()`` per span);
  and the whole traced handler (span and measured call) on against off;
- the span processor: a span with ``MultimeterSpanProcessor`` against the same
  span without it (its two readings and the attributes).

Targets: ``@measured`` with the bridge on <= 1.3x the same call with it off,
with no span and in a span.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from _common import Discard, finish, per_call, report

import multimeter

CALLS = 20_000
ROUNDS = 9


def main() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from multimeter.otel import MultimeterSpanProcessor

    tracer = TracerProvider().get_tracer("bench")
    with_processor = TracerProvider()
    with_processor.add_span_processor(MultimeterSpanProcessor())
    processed = with_processor.get_tracer("bench")

    def bare() -> None:
        pass

    @multimeter.measured
    def measured() -> None:
        pass

    def configured(spans: str) -> None:
        multimeter.reset()
        multimeter.configure(storage=Discard(), probes=["resource"], spans=spans)
        measured()
        multimeter.flush()

    def no_span(spans: str) -> Callable[[], float]:
        def measure() -> float:
            configured(spans)
            return per_call(measured, CALLS)

        return measure

    def in_span(spans: str) -> Callable[[], float]:
        def measure() -> float:
            configured(spans)
            with tracer.start_as_current_span("outer"):
                return per_call(measured, CALLS)

        return measure

    def handler(
        function: Callable[[], None], spans: str, traced: object = tracer
    ) -> Callable[[], float]:
        def call() -> None:
            with traced.start_as_current_span("handler"):  # type: ignore[attr-defined]
                function()

        def measure() -> float:
            configured(spans)
            return per_call(call, CALLS)

        return measure

    variants: dict[str, Callable[[], float]] = {
        "bare": lambda: per_call(bare, CALLS),
        "no_span_off": no_span("off"),
        "no_span_on": no_span("attributes"),
        "in_span_off": in_span("off"),
        "in_span_on": in_span("attributes"),
        "handler_bare": handler(bare, "off"),
        "handler_off": handler(measured, "off"),
        "handler_on": handler(measured, "attributes"),
        "span_with_processor": handler(bare, "off", processed),
    }
    rounds: list[dict[str, float]] = []
    for number in range(ROUNDS):
        names = list(variants)
        names = names[number % len(names) :] + names[: number % len(names)]  # no fixed order
        medians = {name: variants[name]() for name in names}
        base = medians["bare"]
        rounds.append(
            {
                "bare": base,
                "no_span_off": medians["no_span_off"] - base,
                "no_span_on": medians["no_span_on"] - base,
                "in_span_off": medians["in_span_off"] - base,
                "in_span_on": medians["in_span_on"] - base,
                "handler_off": medians["handler_off"] - medians["handler_bare"],
                "handler_on": medians["handler_on"] - medians["handler_bare"],
                "traced_off": medians["handler_off"] - base,
                "traced_on": medians["handler_on"] - base,
                "span": medians["handler_bare"] - base,
                "processor": medians["span_with_processor"] - medians["handler_bare"],
            }
        )

    def figure(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    def ratio(name: str, baseline: str) -> float:
        return statistics.median(r[name] / r[baseline] for r in rounds)

    us = 1e6
    no_span_ratio = ratio("no_span_on", "no_span_off")
    in_span_ratio = ratio("in_span_on", "in_span_off")
    ok = report(
        "otel_spans",
        {
            "bare_call_us": round(figure("bare") * us, 3),
            "no_span_off_us": round(figure("no_span_off") * us, 2),
            "no_span_on_us": round(figure("no_span_on") * us, 2),
            "no_span_on_vs_off": round(no_span_ratio, 3),
            "in_span_off_us": round(figure("in_span_off") * us, 2),
            "in_span_on_us": round(figure("in_span_on") * us, 2),
            "in_span_on_vs_off": round(in_span_ratio, 3),
            "span_per_call_measured_off_us": round(figure("handler_off") * us, 2),
            "span_per_call_measured_on_us": round(figure("handler_on") * us, 2),
            "span_per_call_on_vs_off": round(ratio("handler_on", "handler_off"), 3),
            "traced_handler_off_us": round(figure("traced_off") * us, 2),
            "traced_handler_on_us": round(figure("traced_on") * us, 2),
            "traced_handler_on_vs_off": round(ratio("traced_on", "traced_off"), 3),
            "sdk_span_us": round(figure("span") * us, 2),
            "span_processor_us": round(figure("processor") * us, 2),
            "span_processor_vs_span": round(ratio("processor", "span"), 3),
            "rounds": ROUNDS,
        },
        {
            "bridge on, no span <= 1.3x off": no_span_ratio <= 1.3,
            "bridge on, in a span <= 1.3x off": in_span_ratio <= 1.3,
        },
    )
    finish(ok)


if __name__ == "__main__":
    main()
