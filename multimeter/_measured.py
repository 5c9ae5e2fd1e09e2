"""``@measured``: every call of a function is its own measurement."""

from __future__ import annotations

import inspect
import itertools
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar, overload

import wrapt

from multimeter import _config
from multimeter import _sampler as _sampler_module
from multimeter._log import warn_once
from multimeter._meta import process_meta_data
from multimeter._sampler import Session, read_probes
from multimeter._tags import normalize_tags
from multimeter._writer import writer
from multimeter.result import Result, us_to_datetime
from multimeter.storages.dummy import DummyStorage

F = TypeVar("F", bound=Callable[..., Any])
# (tags, storage, schema, probe plan, cycle time, whether results are stored)
_Context = tuple[dict[str, str], Any, Any, Any, float, bool]

#: Tag values taken from arguments are cut to this many characters.
MAX_TAG_LENGTH = 200

_calls = itertools.count(1)
_active: ContextVar[tuple[_Call, ...]] = ContextVar("multimeter_active", default=())
_time_ns = time.time_ns
_monotonic = time.monotonic
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {
    f"{p}{n}" for p in ("com", "lpt") for n in range(10)
}


def _new_process_token() -> str:
    return f"{os.getpid()}-{os.urandom(2).hex()}"


_process_token = _new_process_token()
_pid = os.getpid()


def _refresh_process_token() -> None:
    global _process_token, _pid
    _process_token = _new_process_token()
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_refresh_process_token)


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
    return safe


def _tag_text(value: Any, convert: Callable[[Any], Any] | None, name: str) -> str:
    try:
        text = str(convert(value) if convert is not None else value)
    except Exception as error:  # noqa: BLE001 - a converter must not break the call
        warn_once(
            ("tag_arg", name, type(error)), "tag_args converter failed", tag=name, error=repr(error)
        )
        return "<error>"
    text = "".join(" " if ord(c) < 32 or c == "\x7f" else c for c in text)
    return text[:MAX_TAG_LENGTH]


class _ArgTag:
    __slots__ = ("convert", "default", "name", "position")

    def __init__(self, name: str, position: int | None, default: Any, convert: Any) -> None:
        self.name = name
        self.position = position
        self.default = default
        self.convert = convert


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
        self.name = name or default_name(target)
        self.prefix = safe_prefix(self.name) + "-"
        self.tags = normalize_tags(tags)
        self.enter = f"{self.name}:enter"
        self.exit = f"{self.name}:exit"
        self.meta = {
            "function": self.name,
            "module": str(getattr(target, "__module__", "")),
            "qualname": str(getattr(target, "__qualname__", self.name)),
        }
        self.arg_tags = self._plan_tag_args(target, tag_args)
        self._context: tuple[object, _Context] | None = None
        self._base_meta: tuple[int, dict[str, str]] | None = None

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
            plan.append(_ArgTag(name, position, parameter.default, convert))
        return tuple(plan)

    def base_meta(self) -> dict[str, str]:
        """A fresh copy of the process's and this function's meta data."""
        cached = self._base_meta
        if cached is None or cached[0] != _pid:
            meta = process_meta_data()
            meta.update(self.meta)
            cached = self._base_meta = (_pid, meta)
        return dict(cached[1])

    def context_for(self, config: _config.Config) -> _Context:
        """What every call under ``config`` shares, computed once per configuration."""
        cached = self._context
        if cached is not None and cached[0] is config:
            return cached[1]
        meter = config.multimeter
        context = (
            {**config.tags, **self.tags},
            meter._storage,
            meter._current_schema,
            meter._current_plan,
            meter._cycle_time,
            not isinstance(meter._storage, DummyStorage),
        )
        self._context = (config, context)
        return context

    def argument_tags(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, str]:
        """Tags from the call's arguments (positional, keyword or default)."""
        shift = 1 if instance is not None else 0
        tags = {}
        for arg in self.arg_tags:
            if arg.name in kwargs:
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
        """Start measuring a call, or ``None`` when it is not to be measured."""
        config = _config.current()
        if not config.enabled:
            return None
        rate = config.sample_rate
        if rate < 1.0 and random.random() >= rate:
            return None
        try:
            return _Call(self, config, instance, args, kwargs)
        except Exception as error:  # noqa: BLE001 - measuring must never break the call
            warn_once(
                ("begin", type(error)),
                "measuring a call failed",
                function=self.name,
                error=repr(error),
            )
            return None


class _Call:
    """One measured call: what the sampler and the writer need.

    Short calls cost no session: the call keeps its start and end readings and
    the writer derives the single point from them. A call still running half a
    cycle after its start is promoted by the sampler to a full session with
    points at every tick (see :meth:`Sampler.enter`).
    """

    __slots__ = (
        "cycle",
        "end_mono",
        "end_readings",
        "end_us",
        "error",
        "marks",
        "number",
        "open",
        "pid",
        "plan",
        "schema",
        "session",
        "spec",
        "stack",
        "start_mono",
        "start_readings",
        "started_us",
        "storage",
        "store",
        "tags",
        "token",
    )

    def __init__(
        self,
        spec: _Spec,
        config: _config.Config,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        tags, self.storage, self.schema, plan, self.cycle, self.store = spec.context_for(config)
        if spec.arg_tags:
            tags = {**tags, **spec.argument_tags(instance, args, kwargs)}
        self.tags = tags
        self.spec = spec
        self.plan = plan
        self.number = (_process_token, next(_calls))
        self.error: BaseException | None = None
        self.session: Session | None = None
        self.end_readings: dict[int, Any] | None = None
        self.pid = _pid
        self.open = True
        self.started_us = now_us = _time_ns() // 1000
        self.marks = [(now_us, spec.enter)]
        self.stack = stack = _active.get()
        for outer in stack:
            outer.marks.append((now_us, spec.enter))
        self.token = _active.set((*stack, self))
        # Registering with the sampler comes last: nothing after it can fail.
        try:
            self._register(plan)
        except BaseException:
            _active.reset(self.token)
            raise

    def _register(self, plan: Any) -> None:
        sampler = _sampler_module._default
        if plan.tracked:  # probes that need start/end hooks or per-tick sampling
            self.start_readings = None
            self.promote()
            sampler.begin(self.session)  # type: ignore[arg-type]
        else:
            # A reading taken moments ago (the end of the previous call) serves as
            # this call's start: the interval then begins at that reading.
            now = _monotonic()
            shared = _last_reading
            if shared[0] is plan and now - shared[1] <= SHARE_READINGS_S:
                self.start_readings, self.start_mono = shared[2], shared[1]
            else:
                self.start_readings = read_probes(plan.cumulative)
                self.start_mono = _monotonic()
            sampler.enter(self)

    @property
    def identifier(self) -> str:
        """``<name>-<pid>-<random>-<n>``."""
        token, number = self.number
        return f"{self.spec.prefix}{token}-{number}"

    def promote(self) -> Session:
        """The session that carries on this call (the sampler calls this under its lock)."""
        result = Result._prepared(self.identifier, self.schema, self.tags, {})
        session = Session(result, (), self.cycle, self.plan)
        if self.start_readings is not None:
            session.start_from(self.start_readings, self.start_mono)
        self.session = session
        return session

    def end(self, error: BaseException | None) -> None:
        """Stop measuring and hand the call to the writer; never raises."""
        try:
            self._end(error)
        except Exception as failure:  # noqa: BLE001 - measuring must never break the call
            self._failed(failure)

    def _failed(self, failure: Exception) -> None:
        warn_once(
            ("end", type(failure)),
            "measuring a call failed",
            function=self.spec.name,
            error=repr(failure),
        )

    def _end(self, error: BaseException | None) -> None:
        sampler = _sampler_module._default
        global _last_reading
        if self.start_readings is not None:
            readings = read_probes(self.plan.cumulative)
            end_mono = _monotonic()
            _last_reading = (self.plan, end_mono, readings)
        now_us = _time_ns() // 1000
        label = (
            self.spec.exit if error is None else f"{self.spec.name}:raise {type(error).__name__}"
        )
        self.marks.append((now_us, label))
        self.open = False
        try:  # noqa: SIM105 - a try is free, contextlib.suppress() is not
            _active.reset(self.token)
        except (ValueError, RuntimeError):
            pass  # ended in another context, or already reset (generators): nothing to undo
        for outer in self.stack:
            if outer.open:
                outer.marks.append((now_us, label))
        self.error = error
        if self.start_readings is None:
            sampler.finish(self.session, flush=False)  # type: ignore[arg-type]
        else:
            session = sampler.leave(self)
            if session is not None:
                sampler.finish(session, flush=False, readings=readings, now=end_mono, now_us=now_us)
            else:
                self.end_readings = readings
                self.end_mono = end_mono
                self.end_us = now_us
        if _pid != self.pid or not self.store:
            return  # begun before a fork (the parent stores it), or storing is off
        writer().put(self)

    def build(self) -> Result:
        """The finished result, with its meta data (runs on the writer thread)."""
        session = self.session
        if session is None:  # never promoted: one point, from the start to the end readings
            session = self.promote()
            session.record(self.end_mono, self.end_us, self.end_readings or {}, {})
        result = session.result
        session.flush()
        result._sync_hook = None
        result.tags = dict(self.tags)
        result._marks = self.marks
        meta = self.spec.base_meta()
        meta["started"] = us_to_datetime(self.started_us).isoformat()
        if self.error is None:
            meta["outcome"] = "ok"
        else:
            meta["outcome"] = "raise"
            meta["exception_type"] = type(self.error).__qualname__
            meta["exception_module"] = type(self.error).__module__
        result.meta_data = meta
        return result


#: Readings at most this old (seconds) are shared by the end of one call and the start
#: of the next; in tight loops this halves the probe reads per call.
SHARE_READINGS_S = 50e-6
_last_reading: tuple[Any, float, dict[int, Any]] = (None, 0.0, {})


def _sync_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = spec.begin(instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            value = wrapped(*args, **kwargs)
        except BaseException as error:
            call.end(error)
            raise
        call.end(None)
        return value

    return wrapper


def _async_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async def measured_call() -> Any:
            call = spec.begin(instance, args, kwargs)
            if call is None:
                return await wrapped(*args, **kwargs)
            try:
                value = await wrapped(*args, **kwargs)
            except BaseException as error:
                call.end(error)
                raise
            call.end(None)
            return value

        return measured_call()

    return wrapper


def _generator_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        def measured_generator() -> Any:
            generator = wrapped(*args, **kwargs)
            call = spec.begin(instance, args, kwargs)
            if call is None:
                return (yield from generator)
            _active.reset(call.token)  # a generator's frames run in its consumer's context
            try:
                value = yield from generator
            except GeneratorExit:  # closed by its consumer: a normal end
                call.end(None)
                raise
            except BaseException as error:
                call.end(error)
                raise
            call.end(None)
            return value

        return measured_generator()

    return wrapper


def _async_generator_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async def measured_async_generator() -> Any:
            generator = wrapped(*args, **kwargs)
            call = spec.begin(instance, args, kwargs)
            if call is not None:
                _active.reset(call.token)
            error: BaseException | None = None
            try:
                try:
                    item = await generator.__anext__()
                except StopAsyncIteration:
                    return
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await generator.aclose()
                        raise
                    except BaseException as thrown:  # noqa: BLE001 - forwarded into the generator
                        try:
                            item = await generator.athrow(thrown)
                        except StopAsyncIteration:
                            return
                    else:
                        try:
                            item = await generator.asend(sent)
                        except StopAsyncIteration:
                            return
            except BaseException as raised:
                error = raised
                raise
            finally:
                if call is not None:
                    call.end(error if not isinstance(error, GeneratorExit) else None)

        return measured_async_generator()

    return wrapper


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
        wrapper = _async_generator_wrapper(spec)
    elif inspect.iscoroutinefunction(target):
        wrapper = _async_wrapper(spec)
    elif inspect.isgeneratorfunction(target):
        wrapper = _generator_wrapper(spec)
    else:
        wrapper = _sync_wrapper(spec)
    return MeasuredFunction(func, wrapper, spec)  # type: ignore[return-value]


class MeasuredFunction(wrapt.FunctionWrapper):
    """A function whose calls are measured; a transparent proxy of the original."""

    def __init__(self, wrapped: Any, wrapper: Any, spec: _Spec) -> None:
        super().__init__(wrapped, wrapper)
        self._self_multimeter_spec = spec

    def uninstrument(self) -> Any:
        """The original function (nothing was patched in place)."""
        return self.__wrapped__


def is_measured(obj: Any) -> bool:
    """Whether ``obj`` (or the function inside a classmethod/staticmethod) is measured."""
    return isinstance(obj, MeasuredFunction) or isinstance(
        getattr(obj, "__func__", None), MeasuredFunction
    )


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

    def decorator(target: F) -> F:
        return decorate(target, name=name, tags=tags, tag_args=tag_args)

    return decorator
