"""The code that runs around each measured call, one template per kind of function.

Each template is a factory: it takes what the wrapper needs (the function's
spec, the context variable of active calls) into its closure and returns the
wrapper, relocated by :func:`multimeter._frames.relocate` so that its frames
look like the wrapped function's. That is why the wrappers read no global
name: builtins included, everything comes from the closure.

- :func:`plain_wrapper`: a plain function ``wrapper(*args, **kwargs)``. Called
  from Python it costs one frame, and one recursion-limit unit, per call.
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

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from multimeter._frames import relocate


def plain_wrapper(spec: Any, wrapped: Any) -> Callable[..., Any]:
    """The wrapper of a plain function (or method): measures each call."""
    begin = spec.begin
    recursion_error = RecursionError
    base_exception = BaseException

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            call = begin(None, args, kwargs)
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

    return relocate(wrapper, wrapped)  # type: ignore[arg-type]


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


def _named_like(made: Any, original: Any) -> Any:
    """``made`` (a generator) with ``original``'s name and qualified name."""
    try:
        made.__name__ = original.__name__
        made.__qualname__ = original.__qualname__
    except (AttributeError, TypeError):
        pass
    return made


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
    named_like = _named_like

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
            except generator_exit:  # closed by its consumer: a normal end
                token = set_active(call)
                try:
                    generator.close()
                finally:
                    reset_active(token)
                    call.end(None)
                raise
            except base_exception as thrown:  # forwarded into the generator
                step, argument = generator.throw, thrown

    run = relocate(run, target)  # type: ignore[arg-type]

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Made at the call, as without measuring: bad arguments raise TypeError here.
        generator = wrapped(*args, **kwargs)
        return named_like(run(generator, instance, args, kwargs), generator)

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
    named_like = _named_like

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
        return named_like(run(generator, instance, args, kwargs), generator)

    return relocate(wrapper, target)  # type: ignore[arg-type]
