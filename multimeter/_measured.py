"""``@measured``: every call of a function is its own measurement."""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import inspect
import itertools
import random
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from typing import Any, TypeVar, overload

import wrapt

from multimeter import _config, _packed, _process, _spans, _wrappers
from multimeter._log import warn_once
from multimeter._marks import flatten
from multimeter._meta import process_meta_data
from multimeter._records import call_record
from multimeter._reentry import BUSY, made_by_signal_handler
from multimeter._session import (
    FAILED,
    ProbePlan,
    Session,
    read_probe_tuple,
)
from multimeter._tags import clean_text, normalize_tags
from multimeter._writer import CallJob
from multimeter.calls import CallFunction, CallRecord, CallStorage
from multimeter.multimeter import Snapshot
from multimeter.result import Result, ResultBuilder
from multimeter.storages.base import Storage, keeps_for_later

F = TypeVar("F", bound=Callable[..., Any])

#: Tag values taken from arguments are cut to this many characters.
MAX_TAG_LENGTH = 200
#: Names longer than this are shortened in identifiers (a hash of the whole name
#: keeps them unique), so identifiers stay valid file names.
MAX_PREFIX_LENGTH = 100

#: The innermost measured call running in this context (its ``parent`` the next one out).
_active: ContextVar[_Call | None] = ContextVar("multimeter_active", default=None)
_time_ns = time.time_ns
_monotonic = time.monotonic
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {
    f"{p}{n}" for p in ("com", "lpt") for n in range(10)
}


def _check_name(name: Any) -> None:
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name must be a non-empty str, got {name!r}")


def default_name(func: Any) -> str:
    """``__qualname__`` without anything up to its last ``<locals>.``."""
    qualname = str(getattr(func, "__qualname__", None) or getattr(func, "__name__", "call"))
    return qualname.rsplit("<locals>.", 1)[-1]


def safe_prefix(name: str) -> str:
    """``name`` made safe as a file name everywhere and as an InfluxDB measurement name."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    safe = safe.lstrip("_.") or "call"
    first, dot, rest = safe.partition(".")
    if first.lower() in _WINDOWS_RESERVED:
        safe = f"{first}_{dot}{rest}"
    if len(safe) > MAX_PREFIX_LENGTH:
        import hashlib  # rare: imported here, `import multimeter` stays light

        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=6)
        safe = f"{safe[: MAX_PREFIX_LENGTH - 13]}.{digest.hexdigest()}"
    return safe


def _tag_text(value: Any, convert: Callable[[Any], Any] | None, name: str) -> str:
    try:
        text = str(convert(value) if convert is not None else value)
    except Exception as error:  # noqa: BLE001 - a converter must not break the call
        warn_once(
            ("tag_arg", name, type(error)), "tag_args converter failed", tag=name, error=repr(error)
        )
        return "<error>"
    text = "".join(" " if ord(c) < 32 or c == "\x7f" else c for c in clean_text(text))
    # Line protocol cannot carry a tag value that ends with a backslash.
    return text[:MAX_TAG_LENGTH].rstrip("\\")


class _ArgTag:
    __slots__ = ("by_keyword", "convert", "default", "name", "position")

    def __init__(
        self, name: str, position: int | None, default: Any, convert: Any, by_keyword: bool
    ) -> None:
        self.name = name
        self.position = position
        self.default = default
        self.convert = convert
        #: False for a positional-only parameter: a keyword of that name is another one's.
        self.by_keyword = by_keyword


class _Spec:
    """What is fixed per decorated function."""

    def __init__(
        self,
        func: Any,
        name: str | None,
        tags: Mapping[str, Any] | None,
        tag_args: Iterable[str] | Mapping[str, Callable[[Any], Any]],
    ) -> None:
        target = getattr(func, "__func__", func)  # classmethod / staticmethod objects
        _check_name(name)
        self.name = name or default_name(target)
        self.prefix = safe_prefix(self.name) + "-"
        self.tags = normalize_tags(tags)
        from multimeter.storages._line import check_series_tags  # not at `import multimeter`

        check_series_tags(self.tags)  # every result carries them: refuse what InfluxDB refuses
        self.enter = f"{self.name}:enter"
        self.exit = f"{self.name}:exit"
        self.meta = {
            "function": self.name,
            "module": str(getattr(target, "__module__", "")),
            "qualname": str(getattr(target, "__qualname__", self.name)),
        }
        self.function = CallFunction(
            self.name, self.meta["module"], self.meta["qualname"], self.prefix
        )
        self.arg_tags = self._plan_tag_args(target, tag_args)
        #: Whether a span of its own (``spans="calls"``) is made the current one while
        #: a call runs: not for generators, whose consumer's context runs between items.
        self.attaches = not (
            inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)
        )
        #: The tracer of its spans (``spans="calls"``), got when first needed.
        self.tracer: Any = None
        self._setup: _CallSetup | None = None
        self._base_meta: tuple[Any, dict[str, str]] | None = None
        self.lanes = _Lanes()

    @staticmethod
    def _plan_tag_args(
        target: Any, tag_args: Iterable[str] | Mapping[str, Callable[[Any], Any]]
    ) -> tuple[_ArgTag, ...]:
        if isinstance(tag_args, str):
            raise ValueError(f"tag_args must be a list of parameter names, got {tag_args!r}")
        converters = dict(tag_args) if isinstance(tag_args, Mapping) else dict.fromkeys(tag_args)
        if not converters:
            return ()
        parameters = list(inspect.signature(target).parameters.values())
        plan = []
        for name, convert in converters.items():
            found = [p for p in parameters if p.name == name]
            if not found or found[0].kind in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                allowed = ", ".join(
                    p.name
                    for p in parameters
                    if p.kind
                    not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
                )
                raise ValueError(
                    f"tag_args: {name!r} is not a parameter of {default_name(target)}();"
                    f" allowed: {allowed}"
                )
            if convert is not None and not callable(convert):
                raise ValueError(f"tag_args: the converter for {name!r} must be callable")
            parameter = found[0]
            position = (
                parameters.index(parameter)
                if parameter.kind
                in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                else None
            )
            by_keyword = parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
            plan.append(_ArgTag(name, position, parameter.default, convert, by_keyword))
        return tuple(plan)

    def shared_meta(self) -> dict[str, str]:
        """The process's and this function's meta data (shared: not to be changed)."""
        cached = self._base_meta
        process = _process.current()
        if cached is None or cached[0] is not process:
            meta = process_meta_data()
            meta.update(self.meta)
            cached = self._base_meta = (process, meta)
        return cached[1]

    def argument_tags(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, str]:
        """Tags from the call's arguments (positional, keyword or default)."""
        shift = 1 if instance is not None else 0
        tags = {}
        for arg in self.arg_tags:
            if arg.by_keyword and kwargs and arg.name in kwargs:
                value = kwargs[arg.name]
            elif arg.position is not None and 0 <= arg.position - shift < len(args):
                value = args[arg.position - shift]
            elif arg.default is not inspect.Parameter.empty:
                value = arg.default
            else:
                continue
            tags[arg.name] = _tag_text(value, arg.convert, arg.name)
        return tags

    def begin(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
        """Start measuring a call, or ``None`` when it is not to be measured.

        Not measured: measuring switched off, a call not drawn by the sample
        rate, and calls made by multimeter's own code (a storage or a probe
        that calls measured code would otherwise feed itself).
        """
        if BUSY.busy:  # first: multimeter's own code (building the configuration, too)
            return None
        process = _process.current()
        meter = process.meter  # the global configuration (built on first use)
        config = meter.snapshot if meter is not None else _config.current()
        if not config.enabled:
            return None
        rate = config.sample_rate
        if rate < 1.0 and random.random() >= rate:
            return None
        if process.unfinished:
            _clean_up_unfinished(process)
        parent = _active.get()
        if parent is not None:
            state = parent.state
            if state is READING and not made_by_signal_handler(sys._getframe(1)):
                return None  # called by a probe that the enclosing call is reading
            if state is ENDED:  # a task that outlived its caller, or a call the stack
                parent = None  # cut short: either way, not a call to link to
        snapshot = config  # the whole configuration, one object
        setup = self._setup
        if setup is None or setup.snapshot is not snapshot:
            setup = self._setup = _CallSetup(self, snapshot, {**snapshot.tags, **self.tags})
        try:
            return _Call(process, self, setup, parent, instance, args, kwargs)
        except RecursionError:
            return None  # the stack is nearly full: run the call unmeasured, log nothing
        except Exception as error:  # noqa: BLE001 - measuring must never break the call
            warn_once(
                ("begin", type(error)),
                "measuring a call failed",
                function=self.name,
                error=repr(error),
            )
            return None


class _CallSetup:
    """What the calls of one function under one :class:`Snapshot` share."""

    __slots__ = (
        "cycle",
        "packs",
        "plan",
        "records",
        "schema",
        "snapshot",
        "spans",
        "spec",
        "storage",
        "stores",
        "tags",
    )

    def __init__(self, spec: _Spec, snapshot: Snapshot, tags: dict[str, str]) -> None:
        self.spec = spec
        self.snapshot = snapshot
        self.tags = tags
        self.storage: Storage = snapshot.storage
        self.schema = snapshot.schema
        self.plan: ProbePlan = snapshot.plan
        self.cycle = snapshot.cycle_time
        self.stores = snapshot.stores
        #: ``None`` (spans left alone), ``ATTRIBUTES`` or ``CALLS`` (see ``_spans``).
        self.spans = {"attributes": ATTRIBUTES, "calls": CALLS}.get(snapshot.spans)
        # A storage of call records links a call to the call it was made in; for
        # one that stores results, each call keeps the marks of the calls made in it.
        self.records = isinstance(snapshot.storage, CallStorage)
        # Short calls wait for the writer packed (see _packed): those of
        # the resource probe alone, for a storage of call records with no spool.
        self.packs = (
            self.records
            and self.stores
            and not keeps_for_later(self.storage)
            and self.plan.rows
            and not self.plan.tracked
            and self.plan.call_order is None
            and len(self.plan.per_call) == 1
            and self.plan.cpu_time_rows
        )


class _Lanes:
    """Small numbers for the calls of one function in flight in this process.

    A lane is held by one call at a time, and is handed out again only to a call
    that starts in a later microsecond than the last holder ended: points of
    calls sharing a lane never share a timestamp. There are about as many lanes
    as the function's peak concurrency (InfluxDB writes the lane as a tag, so the
    series stay few). ``_Call`` takes a lane (``free.pop()``, else ``new()``) and
    gives it back (``free.append()``) inline: that is the per-call path.
    """

    __slots__ = ("free", "new")

    def __init__(self) -> None:
        #: (lane, microsecond its last call ended); ``list.pop()`` and ``append()``
        #: are atomic, so two threads never take the same lane.
        self.free: list[tuple[int, int]] = []
        #: A lane never used before.
        self.new = itertools.count().__next__

    def other_than(self, lane: int, ended_us: int, now_us: int) -> int:
        """The lane just taken ended in this very microsecond: look a few further
        down for one that did not, before making a new one; give back the rest."""
        skipped = [(lane, ended_us)]
        found = None
        for _ in range(8):
            try:
                candidate = self.free.pop()
            except IndexError:
                break
            if candidate[1] < now_us:
                found = candidate[0]
                break
            skipped.append(candidate)
        self.free.extend(reversed(skipped))
        return found if found is not None else self.new()

    def give_back(self, lane: int, now_us: int) -> None:
        """The call on ``lane`` ended at ``now_us`` (``_Call`` inlines this)."""
        self.free.append((lane, now_us))


def _clean_up_unfinished(process: _process.ProcessState) -> None:
    """Give back what calls cut short by a full stack held (lanes, the sampler's
    tracking; ``process.unfinished``, see ``_Call.__init__``). Their context keeps
    them as active until their caller's call ends (``begin()`` does not link to an
    ended call meanwhile)."""
    unfinished: dict[_Call, None] = process.unfinished
    while unfinished:
        try:
            call, _ = unfinished.popitem()
        except KeyError:  # another thread took the last one
            return
        try:
            if _active.get() is call:  # this context still has it as the active call
                try:
                    _active.reset(call.token)  # type: ignore[arg-type]
                except (ValueError, RuntimeError, TypeError):  # a copy of that context
                    _active.set(None)
            call._release()
        except RecursionError:  # no room here either: a later call will do it
            unfinished[call] = None
            return
        except Exception as error:  # noqa: BLE001 - measuring must never break the call
            warn_once(("release", type(error)), "cleaning up a call failed", error=repr(error))


# What a call does with OpenTelemetry spans (``_CallSetup.spans``).
ATTRIBUTES = "attributes"  # its figures on the span current at its start
CALLS = "calls"  # a span of its own, with its figures

_modules = sys.modules
_TRACE = "opentelemetry.trace"

# The states of a call (see _Call).
IN_FLIGHT = "in flight"  # tracked by the sampler without a session; may be promoted
READING = "reading"  # reading its probes: measured code they call is not measured
SESSION = "session"  # begun with a session (its probes need start/end hooks or ticks)
ENDED = "ended"  # handed to the writer (or not stored: storing is off, or after fork)


class _Call(CallJob):
    """One measured call: what the sampler and the writer need.

    States, each set in one place:

    - ``IN_FLIGHT`` (set in :meth:`_register`): short calls cost no session. The
      call keeps its start readings; at its end the writer derives its single
      point from the start and end readings. The sampler may meanwhile promote a
      call still running half a cycle after its start to a full session with a
      point at every tick (:meth:`promote`, under the sampler's lock; ``session``
      is then set, the state stays ``IN_FLIGHT`` until :meth:`end` asks the
      sampler with ``leave()``).
    - ``SESSION`` (set in :meth:`_register`): the probes need start/end hooks or
      plain sampling, so the call has a session from its start.
    - ``READING`` (set around the start and end readings of an ``IN_FLIGHT``
      call): measured code that a probe calls meanwhile is not measured.
    - ``ENDED`` (set in :meth:`_end`): marks are final; the writer may build.
    """

    __slots__ = (
        "cycle",
        "end_mono",
        "end_readings",
        "end_us",
        "error",
        "holds_lane",
        "label",
        "lane",
        "nested",
        "number",
        "parent",
        "process",
        "session",
        "setup",
        "span",
        "span_token",
        "spec",
        "start_mono",
        "start_readings",
        "started_us",
        "state",
        "storage",
        "tags",
        "token",
    )

    def __init__(
        self,
        process: _process.ProcessState,
        spec: _Spec,
        setup: _CallSetup,
        parent: _Call | None,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        # Until registered, the call counts as ended; should the stack fill up
        # anywhere below, nothing here can call anything to undo what was done (that
        # needs the stack too): the call is left for the next begin() to clean up.
        self.state = ENDED
        self.token: Token[_Call | None] | None = None
        # The state of the process the call began in (None: it left the sampler).
        self.process: _process.ProcessState | None = None
        self.holds_lane = False
        #: The OpenTelemetry span the call's figures go to (a recording one), or None.
        self.span: Any = None
        self.span_token: Any = None
        try:
            self._start(process, spec, setup, parent, instance, args, kwargs)
        except RecursionError:
            self.state = ENDED  # stores, not calls: they cannot overflow
            process.unfinished[self] = None
            raise
        except BaseException:  # a KeyboardInterrupt (a signal) in the middle of our code
            self.abandon()
            raise

    def _start(
        self,
        process: _process.ProcessState,
        spec: _Spec,
        setup: _CallSetup,
        parent: _Call | None,
        instance: Any,
        args: Any,
        kwargs: Any,
    ) -> None:
        tags = setup.tags
        if spec.arg_tags:
            tags = {**tags, **spec.argument_tags(instance, args, kwargs)}
        self.tags = tags
        self.spec = spec
        self.setup = setup
        self.storage = setup.storage
        self.cycle = setup.cycle  # the cycle time the sampler serves this call at
        self.number = next(process.calls)
        self.process = process
        self.error: BaseException | None = None
        self.session: Session | None = None
        self.end_readings: tuple[Any, ...] | None = None
        # The mark entries (see multimeter._marks) of the calls made inside this one;
        # kept only where the storage stores results with their marks.
        self.nested: list[tuple[int, str, int, str, Any]] | None = (
            None if setup.records or not setup.stores else []
        )
        self.started_us = now_us = _time_ns() // 1000
        free = spec.lanes.free  # taking a lane, inlined: this is the per-call path
        try:
            lane, ended_us = free.pop()  # atomic: two threads never get the same lane
            self.lane = lane  # held from here: abandon() gives it back
            self.holds_lane = True
            if ended_us >= now_us:
                self.lane = lane = spec.lanes.other_than(lane, ended_us, now_us)
        except IndexError:
            self.lane = lane = spec.lanes.new()
            self.holds_lane = True
        self.parent = parent
        spans = setup.spans
        if spans is not None:  # OpenTelemetry, where the program imported it
            trace = _modules.get(_TRACE)
            if trace is not None:
                if spans is ATTRIBUTES:
                    span = trace.get_current_span()
                    if span.is_recording():
                        self.span = span
                else:
                    self.span, self.span_token = _spans.start_call_span(spec)
        self.token = _active.set(self)
        # Registering with the sampler comes last: nothing after it can fail (but a
        # KeyboardInterrupt may land in it: then nothing of the call may stay behind).
        self.state = IN_FLIGHT  # until _register() says otherwise
        self._register(process)

    def _register(self, process: _process.ProcessState) -> None:
        plan = self.setup.plan
        sampler = process.sampler
        if plan.tracked:  # probes that need start/end hooks or per-tick sampling
            self.state = SESSION
            self.start_readings = None
            sampler.begin(self.promote())
            return
        # A reading taken moments ago (the end of the previous call) serves as
        # this call's start: the interval then begins at that reading.
        now = _monotonic()
        shared = process.last_reading
        if shared[0] is plan and now - shared[1] <= SHARE_READINGS_S:
            self.start_readings, self.start_mono = shared[2], shared[1]
        else:
            self.state = READING
            self.start_readings = read_probe_tuple(plan.per_call)
            self.start_mono = _monotonic()
            self.state = IN_FLIGHT
        sampler.enter(self)

    @property
    def identifier(self) -> str:
        """``<name>-<pid>-<random>-<n>``."""
        return f"{self.spec.prefix}{_process.current().token}-{self.number}"

    def promote(self) -> Session:
        """The session that carries on this call (the sampler calls this under its lock)."""
        setup = self.setup
        result = ResultBuilder(self.identifier, setup.schema, self.tags, {}).result
        session = Session(result, (), setup.cycle, setup.plan)
        if self.start_readings is not None:
            session.start_from(setup.plan.by_probe(self.start_readings), self.start_mono)
        self.session = session
        return session

    def end(self, error: BaseException | None) -> None:
        """Stop measuring and hand the call to the writer; never raises an error of its
        own (a ``KeyboardInterrupt`` that lands meanwhile goes on, as it would have
        in the plain code, and the call is dropped without a trace)."""
        try:
            self._end(error)
        except RecursionError:
            pass  # the stack is nearly full; nothing can be logged either
        except Exception as failure:  # noqa: BLE001 - measuring must never break the call
            warn_once(
                ("end", type(failure)),
                "measuring a call failed",
                function=self.spec.name,
                error=repr(failure),
            )
        except BaseException:  # KeyboardInterrupt (a signal) in the middle of our code
            self.abandon()
            raise

    def abandon(self) -> None:
        """Leave nothing of this call behind: not on the stack of active calls, not
        with the sampler, not holding a lane. Best effort: it runs while a signal's
        exception is on its way."""
        self.state = ENDED
        # Only errors are suppressed: a KeyboardInterrupt landing here goes on in place
        # of the one being handled (swallowing it would lose the user's Ctrl-C).
        with contextlib.suppress(Exception):  # already reset, or reset elsewhere
            _active.reset(self.token)  # type: ignore[arg-type]  # None: raises, suppressed
        span = self.span
        if span is not None and self.setup.spans is CALLS:
            self.span = None
            _spans.end_call_span(span, self.span_token, None, _time_ns())
        with contextlib.suppress(Exception):
            self._release()

    def _release(self) -> None:
        """Give the call's lane back and stop tracking it with the sampler. Each step
        is done once, so that it can be tried again after a ``RecursionError``."""
        if self.holds_lane:
            self.spec.lanes.give_back(self.lane, _time_ns() // 1000)
            self.holds_lane = False
        process = _process.current()
        if self.process is process:
            session = process.sampler.leave(self)  # the call's session, if it has one
            self.process = None  # left
            if session is not None:
                process.sampler.finish(session, flush=False)

    def _end(self, error: BaseException | None) -> None:
        process = _process.current()
        was = self.state
        if was is IN_FLIGHT:
            plan = self.setup.plan
            self.state = READING
            readings = read_probe_tuple(plan.per_call)
            end_mono = _monotonic()
            process.last_reading = (plan, end_mono, readings)
        now_us = _time_ns() // 1000
        spec = self.spec
        label = spec.exit if error is None else f"{spec.name}:raise {type(error).__name__}"
        self.label = label
        self.end_us = now_us
        self.state = ENDED
        nested = self.nested
        if nested:  # calls still running (tasks) may add to the old list; this one is final
            self.nested = list(nested)
        try:  # noqa: SIM105 - a try is free, contextlib.suppress() is not
            _active.reset(self.token)  # type: ignore[arg-type]  # set until here
        except (ValueError, RuntimeError):
            pass  # ended in another context, or already reset (generators): nothing to undo
        self.token = None  # it holds the context's previous state: not needed any more
        span = self.span
        if span is not None:
            self.span = None  # ended: a call made later in the same span adds its own
            if self.setup.spans is CALLS:
                self._end_own_span(span, readings if was is IN_FLIGHT else None, error)
            elif was is IN_FLIGHT:  # the span it ran in, unless its caller covers it
                parent = self.parent
                if parent is None or parent.span is not span or parent.state is ENDED:
                    elapsed = end_mono - self.start_mono
                    _spans.hold(span, self.setup.snapshot, self.start_readings, readings, elapsed)
        # The marks go to one sink (see multimeter._marks): the enclosing call's, where
        # it keeps them (a task may outlive its caller: not then), else the process's.
        parent = self.parent
        sink = parent.nested if parent is not None and parent.state is not ENDED else None
        if sink is None:
            sink = process.marks
        if sink is not None:
            sink.append((self.started_us, spec.enter, now_us, label, self.nested))
        self.holds_lane = False  # first: an interrupt in between must not give it back twice
        spec.lanes.free.append((self.lane, now_us))  # giving the lane back, inlined
        self.error = error
        if self.process is not process:
            return  # begun before a fork: the parent stores it
        sampler = process.sampler
        if was is SESSION:
            sampler.finish(self.session, flush=False)  # type: ignore[arg-type]
        else:
            session = sampler.leave(self)
            if session is not None:
                sampler.finish(
                    session,
                    flush=False,
                    readings=self.setup.plan.by_probe(readings),
                    now=end_mono,
                    now_us=now_us,
                )
            else:
                setup = self.setup
                if setup.packs and error is None and self.tags is setup.tags:
                    start = self.start_readings[0]  # type: ignore[index]
                    end = readings[0]
                    if start is not FAILED and end is not FAILED:
                        packed = _packed.pack(process, self, start, end, end_mono - self.start_mono)
                        if packed is not None:
                            process.writer.put(packed)
                            return
                self.end_readings = readings
                self.end_mono = end_mono
        if self.setup.stores:
            process.writer.put(self)

    def _end_own_span(self, span: Any, readings: tuple[Any, ...] | None, error: Any) -> None:
        """Put the call's figures on its own span (``spans="calls"``) and end it."""
        start = self.start_readings
        if readings is not None and start is not None:
            elapsed = _monotonic() - self.start_mono
            _spans.add_figures(span, self.setup.snapshot, start, readings, elapsed, add=False)
        _spans.end_call_span(span, self.span_token, error, self.end_us * 1000)
        self.span_token = None

    def build(self) -> Result:
        """The finished result, with its meta data (runs on the writer thread): the
        call's record as a result, with the marks of the calls made inside it."""
        return self.record().to_result(flatten(self.nested) if self.nested else ())

    def record(self) -> CallRecord:
        """The finished call as a compact record (runs on the writer thread)."""
        parent = self.parent
        session = self.session
        return call_record(
            self.spec,
            self.setup,
            _process.current().token,
            self.number,
            self.lane,
            self.started_us,
            self.end_us,
            self.tags,
            self.error,
            parent.number if parent is not None and parent.process is self.process else None,
            self.start_readings,
            self.end_readings,
            0.0 if session is not None else self.end_mono - self.start_mono,
            session,
        )


#: Readings at most this old (seconds) are shared by the end of one call and the start
#: of the next; in tight loops this halves the probe reads per call.
SHARE_READINGS_S = 50e-6


def decorate(
    func: F,
    *,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tag_args: Iterable[str] | Mapping[str, Callable[[Any], Any]] = (),
) -> F:
    """Wrap ``func`` so that each call is measured (see :func:`measured`)."""
    spec = _Spec(func, name, tags, tag_args)
    target = getattr(func, "__func__", func)
    if inspect.isasyncgenfunction(target):
        wrapper = _wrappers.async_generator_wrapper(spec, target, _active)
    elif inspect.iscoroutinefunction(target):
        wrapper = _wrappers.coroutine_wrapper(spec, target)
    elif inspect.isgeneratorfunction(target):
        wrapper = _wrappers.generator_wrapper(spec, target, _active)
    else:
        return _plain(func, spec)
    return MeasuredFunction(func, wrapper, spec)  # type: ignore[return-value]


def _plain(func: Any, spec: _Spec) -> Any:
    """A plain function that measures each call of ``func``; classmethod and
    staticmethod objects come back as such, around one. Callables that are not
    Python functions (a bound method, an ``lru_cache`` or ``partial`` object, a
    class, a builtin) get a transparent proxy instead, which keeps their
    attributes (``cache_info()``, ``func``, ``isinstance()`` checks)."""
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(_plain(func.__func__, spec))
    measured_function = (
        _wrappers.exact_wrapper(spec, func) if type(func) is types.FunctionType else None
    )
    if measured_function is None:
        return MeasuredFunction(func, _wrappers.proxy_wrapper(spec, func), spec)
    functools.update_wrapper(measured_function, func)
    vars(measured_function)[_SPEC] = spec
    vars(measured_function)["uninstrument"] = functools.partial(_original, func)
    return measured_function


#: The attribute of a measured plain function that holds its spec.
_SPEC = "_multimeter_spec"


def _original(func: Any) -> Any:
    """The original function (nothing was patched in place)."""
    return func


def _by_reference(module: str, qualname: str) -> Any:
    """What ``module.qualname`` names now (how a pickled function is found again)."""
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


class _BoundMeasuredFunction(wrapt.BoundFunctionWrapper):
    """A measured method as got from an instance or a class; pickles and copies like
    the plain method: from an instance by the instance and the name, from the class
    (methods, classmethods, staticmethods) by the class and the name."""

    def _source(self) -> Any:
        instance = self._self_instance
        return instance if instance is not None else self._self_owner

    def __reduce_ex__(self, protocol: Any) -> Any:
        return getattr, (self._source(), self.__name__)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        if self._self_instance is None:
            return self  # from the class: a function, as copy treats functions
        return getattr(copy.deepcopy(self._self_instance, memo), self.__name__)


class MeasuredFunction(wrapt.FunctionWrapper):
    """A function whose calls are measured; a transparent proxy of the original.

    It pickles like the function it wraps, by reference (module and qualified
    name), and unpickles to whatever that name holds: the measured function
    where it replaced the original (``@measured``, ``instrument(module)``).
    ``copy.copy()`` and ``copy.deepcopy()`` return it unchanged, as for a function.
    """

    __bound_function_wrapper__ = _BoundMeasuredFunction

    def __init__(self, wrapped: Any, wrapper: Any, spec: _Spec) -> None:
        super().__init__(wrapped, wrapper)
        self._self_multimeter_spec = spec

    def uninstrument(self) -> Any:
        """The original function (nothing was patched in place)."""
        return self.__wrapped__

    def __reduce_ex__(self, protocol: Any) -> Any:
        module, qualname = self.__module__, self.__qualname__
        try:
            found = _by_reference(module, qualname)
        except (ImportError, AttributeError):
            found = None
        if found is not self and found is not self.__wrapped__:
            import pickle

            raise pickle.PicklingError(
                f"Can't pickle {self.__wrapped__!r}: it's not found as {module}.{qualname}"
            )
        return _by_reference, (module, qualname)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


def is_measured(obj: Any) -> bool:
    """Whether ``obj`` (or the function inside a classmethod/staticmethod) is measured."""
    if isinstance(obj, MeasuredFunction):
        return True
    inner = getattr(obj, "__func__", obj)
    if isinstance(inner, MeasuredFunction):
        return True
    return isinstance(inner, types.FunctionType) and _SPEC in vars(inner)


@overload
def measured(func: F, /) -> F: ...


@overload
def measured(
    *,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tag_args: Iterable[str] | Mapping[str, Callable[[Any], Any]] = (),
) -> Callable[[F], F]: ...


def measured(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tag_args: Iterable[str] | Mapping[str, Callable[[Any], Any]] = (),
) -> Any:
    """Measure every call of the decorated function as its own measurement.

    Use bare (``@measured``) or with options (``@measured(tags={"stage": "etl"})``).
    Works on functions, methods, classmethods, staticmethods, ``async def``
    functions (the measurement spans the awaited execution), generators and
    async generators (from the first iteration to exhaustion or close).
    Return values, exceptions, signature, ``__name__``, ``__doc__`` and
    ``__wrapped__`` are preserved; measuring errors are logged, never raised.

    Args:
        name: The measurement's name; default: the function's ``__qualname__``
            without its ``<locals>.`` part (``Loader.load``).
        tags: Tags for every call; they override the global tags.
        tag_args: Parameter names whose values become tags (``str()``, cut to
            200 characters), or a mapping of names to converters.

    Raises:
        ValueError: when ``tag_args`` names a parameter the function does not
            have, or ``tags`` cannot be stored.
    """
    if func is not None:
        return decorate(func, name=name, tags=tags, tag_args=tag_args)
    _check_name(name)

    def decorator(target: F) -> F:
        return decorate(target, name=name, tags=tags, tag_args=tag_args)

    return decorator
