"""Measured code is invisible to code that looks at its caller's frame.

Libraries read their caller's frame: ``namedtuple()``, the functional ``Enum()``
API, ``attr.make_class()`` and ``typing.NewType()`` put the classes they make in
the caller's module; ``warnings`` and ``logging`` name the caller's module,
file and line. Called from a measured function, the caller frame is
multimeter's wrapper, which must read as the measured function's own module.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import pickle
import sys
import textwrap
import typing
import warnings

import attr
import pytest

import multimeter
from multimeter import _frames, _wrappers
from tests._programs import run_python


@pytest.fixture(autouse=True)
def _measuring(stored):
    return stored


@multimeter.measured
def caller_module() -> str:
    return sys._getframe(1).f_globals["__name__"]


@multimeter.measured
def make_types() -> tuple[typing.Any, ...]:
    point = collections.namedtuple("point", "x y")
    colour = enum.Enum("colour", "RED GREEN")
    made = attr.make_class("made", ["a", "b"])
    user_id = typing.NewType("user_id", int)
    return point, colour, made, user_id


def test_the_frame_above_a_measured_function_has_the_function_module_globals():
    assert __name__ == caller_module()


def test_classes_made_in_a_measured_function_belong_to_its_module_and_pickle(stored):
    point, colour, made, user_id = make_types()
    assert {__name__} == {point.__module__, colour.__module__, made.__module__, user_id.__module__}
    assert f"{__name__}.user_id" == repr(user_id)
    # pickling finds them by module and name (in a module that holds them)
    globals().update(point=point, colour=colour, made=made)
    assert point(1, 2) == pickle.loads(pickle.dumps(point(1, 2)))
    assert colour.RED is pickle.loads(pickle.dumps(colour.RED))
    assert made(1, 2) == pickle.loads(pickle.dumps(made(1, 2)))


def deprecated_helper() -> None:
    warnings.warn("use something else", DeprecationWarning, stacklevel=2)


@multimeter.measured
def uses_deprecated_helper() -> None:
    deprecated_helper()  # stacklevel=2 blames this line


@multimeter.measured
def warns_its_caller() -> None:
    warnings.warn("careful", UserWarning, stacklevel=2)


def test_a_warning_blames_the_measured_function_line_not_multimeter():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uses_deprecated_helper()
    assert __file__ == caught[0].filename
    line = uses_deprecated_helper.__wrapped__.__code__.co_firstlineno + 2
    assert line == caught[0].lineno


def test_warning_filters_by_module_match_the_measured_function_module():
    """stacklevel=2 inside a measured function lands on its wrapper, which reads as the
    function's own module and file (the decorator line): filters by module match it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=UserWarning, module=__name__)
        warns_its_caller()
    assert [] == caught
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warns_its_caller()
    assert __file__ == caught[0].filename
    assert "multimeter" not in caught[0].filename


@multimeter.measured
def logs_with_stacklevel(logger: logging.Logger) -> None:
    logger.warning("from inside", stacklevel=2)


def test_logging_with_stacklevel_names_the_measured_function_module_file(caplog):
    with caplog.at_level(logging.WARNING):
        logs_with_stacklevel(logging.getLogger("frames-test"))
    record = caplog.records[-1]
    assert __file__ == record.pathname
    assert "logs_with_stacklevel" == record.funcName


@multimeter.measured
async def async_caller_module() -> str:
    await asyncio.sleep(0)
    return sys._getframe(1).f_globals["__name__"]


@multimeter.measured
def generator_caller_module() -> typing.Iterator[str]:
    yield sys._getframe(1).f_globals["__name__"]


@multimeter.measured
async def async_generator_caller_module() -> typing.AsyncIterator[str]:
    yield sys._getframe(1).f_globals["__name__"]


def test_coroutines_and_generators_see_their_own_module_above_them_too():
    assert __name__ == asyncio.run(async_caller_module())
    assert [__name__] == list(generator_caller_module())

    async def first() -> str:
        async for name in async_generator_caller_module():
            return name
        return ""

    assert __name__ == asyncio.run(first())


def test_a_measured_generator_keeps_its_name_and_qualified_name():
    generator = generator_caller_module()
    assert "generator_caller_module" == generator.__name__
    assert "generator_caller_module" == generator.__qualname__
    assert repr(generator).startswith("<generator object generator_caller_module at ")
    agen = async_generator_caller_module()
    assert "async_generator_caller_module" == agen.__qualname__


def test_a_traceback_through_a_measured_function_shows_only_the_user_files(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import multimeter

            @multimeter.measured
            def fails():
                raise ValueError("no")

            fails()
            """
        )
    )
    done = run_python(script, env={"MULTIMETER_STORAGE": "none", "PATH": ""}, timeout=60)
    assert 1 == done.returncode
    assert "ValueError: no" in done.stderr
    assert "multimeter" not in done.stderr.replace("import multimeter", "").replace(
        "@multimeter.measured", ""
    )


def test_the_wrapper_templates_read_no_global_name():
    """They run with the wrapped module's globals, where a name may mean anything."""
    spec = type("Spec", (), {"begin": staticmethod(lambda *a: None), "arg_tags": ()})()

    def target() -> None: ...

    for wrapper in (
        _wrappers.exact_wrapper(spec, target),
        _wrappers.proxy_wrapper(spec, target),
        _wrappers.coroutine_wrapper(spec, target),
        _wrappers.generator_wrapper(spec, target, _frames_context()),
        _wrappers.async_generator_wrapper(spec, target, _frames_context()),
    ):
        assert [] == _frames.reads_globals(wrapper.__code__)


def _frames_context() -> typing.Any:
    from multimeter._measured import _active

    return _active


def test_a_module_that_shadows_builtins_still_gets_its_calls_measured(stored, tmp_path):
    module = tmp_path / "shadowing.py"
    module.write_text(
        "BaseException = RecursionError = None\n"
        "def work(x):\n    return x * 2\n"
        "def fails():\n    raise KeyError('k')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import shadowing

        handle = multimeter.instrument(shadowing)
        assert 4 == shadowing.work(2)
        with pytest.raises(KeyError):
            shadowing.fails()
        handle.uninstrument()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shadowing", None)
    assert multimeter.flush(10)
    assert ["ok", "raise"] == [r.meta_data["outcome"] for r in stored.results]


def _depth(function: typing.Callable[[int], int]) -> int:
    """The deepest recursion ``function`` reaches before RecursionError."""
    low, high = 1, sys.getrecursionlimit() + 10
    while low < high:
        middle = (low + high + 1) // 2
        try:
            function(middle)
            low = middle
        except RecursionError:
            high = middle - 1
    return low


def plain_descent(n: int) -> int:
    return 0 if n == 0 else 1 + plain_descent(n - 1)


@multimeter.measured
def measured_descent(n: int) -> int:
    return 0 if n == 0 else 1 + measured_descent(n - 1)


def test_a_measured_call_costs_at_most_two_recursion_units():
    """A recursive-descent parser reaches at least half the plain depth."""
    plain, measured = _depth(plain_descent), _depth(measured_descent)
    assert measured >= plain // 2 - 5, (plain, measured)


def test_recursion_error_never_comes_from_multimeter_code():
    """Whatever depth the stack is full at, the error comes from the user's code."""
    for limit_offset in range(0, 12):
        sys.setrecursionlimit(200 + limit_offset)
        try:
            with pytest.raises(RecursionError) as raised:
                measured_descent(10_000)
        finally:
            sys.setrecursionlimit(1000)
        innermost = raised.traceback[-1]
        assert "multimeter" not in str(innermost.path), innermost
        assert __file__ == str(innermost.path)


def test_overflowing_the_stack_again_and_again_leaks_nothing():
    """Each RecursionError cut a call short while it started: its lane (an InfluxDB
    tag) and its place as the active call must come back, or they pile up."""
    from multimeter import _measured

    multimeter.configure(storage=multimeter.DummyStorage())

    @multimeter.measured
    def down(n: int) -> int:
        return down(n + 1)

    lanes = down._multimeter_spec.lanes
    for _ in range(50):
        with pytest.raises(RecursionError):
            down(0)
        assert _measured._active.get() is None
    multimeter.flush(10)
    made = lanes.new()
    assert made - len(lanes.free) <= 2, (made, len(lanes.free))


@multimeter.measured
async def async_down(n: int) -> int:
    return await async_down(n + 1)


@multimeter.measured
def generator_down(n: int) -> typing.Iterator[int]:
    yield from generator_down(n + 1)


def test_recursion_errors_of_coroutines_and_generators_come_from_user_code():
    for run in (lambda: asyncio.run(async_down(0)), lambda: list(generator_down(0))):
        for limit in range(150, 162):
            sys.setrecursionlimit(limit)
            try:
                with pytest.raises(RecursionError) as raised:
                    run()
            finally:
                sys.setrecursionlimit(1000)
            innermost = raised.traceback[-1]
            assert "multimeter" not in str(innermost.path), innermost
