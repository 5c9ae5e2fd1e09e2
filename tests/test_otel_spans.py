"""OpenTelemetry spans: the figures of ``@measured`` calls, measurements and every span
(``MultimeterSpanProcessor``), checked with the OpenTelemetry SDK itself."""

from __future__ import annotations

import textwrap
import time

import pytest

import multimeter

trace = pytest.importorskip("opentelemetry.trace")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from multimeter.otel import (  # noqa: E402
    ATTRIBUTES,
    CPU_SYSTEM,
    CPU_USER,
    PAGE_FAULTS_MINOR,
    MultimeterSpanProcessor,
)
from tests._programs import run_code  # noqa: E402

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def provider():
    """The process's global tracer provider (set once), its spans kept in memory."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return current


@pytest.fixture
def spans(provider, stored):
    """The spans that ended in the test, by name (calls measured, results in memory)."""
    _EXPORTER.clear()

    def finished(name=None):
        found = _EXPORTER.get_finished_spans()
        return [s for s in found if name is None or s.name == name]

    yield finished
    _EXPORTER.clear()


@pytest.fixture
def tracer(provider):
    return provider.get_tracer("tests")


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@multimeter.measured
def work(seconds: float) -> str:
    _busy(seconds)
    return "done"


@multimeter.measured
def outer(seconds: float) -> str:
    work(seconds)
    return work(seconds)


def test_a_measured_call_puts_its_cpu_seconds_on_the_span_it_ran_in(spans, tracer, stored):
    """The span gets the call's CPU seconds: those of its stored result."""
    with tracer.start_as_current_span("handler"):
        assert "done" == work(0.02)
    (span,) = spans("handler")
    multimeter.flush()
    (result,) = stored.results
    summary = result.summary()
    assert summary["cpu_user_s"] + summary["cpu_system_s"] >= 0.015
    figures = span.attributes
    assert summary["cpu_user_s"] == pytest.approx(figures[CPU_USER], rel=0.05, abs=2e-3)
    assert summary["cpu_system_s"] == pytest.approx(figures[CPU_SYSTEM], rel=0.05, abs=2e-3)
    assert set(figures) <= set(ATTRIBUTES)
    assert all(name.startswith("multimeter.") for name in figures)


def test_nested_calls_in_one_span_are_counted_once(spans, tracer):
    """The outer call covers the calls made in it: the span holds the outer call's figures."""
    with tracer.start_as_current_span("handler"):
        outer(0.01)
    (span,) = spans("handler")
    cpu = span.attributes[CPU_USER] + span.attributes[CPU_SYSTEM]
    assert 0.018 <= cpu < 0.035  # two calls of 10 ms, not the outer's 20 ms plus 20 ms again


def test_calls_one_after_the_other_in_one_span_add_up(spans, tracer):
    """Each call that ends in the span adds its figures to those already there."""
    with tracer.start_as_current_span("handler"):
        work(0.01)
        work(0.01)
        work(0.01)
    (span,) = spans("handler")
    assert 0.028 <= span.attributes[CPU_USER] + span.attributes[CPU_SYSTEM] < 0.05


def test_a_span_started_inside_a_call_gets_the_calls_made_in_it(spans, tracer):
    """A user's span inside a measured function gets the figures of the calls inside it."""

    @multimeter.measured
    def batch():
        with tracer.start_as_current_span("item"):
            work(0.01)

    with tracer.start_as_current_span("request"):
        batch()
    (item,) = spans("item")
    (request,) = spans("request")
    assert item.attributes[CPU_USER] + item.attributes[CPU_SYSTEM] >= 0.009
    assert request.attributes[CPU_USER] + request.attributes[CPU_SYSTEM] >= 0.009


def test_without_a_recording_span_nothing_is_added_and_the_call_is_unchanged(stored):
    """No span, or a span not sampled: the function returns as it would, nothing fails."""
    off = TracerProvider(sampler=ALWAYS_OFF).get_tracer("off")
    assert "done" == work(0.0)
    with off.start_as_current_span("not sampled") as span:
        assert "done" == work(0.0)
        assert not span.is_recording()
    multimeter.flush()
    assert 2 == len(stored.results)


def test_a_span_that_fails_never_reaches_the_measured_code(spans, logs):
    """A span whose set_attributes raises: the call returns its value, the failure is logged."""

    class Broken(trace.NonRecordingSpan):
        def is_recording(self):
            return True

        def set_attributes(self, attributes):
            raise RuntimeError("broken span")

    with trace.use_span(Broken(trace.INVALID_SPAN_CONTEXT), end_on_exit=True):
        assert "done" == work(0.0)
    broken = Broken(trace.INVALID_SPAN_CONTEXT)
    with pytest.raises(ZeroDivisionError), trace.use_span(broken, end_on_exit=True):
        multimeter.measured(lambda: 1 / 0)()
    assert any("broken span" in event.get("error", "") for event in logs)


def test_spans_calls_makes_each_call_a_span_nested_as_the_calls_are(spans, tracer):
    """spans="calls": every call is a span, a child of the call (or span) it was made in."""
    multimeter.configure(spans="calls")
    with tracer.start_as_current_span("handler"):
        assert "done" == outer(0.005)
    handler = spans("handler")[0]
    (outer_span,) = spans("outer")
    inner = spans("work")
    assert 2 == len(inner)
    assert handler.context.span_id == outer_span.parent.span_id
    assert {outer_span.context.span_id} == {s.parent.span_id for s in inner}
    assert all(s.attributes[CPU_USER] + s.attributes[CPU_SYSTEM] > 0.004 for s in inner)
    assert handler.start_time <= outer_span.start_time <= outer_span.end_time <= handler.end_time


def test_spans_calls_marks_a_call_that_raised_as_an_error(spans):
    """The span of a call that raised has an error status and the exception as an event."""
    multimeter.configure(spans="calls")

    @multimeter.measured
    def fail():
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        fail()
    (span,) = spans("fail")
    assert StatusCode.ERROR == span.status.status_code
    assert ["exception"] == [event.name for event in span.events]


def test_spans_off_leaves_spans_alone(spans, tracer):
    """spans="off": no figures on any span."""
    multimeter.configure(spans="off")
    with tracer.start_as_current_span("handler"):
        work(0.005)
    assert {} == dict(spans("handler")[0].attributes)


def test_a_bad_spans_setting_names_the_allowed_values():
    """configure(spans=...) takes attributes, calls or off."""
    with pytest.raises(ValueError, match="spans must be one of attributes, calls, off"):
        multimeter.configure(spans="all")


def test_a_measurement_puts_its_figures_on_the_current_span(spans, tracer):
    """measure() adds the figures of what it measured to the span it ran in."""
    with tracer.start_as_current_span("job"), multimeter.get_multimeter().measure():
        _busy(0.01)
    assert spans("job")[0].attributes[CPU_USER] + spans("job")[0].attributes[CPU_SYSTEM] >= 0.009


def test_the_span_processor_gives_every_span_its_figures(stored):
    """MultimeterSpanProcessor: spans of unmeasured code get figures too, seen by every
    processor of the provider, also one added before it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(MultimeterSpanProcessor())
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("plain"):
        _busy(0.01)
        with tracer.start_as_current_span("allocating"):
            data = bytearray(64 * 1024 * 1024)
            data[::4096] = b"x" * len(data[::4096])
    allocating, plain = exporter.get_finished_spans()
    assert plain.attributes[CPU_USER] + plain.attributes[CPU_SYSTEM] >= 0.009
    assert allocating.attributes[PAGE_FAULTS_MINOR] >= 64 * 1024 * 1024 // 4096  # each page
    assert set(allocating.attributes) <= set(ATTRIBUTES)


def test_a_traced_program_sees_figures_on_its_spans_and_never_imports_otel_unasked(tmp_path):
    """A user's program: its handler span carries the call's figures (a 50 MB allocation
    among them); a program that does not use OpenTelemetry never imports it."""
    program = """
        import json, sys
        import multimeter
        assert "opentelemetry" not in sys.modules
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("shop")

        @multimeter.measured
        def render(size):
            page = bytearray(size)
            page[::4096] = b"x" * len(page[::4096])
            return len(page)

        with tracer.start_as_current_span("GET /cart"):
            assert 50_000_000 == render(50_000_000)
        (span,) = exporter.get_finished_spans()
        print(json.dumps(dict(span.attributes)))
    """
    # Started by a small launcher: a process exec'd by a big one (this test run) starts
    # with its parent's size as its peak resident set size (Linux keeps ru_maxrss
    # across exec), and a 50 MB allocation would not raise it.
    launcher = f"""
        import subprocess, sys
        ran = subprocess.run([sys.executable, "-c", {textwrap.dedent(program)!r}])
        sys.exit(ran.returncode)
    """
    ran = run_code(launcher, MULTIMETER_DIR=str(tmp_path))
    assert 0 == ran.returncode, ran.stderr
    import json

    figures = json.loads(ran.stdout)
    assert figures["multimeter.memory.peak"] >= 50_000_000, figures  # exact: a new high
    assert 40_000_000 <= figures["multimeter.memory.added"] <= figures["multimeter.memory.peak"]
    assert figures["multimeter.page_faults.minor"] >= 50_000_000 // 4096  # each page, once
    unused = run_code(
        """
        import sys
        import multimeter

        @multimeter.measured
        def f():
            return 1

        f()
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], sys.modules
        """,
        MULTIMETER_DIR=str(tmp_path),
    )
    assert 0 == unused.returncode, unused.stderr


def test_threads_ending_calls_in_one_span_lose_none_of_them(spans, tracer, monkeypatch):
    """Eight threads end 2,000 calls each in one span, switching threads as often as
    CPython allows: the span's sum counts every call (each thread's sums overwrote
    the others', leaving a few hundred of 16,000)."""
    import sys
    import threading

    from opentelemetry import context

    from multimeter import _spans

    def one_per_call(plan, start, end, elapsed):
        return {CPU_USER: 1.0}

    def add_one(plan, figures, start, end, elapsed):
        figures[CPU_USER] = figures.get(CPU_USER, 0.0) + 1.0

    monkeypatch.setattr(_spans.FigurePlan, "figures", one_per_call)
    monkeypatch.setattr(_spans.FigurePlan, "add_to", add_one)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    @multimeter.measured
    def work():
        return 1

    try:
        with tracer.start_as_current_span("shared"):
            shared = context.get_current()

            def calls():
                token = context.attach(shared)
                for _ in range(2_000):
                    work()
                context.detach(token)

            threads = [threading.Thread(target=calls) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(interval)
    (span,) = spans("shared")
    assert 16_000 == span.attributes[CPU_USER]


def test_a_call_that_outlives_its_span_leaves_the_ended_span_alone(tmp_path):
    """The SDK warns on stderr when an ended span is given attributes: a call ending
    after its span has ended gives it none."""
    code = """
        import multimeter
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
        tracer = trace.get_tracer("app")
        multimeter.configure(storage=multimeter.DummyStorage())

        @multimeter.measured
        def handler(span):
            span.end()
            return 42

        for _ in range(3):
            with tracer.start_as_current_span("request", end_on_exit=False) as span:
                assert 42 == handler(span)
        print("done")
    """
    completed = run_code(code, check=True, cwd=tmp_path)
    assert "done" == completed.stdout.strip()
    assert "ended span" not in completed.stderr, completed.stderr


@pytest.mark.parametrize("argument", ["a processor", 5, object()])
def test_the_span_processor_refuses_anything_but_a_multimeter(argument):
    with pytest.raises(ValueError, match="multimeter must be a Multimeter"):
        MultimeterSpanProcessor(argument)
