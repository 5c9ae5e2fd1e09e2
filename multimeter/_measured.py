"""``@measured``: every call of a function is its own measurement."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import random
import secrets
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar, overload

import wrapt

from multimeter import _config
from multimeter._log import warn_once
from multimeter._meta import process_meta_data
from multimeter._sampler import Session, default_sampler
from multimeter._tags import normalize_tags
from multimeter._writer import writer
from multimeter.result import Result, us_to_datetime
from multimeter.storages.dummy import DummyStorage

F = TypeVar("F", bound=Callable[..., Any])

#: Tag values taken from arguments are cut to this many characters.
MAX_TAG_LENGTH = 200

_calls = itertools.count(1)
_active: ContextVar[tuple[_Call, ...]] = ContextVar("multimeter_active", default=())
_time_ns = __import__("time").time_ns
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {
    f"{p}{n}" for p in ("com", "lpt") for n in range(10)
}


def _new_process_token() -> str:
    return f"{os.getpid()}-{secrets.token_hex(2)}"


_process_token = _new_process_token()


def _refresh_process_token() -> None:
    global _process_token
    _process_token = _new_process_token()


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
        self._tags_for: tuple[object, dict[str, str]] | None = None

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

    def tags_for(self, config: _config.Config) -> dict[str, str]:
        """Global tags overridden by the decorator's, cached per configuration."""
        cached = self._tags_for
        if cached is not None and cached[0] is config:
            return cached[1]
        merged = {**config.tags, **self.tags}
        self._tags_for = (config, merged)
        return merged

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
    """One measured call: what the writer needs to build its result."""

    __slots__ = (
        "error",
        "pid",
        "result",
        "session",
        "spec",
        "stack",
        "started_us",
        "storage",
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
        meter = config.multimeter
        tags = spec.tags_for(config)
        if spec.arg_tags:
            tags = {**tags, **spec.argument_tags(instance, args, kwargs)}
        self.spec = spec
        self.storage = meter._storage
        self.error: BaseException | None = None
        self.pid = os.getpid()
        identifier = f"{spec.prefix}{_process_token}-{next(_calls)}"
        result = Result._prepared(identifier, meter._current_schema, tags, {})
        self.result = result
        self.session = session = Session(result, (), meter._cycle_time, meter._current_plan)
        default_sampler().begin(session)
        self.started_us = now_us = _time_ns() // 1000
        result._marks.append((now_us, spec.enter))
        self.stack = stack = _active.get()
        for outer in stack:
            outer.result._marks.append((now_us, spec.enter))
        self.token = _active.set((*stack, self))

    def end(self, error: BaseException | None) -> None:
        """Stop measuring and hand the result to the writer; never raises."""
        try:
            self._end(error)
        except Exception as failure:  # noqa: BLE001 - measuring must never break the call
            warn_once(
                ("end", type(failure)),
                "measuring a call failed",
                function=self.spec.name,
                error=repr(failure),
            )

    def _end(self, error: BaseException | None) -> None:
        now_us = _time_ns() // 1000
        label = (
            self.spec.exit if error is None else f"{self.spec.name}:raise {type(error).__name__}"
        )
        self.result._marks.append((now_us, label))
        # Ended in another context, or already reset (generators): nothing to undo.
        with contextlib.suppress(ValueError, RuntimeError):
            _active.reset(self.token)
        for outer in self.stack:
            if outer.session.active:
                outer.result._marks.append((now_us, label))
        self.error = error
        default_sampler().finish(self.session, flush=False)
        if os.getpid() != self.pid or isinstance(self.storage, DummyStorage):
            return  # begun before a fork (the parent stores it), or storing is off
        writer().put(self)

    def build(self) -> Result:
        """The finished result, with its meta data (runs on the writer thread)."""
        result = self.result
        result._sync()
        result._sync_hook = None
        result.tags = dict(result.tags)
        meta = process_meta_data()
        meta.update(self.spec.meta)
        meta["started"] = us_to_datetime(self.started_us).isoformat()
        if self.error is None:
            meta["outcome"] = "ok"
        else:
            meta["outcome"] = "raise"
            meta["exception_type"] = type(self.error).__qualname__
            meta["exception_module"] = type(self.error).__module__
        result.meta_data = meta
        return result


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
