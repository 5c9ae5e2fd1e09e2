"""OpenTelemetry spans: the figures of a measured call on the span it ran in.

Nothing here imports OpenTelemetry: a program that never imported
``opentelemetry.trace`` never pays for it (a lookup in ``sys.modules``). Where
it did, a measured call takes the recording span current at its start
(``_Call.span``) and, at its end, gives that span its figures (:func:`hold`),
computed from the call's own start and end readings by the probes themselves
(:meth:`ResourceProbe.amounts <multimeter.probe.ResourceProbe.amounts>`, or
:func:`multimeter._records.single_row` for other probes): the same per-call
reading the stored record is made from, never a second one.
:class:`multimeter.otel.MultimeterSpanProcessor` takes the same two readings
around every span.

The attributes, one namespace (:data:`ATTRIBUTES`), in the units
OpenTelemetry's semantic conventions use (seconds, bytes, counts):

- ``multimeter.cpu.user``, ``multimeter.cpu.system``: the process's CPU
  seconds in user and system mode while the call ran (every thread).
- ``multimeter.memory.peak``: the peak resident set size (bytes) the call
  reached, where it raised the process's high-water mark (else left out:
  ``getrusage`` cannot tell a peak under an earlier one).
- ``multimeter.memory.added``: bytes by which the call raised that
  high-water mark.
- ``multimeter.page_faults.minor``, ``multimeter.page_faults.major``: page
  faults without and with I/O.
- ``multimeter.io.read``, ``multimeter.io.write``: bytes read from and
  written to storage (the ``psutil`` probe's counters where it is used, else
  ``getrusage``'s 512-byte blocks).

A figure that did not move (no fault, no I/O) is left out: an absent
attribute means zero, and a span costs a backend a little less.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from multimeter import _env, _process, _version
from multimeter._log import warn_once
from multimeter._records import single_row
from multimeter._session import FAILED, read_probe_tuple
from multimeter.probe import ResourceProbe

CPU_USER = "multimeter.cpu.user"
CPU_SYSTEM = "multimeter.cpu.system"
MEMORY_PEAK = "multimeter.memory.peak"
MEMORY_ADDED = "multimeter.memory.added"
PAGE_FAULTS_MINOR = "multimeter.page_faults.minor"
PAGE_FAULTS_MAJOR = "multimeter.page_faults.major"
IO_READ = "multimeter.io.read"
IO_WRITE = "multimeter.io.write"

#: Every attribute multimeter puts on spans, with its unit (UCUM, as OpenTelemetry writes them).
ATTRIBUTES: dict[str, str] = {
    CPU_USER: "s",
    CPU_SYSTEM: "s",
    MEMORY_PEAK: "By",
    MEMORY_ADDED: "By",
    PAGE_FAULTS_MINOR: "{fault}",
    PAGE_FAULTS_MAJOR: "{fault}",
    IO_READ: "By",
    IO_WRITE: "By",
}

#: The values of ``configure(spans=...)`` and ``MULTIMETER_SPANS``.
SPANS_CHOICES = _env.SPANS_CHOICES

_TRACE = "opentelemetry.trace"
_modules = sys.modules
_monotonic = time.monotonic
_BLOCK = 512  # bytes in a block of getrusage's ru_inblock / ru_oublock

# Schema key -> (attribute, factor): a rate (per second) times the call's seconds
# is the call's amount; a factor of 0 takes the value as it is.
_FROM_ROW: dict[str, tuple[str, float]] = {
    "process.cpu_user": (CPU_USER, 1.0),
    "process.cpu_system": (CPU_SYSTEM, 1.0),
    "process.peak_rss": (MEMORY_PEAK, 0.0),
    "process.page_faults_no_io": (PAGE_FAULTS_MINOR, 1.0),
    "process.page_faults_io": (PAGE_FAULTS_MAJOR, 1.0),
    "process.block_input": (IO_READ, _BLOCK),
    "process.block_output": (IO_WRITE, _BLOCK),
    "proc.read_bytes": (IO_READ, 1.0),  # psutil's, where used: they win over blocks
    "proc.write_bytes": (IO_WRITE, 1.0),
}
_COUNTS = frozenset((PAGE_FAULTS_MINOR, PAGE_FAULTS_MAJOR, IO_READ, IO_WRITE, MEMORY_PEAK))
_ALWAYS = frozenset((CPU_USER, CPU_SYSTEM))


def trace_module() -> Any:
    """``opentelemetry.trace`` where the program imported it, else ``None``."""
    return _modules.get(_TRACE)


class FigurePlan:
    """How the figures of a span come from a probe plan's readings (one per
    :class:`~multimeter._session.ProbePlan`, made once): the resource probe's
    amounts (:meth:`ResourceProbe.amounts`) where it is read per call (the
    default), and the columns of the call's row for other probes (psutil's bytes)."""

    __slots__ = ("columns", "plan", "resource", "rows_too")

    def __init__(self, plan: Any, schema: Any) -> None:
        self.plan = plan
        #: Where the resource probe's readings are in a reading tuple.
        self.resource = next(
            (i for i, probe in enumerate(plan.per_call) if isinstance(probe, ResourceProbe)), None
        )
        keys = [measure.key for measure in schema.measures]
        chosen: dict[str, tuple[int, float]] = {}
        for key, (attribute, factor) in _FROM_ROW.items():
            if key in keys and not (self.resource is not None and key.startswith("process.")):
                chosen[attribute] = (keys.index(key), factor)  # later keys win
        self.columns = tuple((attribute, at, factor) for attribute, (at, factor) in chosen.items())
        #: Whether other probes add figures (psutil's bytes): the row is needed.
        self.rows_too = self.resource is None or len(plan.per_call) > 1

    def figures(self, start: Any, end: Any, elapsed: float) -> dict[str, float | int]:
        """The attributes from a start and an end reading ``elapsed`` seconds apart
        (empty where the probes cannot tell)."""
        found: dict[str, float | int] = {}
        at = self.resource
        if at is not None and start[at] is not FAILED and end[at] is not FAILED:
            probe = self.plan.per_call[at]
            amounts = probe.amounts(end[at], start[at], elapsed)
            if amounts is not None:
                user, system, minor, major, blocks_in, blocks_out, before, after = amounts
                found[CPU_USER] = user
                found[CPU_SYSTEM] = system
                if after > before:
                    found[MEMORY_PEAK] = after
                    found[MEMORY_ADDED] = after - before
                if minor > 0:
                    found[PAGE_FAULTS_MINOR] = minor
                if major > 0:
                    found[PAGE_FAULTS_MAJOR] = major
                if blocks_in > 0:
                    found[IO_READ] = blocks_in * _BLOCK
                if blocks_out > 0:
                    found[IO_WRITE] = blocks_out * _BLOCK
        if self.rows_too:
            self._from_row(found, start, end, elapsed)
        return found

    def add_to(self, held: dict[str, float | int], start: Any, end: Any, elapsed: float) -> None:
        """Add the figures of the readings to ``held`` (sums; the highest peak)."""
        at = self.resource
        if at is None or self.rows_too:  # the general way
            for attribute, value in self.figures(start, end, elapsed).items():
                before = held.get(attribute)
                if before is not None:
                    value = max(before, value) if attribute == MEMORY_PEAK else before + value
                held[attribute] = value
            return
        first, last = start[at], end[at]
        if first is FAILED or last is FAILED:
            return
        amounts = self.plan.per_call[at].amounts(last, first, elapsed)
        if amounts is None:
            return
        user, system, minor, major, blocks_in, blocks_out, before, after = amounts
        get = held.get
        held[CPU_USER] = get(CPU_USER, 0.0) + user
        held[CPU_SYSTEM] = get(CPU_SYSTEM, 0.0) + system
        if after > before:
            held[MEMORY_PEAK] = max(get(MEMORY_PEAK, 0), after)
            held[MEMORY_ADDED] = get(MEMORY_ADDED, 0) + after - before
        if minor > 0:
            held[PAGE_FAULTS_MINOR] = get(PAGE_FAULTS_MINOR, 0) + minor
        if major > 0:
            held[PAGE_FAULTS_MAJOR] = get(PAGE_FAULTS_MAJOR, 0) + major
        if blocks_in > 0:
            held[IO_READ] = get(IO_READ, 0) + blocks_in * _BLOCK
        if blocks_out > 0:
            held[IO_WRITE] = get(IO_WRITE, 0) + blocks_out * _BLOCK

    def _from_row(
        self, found: dict[str, float | int], start: Any, end: Any, elapsed: float
    ) -> None:
        """Add the figures of the call's row (probes other than ``resource``)."""
        row = single_row(self.plan, start, end, elapsed)
        if row is None:
            return
        for attribute, at, factor in self.columns:
            value = row[at]
            if value is None or value != value:  # missing, NaN
                continue
            amount = value * elapsed * factor if factor else value
            if attribute in _COUNTS:
                amount = round(amount)
                if amount <= 0:
                    continue
            found[attribute] = amount


def figure_plan(setup: Any) -> FigurePlan:
    """The :class:`FigurePlan` of ``setup`` (a snapshot, or what has its ``plan``
    and ``schema``), cached on the plan."""
    plan = setup.plan
    made: FigurePlan | None = plan.figures
    if made is None:
        made = plan.figures = FigurePlan(plan, setup.schema)
    return made


#: The attribute of a span that holds the figures of the calls that ended in it so
#: far: those of the first (a dict, set on the span), or a :class:`_Held` from the
#: second call on (their sum is set as the span ends).
_HELD = "_multimeter_figures"


class _SpanLock:
    """Guards the figures held on spans (a part of the process's state): threads that
    end calls in one span add to the same sums. Reentrant: a signal's handler may
    end a measured call in the middle of another's."""

    def __init__(self) -> None:
        self.lock = threading.RLock()


def _lock() -> threading.RLock:
    return _process.current().part(_SpanLock).lock


class _Held:
    """The figures of the calls that ended in one span so far; set on the span just
    before it ends (its ``end`` is wrapped, once). A call only appends its readings
    (:meth:`add`); they are added up (the highest peak) in batches and at the end,
    so that a call costs an append, not a computation and a ``set_attributes()``."""

    __slots__ = ("ending", "figures", "pending", "span")

    #: Readings kept before they are added up.
    BATCH = 64

    def __init__(self, span: Any) -> None:
        self.span = span
        self.figures: dict[str, float | int] = {}
        #: (configuration, start readings, end readings, seconds) of each call.
        self.pending: list[tuple[Any, Any, Any, float]] = []
        self.ending = span.end

    def fold(self) -> None:
        """Add the figures of the pending readings up (under :func:`_lock`)."""
        pending, self.pending = self.pending, []
        figures = self.figures
        for setup, start, end, elapsed in pending:
            (setup.plan.figures or figure_plan(setup)).add_to(figures, start, end, elapsed)

    def end(self, end_time: int | None = None) -> None:
        """Set the figures, then end the span as it would have ended."""
        span = self.span
        try:
            with _lock():
                kept = vars(span)
                kept.pop("end", None)  # once; and no cycle left behind
                kept.pop(_HELD, None)
                self.fold()
                figures = dict(self.figures)
            if figures and span.is_recording():
                span.set_attributes(figures)
        except Exception as error:  # noqa: BLE001 - a span must never break the traced code
            warn_once(("span", type(error)), "adding figures to a span failed", error=repr(error))
        finally:
            self.ending(end_time)


def hold(span: Any, setup: Any, start: Any, end: Any, elapsed: float) -> None:
    """Give ``span`` (a recording span) the figures of a call that ended in it: the
    readings ``start`` and ``end`` of the configuration ``setup``. The first call
    sets them at once (most spans hold one call); from the second on, the calls'
    readings are kept and added up, and the span gets the sums as it ends (a
    span without a ``__dict__`` gets each call's figures as they come). Never raises."""
    try:
        if not span.is_recording():  # ended before the call (a span ended inside it)
            return
        kept = vars(span)
        with _lock():  # threads ending calls in one span add to the same sums
            held = kept.get(_HELD)
            if held is None:  # the first call that ends in the span
                plan = setup.plan.figures or figure_plan(setup)
                figures = kept[_HELD] = plan.figures(start, end, elapsed)
                span.set_attributes(figures)
            elif type(held) is dict:  # the second: the span's figures are set when it ends
                first = _Held(span)
                first.figures = dict(held)
                kept[_HELD] = first
                kept["end"] = first.end
                first.pending.append((setup, start, end, elapsed))
            else:
                pending = held.pending
                pending.append((setup, start, end, elapsed))
                if len(pending) >= _Held.BATCH:
                    held.fold()
    except TypeError:  # no __dict__ (not the SDK's span)
        add_figures(span, setup, start, end, elapsed, add=False)
    except Exception as error:  # noqa: BLE001 - a span must never break the measured code
        warn_once(("span", type(error)), "adding figures to a span failed", error=repr(error))


def add_figures(
    span: Any, setup: Any, start: Any, end: Any, elapsed: float, *, add: bool = True
) -> None:
    """Give ``span``, where it is recording, the figures of the readings ``start`` and
    ``end``: added to those of the other calls that end in it, set as it ends
    (``add``: see :func:`hold`), or set now as the span's own; never raises (a
    failure is logged once)."""
    try:
        if not span.is_recording():
            return
        if add:
            hold(span, setup, start, end, elapsed)
            return
        figures = (setup.plan.figures or figure_plan(setup)).figures(start, end, elapsed)
        if figures:
            span.set_attributes(figures)
    except Exception as error:  # noqa: BLE001 - a span must never break the measured code
        warn_once(("span", type(error)), "adding figures to a span failed", error=repr(error))


def recording_span(snapshot: Any) -> Any:
    """The current span where ``snapshot`` lets spans have figures, the program
    imported OpenTelemetry and the span is recording; else ``None``. Never raises."""
    if snapshot.spans == "off":
        return None
    trace = _modules.get(_TRACE)
    if trace is None:
        return None
    try:
        span = trace.get_current_span()
        return span if span.is_recording() else None
    except Exception as error:  # noqa: BLE001 - a span must never break the measured code
        warn_once(("span", type(error)), "reading the current span failed", error=repr(error))
        return None


def around_current(snapshot: Any) -> Around | None:
    """An :class:`Around` for the current span (see :func:`recording_span`), or
    ``None``; never raises."""
    span = recording_span(snapshot)
    if span is None:
        return None
    try:
        return Around(span, snapshot)
    except Exception as error:  # noqa: BLE001 - a span must never break the measured code
        warn_once(("span", type(error)), "reading the probes failed", error=repr(error))
        return None


class Around:
    """The readings that a span's figures come from, taken at its start; :meth:`end`
    takes the end readings and puts the figures on the span."""

    __slots__ = ("mono", "readings", "snapshot", "span")

    def __init__(self, span: Any, snapshot: Any) -> None:
        self.span = span
        self.snapshot = snapshot
        self.readings = read_probe_tuple(snapshot.plan.per_call)
        self.mono = _monotonic()

    def end(self, *, add: bool = True) -> None:
        """Read the probes again and put the figures on the span; never raises."""
        try:
            readings = read_probe_tuple(self.snapshot.plan.per_call)
            elapsed = _monotonic() - self.mono
        except Exception as error:  # noqa: BLE001 - a span must never break the measured code
            warn_once(("span", type(error)), "reading the probes failed", error=repr(error))
            return
        add_figures(self.span, self.snapshot, self.readings, readings, elapsed, add=add)


def start_call_span(spec: Any) -> tuple[Any, Any]:
    """A new span for a call of ``spec`` (a measured function), a child of the
    current span, made current where ``spec.attaches`` (plain functions and
    coroutines); returns (the span, the token that detaches it or ``None``).
    Never raises: ``(None, None)``."""
    try:
        trace = _modules[_TRACE]
        tracer = spec.tracer
        if tracer is None:  # the global provider's, also one set later (a proxy till then)
            tracer = spec.tracer = trace.get_tracer("multimeter", _version.__version__)
        span = tracer.start_span(spec.name)
        token = None
        if spec.attaches:
            from opentelemetry import context

            token = context.attach(trace.set_span_in_context(span))
        return span, token
    except Exception as error:  # noqa: BLE001 - a span must never break the measured code
        warn_once(("span start", type(error)), "starting a span failed", error=repr(error))
        return None, None


def end_call_span(span: Any, token: Any, error: BaseException | None, end_ns: int) -> None:
    """End a span of :func:`start_call_span` (its status an error where the call
    raised one) and detach it; never raises."""
    try:
        if token is not None:
            from opentelemetry import context

            context.detach(token)
        if error is not None and span.is_recording():
            from opentelemetry.trace import Status, StatusCode

            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=end_ns)
    except Exception as failure:  # noqa: BLE001 - a span must never break the measured code
        warn_once(("span end", type(failure)), "ending a span failed", error=repr(failure))


def check_spans(value: Any, setting: str = "spans") -> str:
    """``value`` if it is one of :data:`SPANS_CHOICES`, else ``ValueError``."""
    if not isinstance(value, str) or value not in SPANS_CHOICES:
        raise ValueError(f"{setting} must be one of {', '.join(SPANS_CHOICES)}; got {value!r}")
    return value
