"""The code that runs around each measured call, one template per kind of function.

Each template is a factory: it takes what the wrapper needs (the function's
spec, the context variable of active calls) into its closure and returns the
wrapper, relocated by :func:`multimeter._frames.relocate` so that its frames
look like the wrapped function's. That is why the wrappers read no global
name: builtins included, everything comes from the closure.

- :func:`exact_wrapper`: a plain function with the wrapped function's own
  parameters. Called from Python it costs one frame, and one recursion-limit
  unit, per call.
- :func:`proxy_wrapper`: for ``wrapt.FunctionWrapper`` around callables that
  are not Python functions (or whose parameters cannot be copied).
- :func:`coroutine_wrapper`, :func:`generator_wrapper`,
  :func:`async_generator_wrapper`: ``wrapper(wrapped, instance, args, kwargs)``
  for ``wrapt.FunctionWrapper``, which keeps ``inspect.iscoroutinefunction()``
  and friends true and makes the coroutine or generator at the call (bad
  arguments raise ``TypeError`` there, as without measuring).

The protocol of a call (``spec.begin()`` gives ``None`` or a call;
``call.end(error)`` never raises but a ``KeyboardInterrupt``; ``call.abandon()``
leaves nothing behind) is ``multimeter._measured``'s.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from multimeter._frames import relocate


def coroutine_wrapper(spec: Any, target: Any) -> Callable[..., Any]:
    """The wrapper of an ``async def`` function: measures from the first step to the end."""
    begin = spec.begin
    recursion_error = RecursionError
    base_exception = BaseException
    attribute_error = AttributeError
    type_error = TypeError

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Made at the call, as without measuring: bad arguments raise TypeError here.
        coroutine = wrapped(*args, **kwargs)

        async def measured_call() -> Any:
            try:
                call = begin(instance, args, kwargs)
            except recursion_error:  # the stack is full: run it unmeasured
                call = None
            if call is None:
                return await coroutine
            try:
                value = await coroutine
            except base_exception as error:
                call.end(error)
                raise
            try:
                call.end(None)
            except base_exception:  # a KeyboardInterrupt at the very start of end()
                call.abandon()
                raise
            return value

        outer: Any = measured_call()
        try:  # read as the plain coroutine
            outer.__name__ = coroutine.__name__
            outer.__qualname__ = coroutine.__qualname__
        except (attribute_error, type_error):
            pass
        return outer

    return relocate(wrapper, target)  # type: ignore[arg-type]


def generator_wrapper(spec: Any, target: Any, active: ContextVar[Any]) -> Callable[..., Any]:
    """The wrapper of a generator function: measures from the first step to
    exhaustion or close; the call is active only while the generator runs, so
    marks of measured calls its consumer makes meanwhile do not go to it."""
    begin = spec.begin
    recursion_error = RecursionError
    set_active = active.set
    reset_active = active.reset
    stop_iteration = StopIteration
    generator_exit = GeneratorExit
    base_exception = BaseException
    attribute_error = AttributeError
    type_error = TypeError

    def run(generator: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            call = begin(instance, args, kwargs)
        except recursion_error:  # the stack is full: run it unmeasured
            call = None
        if call is None:
            return (yield from generator)
        reset_active(call.token)  # between items the consumer's context is its own
        step, argument = generator.send, None
        while True:
            token = set_active(call)
            try:
                item = step(argument)
            except stop_iteration as stop:
                reset_active(token)
                try:
                    call.end(None)
                except base_exception:  # a KeyboardInterrupt at the very start of end()
                    call.abandon()
                    raise
                return stop.value
            except base_exception as error:
                reset_active(token)
                call.end(error)
                raise
            reset_active(token)
            try:
                argument = yield item
                step = generator.send
            except generator_exit:  # closed by its consumer (or the collector): a normal end
                # The context variable is left alone here: the garbage collector closes
                # abandoned generators wherever it happens to run, even in the middle of
                # another set() of the same variable (CPython crashed there).
                try:
                    generator.close()
                finally:
                    call.end(None)
                raise
            except base_exception as thrown:  # forwarded into the generator
                step, argument = generator.throw, thrown

    run = relocate(run, target)  # type: ignore[arg-type]

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Made at the call, as without measuring: bad arguments raise TypeError here.
        generator = wrapped(*args, **kwargs)
        made = run(generator, instance, args, kwargs)
        try:  # its name and qualified name (stores, not calls: a full stack cannot fail them)
            made.__name__ = generator.__name__
            made.__qualname__ = generator.__qualname__
        except (attribute_error, type_error):
            pass
        return made

    return relocate(wrapper, target)  # type: ignore[arg-type]


def async_generator_wrapper(spec: Any, target: Any, active: ContextVar[Any]) -> Callable[..., Any]:
    """Like :func:`generator_wrapper`, for async generator functions."""
    begin = spec.begin
    recursion_error = RecursionError
    set_active = active.set
    reset_active = active.reset
    stop_async_iteration = StopAsyncIteration
    generator_exit = GeneratorExit
    base_exception = BaseException
    is_instance = isinstance
    attribute_error = AttributeError
    type_error = TypeError

    async def run(generator: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            call = begin(instance, args, kwargs)
        except recursion_error:  # the stack is full: run it unmeasured
            call = None
        if call is not None:
            reset_active(call.token)
        error = None
        step, argument = generator.asend, None
        try:
            while True:
                token = set_active(call) if call is not None else None
                try:
                    item = await step(argument)
                except stop_async_iteration:
                    return
                finally:
                    if token is not None:
                        reset_active(token)
                try:
                    argument = yield item
                    step = generator.asend
                except generator_exit:
                    await generator.aclose()
                    raise
                except base_exception as thrown:  # forwarded into the generator
                    step, argument = generator.athrow, thrown
        except base_exception as raised:
            error = raised
            raise
        finally:
            if call is not None:
                call.end(None if is_instance(error, generator_exit) else error)

    run = relocate(run, target)  # type: ignore[arg-type]

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Made at the call, as without measuring: bad arguments raise TypeError here.
        generator = wrapped(*args, **kwargs)
        made = run(generator, instance, args, kwargs)
        try:  # its name and qualified name (stores, not calls: a full stack cannot fail them)
            made.__name__ = generator.__name__
            made.__qualname__ = generator.__qualname__
        except (attribute_error, type_error):
            pass
        return made

    return relocate(wrapper, target)  # type: ignore[arg-type]


# -- plain functions: a wrapper with the wrapped function's own parameters ----------------

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_PREFIX = "_mm_"


def exact_wrapper(spec: Any, wrapped: types.FunctionType) -> Callable[..., Any] | None:
    """A plain function measuring each call of ``wrapped``, with ``wrapped``'s own
    parameters (names, kinds, defaults); ``None`` where that cannot be made.

    The wrapper then reads as the function to ``inspect.getfullargspec()``,
    ``__code__``, ``__defaults__`` and code that counts arguments; bad arguments
    raise the plain function's own ``TypeError`` at the call; and without
    ``*args``/``**kwargs`` its call into the function is an ordinary call, which
    CPython runs without a C-level recursion (deep recursion with a raised
    recursion limit works as plainly).
    """
    code = wrapped.__code__
    positional = code.co_argcount
    keyword_only = code.co_kwonlyargcount
    star = bool(code.co_flags & _CO_VARARGS)
    double_star = bool(code.co_flags & _CO_VARKEYWORDS)
    names = code.co_varnames[: positional + keyword_only + star + double_star]
    if any(name.startswith(_PREFIX) for name in names):
        return None
    defaults = wrapped.__defaults__ or ()
    keyword_defaults = wrapped.__kwdefaults__ or {}
    if len(defaults) > positional or not isinstance(keyword_defaults, dict):
        return None  # set by hand to something no def statement makes
    shape = (
        names,
        code.co_posonlyargcount,
        positional,
        keyword_only,
        star,
        double_star,
        len(defaults),
        tuple(n for n in names[positional : positional + keyword_only] if n in keyword_defaults),
        bool(spec.arg_tags),
    )
    factory_code = _compile_factory(*shape)
    factory = types.FunctionType(factory_code, {"__builtins__": {}})
    kw_values = [keyword_defaults[name] for name in shape[7]]
    wrapper = factory(spec.begin, wrapped, RecursionError, BaseException, *defaults, *kw_values)
    return relocate(wrapper, wrapped)


@functools.cache  # one per shape of parameters
def _compile_factory(
    names: tuple[str, ...],
    positional_only: int,
    positional: int,
    keyword_only: int,
    star: bool,
    double_star: bool,
    default_count: int,
    keyword_defaults: tuple[str, ...],
    with_arguments: bool,
) -> types.CodeType:
    """The code of ``factory(begin, wrapped, RecursionError, BaseException,
    *defaults, *keyword_defaults) -> wrapper`` for one shape of parameters."""
    positional_names = names[:positional]
    keyword_names = names[positional : positional + keyword_only]
    rest = names[positional + keyword_only :]
    star_name = rest[0] if star else None
    double_star_name = rest[-1] if double_star else None
    first_default = positional - default_count
    parameters = []
    for index, name in enumerate(positional_names):
        parameters.append(f"{name}={_PREFIX}d{index}" if index >= first_default else name)
        if index + 1 == positional_only:
            parameters.append("/")
    if star_name:
        parameters.append(f"*{star_name}")
    elif keyword_names:
        parameters.append("*")
    for name in keyword_names:
        has_default = name in keyword_defaults
        parameters.append(
            f"{name}={_PREFIX}k{keyword_defaults.index(name)}" if has_default else name
        )
    if double_star_name:
        parameters.append(f"**{double_star_name}")
    call = [*positional_names]
    if star_name:
        call.append(f"*{star_name}")
    call += [f"{name}={name}" for name in keyword_names]
    if double_star_name:
        call.append(f"**{double_star_name}")
    if with_arguments:  # for tag_args: the positional values, and the keyword ones by name
        values = [*positional_names, *([f"*{star_name}"] if star_name else [])]
        begin_args = f"({', '.join(values)}{',' if len(values) == 1 else ''})"
        by_name = [f"{name!r}: {name}" for name in keyword_names]
        if double_star_name:
            by_name.append(f"**{double_star_name}")
        begin_kwargs = "{" + ", ".join(by_name) + "}"
    else:
        begin_args, begin_kwargs = "()", "None"
    factory_parameters = [
        f"{_PREFIX}begin",
        f"{_PREFIX}wrapped",
        f"{_PREFIX}RecursionError",
        f"{_PREFIX}BaseException",
        *(f"{_PREFIX}d{i}" for i in range(first_default, positional)),
        *(f"{_PREFIX}k{i}" for i in range(len(keyword_defaults))),
    ]
    arguments = ", ".join(call)
    source = f"""\
def {_PREFIX}factory({", ".join(factory_parameters)}):
    def wrapper({", ".join(parameters)}):
        try:
            {_PREFIX}call = {_PREFIX}begin(None, {begin_args}, {begin_kwargs})
        except {_PREFIX}RecursionError:
            {_PREFIX}call = None
        if {_PREFIX}call is None:
            return {_PREFIX}wrapped({arguments})
        try:
            {_PREFIX}value = {_PREFIX}wrapped({arguments})
        except {_PREFIX}BaseException as {_PREFIX}error:
            try:
                {_PREFIX}call.end({_PREFIX}error)
            except {_PREFIX}RecursionError:
                pass
            raise
        try:
            {_PREFIX}call.end(None)
        except {_PREFIX}BaseException:
            {_PREFIX}call.abandon()
            raise
        return {_PREFIX}value
    return wrapper
"""
    module_code = compile(source, "<multimeter wrapper>", "exec")
    return next(c for c in module_code.co_consts if isinstance(c, types.CodeType))


def proxy_wrapper(spec: Any, target: Any) -> Callable[..., Any]:
    """The wrapper of a callable that is not a Python function, for
    ``wrapt.FunctionWrapper`` (which keeps the callable's attributes)."""
    begin = spec.begin
    recursion_error = RecursionError
    base_exception = BaseException

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            call = begin(instance, args, kwargs)
        except recursion_error:  # the stack is full: the call itself will say so, unmeasured
            call = None
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            value = wrapped(*args, **kwargs)
        except base_exception as error:
            try:  # noqa: SIM105 - contextlib would be a global name
                call.end(error)
            except recursion_error:  # no room on the stack even to end: the error goes on
                pass
            raise
        try:
            call.end(None)
        except base_exception:  # a KeyboardInterrupt at the very start of end()
            call.abandon()
            raise
        return value

    return relocate(wrapper, _unwrapped(target))  # type: ignore[arg-type]


def _unwrapped(target: Any) -> Any:
    """The Python function inside ``target`` (through ``__wrapped__``), or ``target``."""
    seen = 0
    while not isinstance(getattr(target, "__func__", target), types.FunctionType) and seen < 20:
        inner = getattr(target, "__wrapped__", None) or getattr(target, "func", None)
        if inner is None:
            break
        target, seen = inner, seen + 1
    return target
