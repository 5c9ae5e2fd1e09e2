"""What a measured function is: its own parameters, attributes and depth, as plainly."""

from __future__ import annotations

import functools
import inspect
import sys
import textwrap

import pytest

import multimeter
from tests._programs import run_python


@pytest.fixture(autouse=True)
def _measuring(stored):
    return stored


def shapes(a, b=2, /, c=3, *more, d, e=5, **rest):
    return (a, b, c, more, d, e, rest)


def test_a_measured_function_has_the_parameters_of_the_original():
    measured = multimeter.measured(shapes)
    assert inspect.getfullargspec(shapes) == inspect.getfullargspec(measured)
    assert shapes.__defaults__ == measured.__defaults__
    assert shapes.__kwdefaults__ == measured.__kwdefaults__
    assert shapes.__code__.co_argcount == measured.__code__.co_argcount
    assert inspect.signature(shapes) == inspect.signature(measured)
    assert shapes(1, d=4) == measured(1, d=4)
    assert shapes(1, 2, 3, 4, 5, d=6, e=7, f=8) == measured(1, 2, 3, 4, 5, d=6, e=7, f=8)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1,), {}), ((1, 2, 3), {"d": 1, "c": 2}), ((), {"a": 1, "d": 1})],
)
def test_bad_arguments_raise_the_plain_function_own_type_error(args, kwargs):
    measured = multimeter.measured(shapes)
    with pytest.raises(TypeError) as plain:
        shapes(*args, **kwargs)
    with pytest.raises(TypeError) as wrapped:
        measured(*args, **kwargs)
    assert str(plain.value) == str(wrapped.value)


def test_tag_args_see_positional_keyword_and_default_values(stored):
    @multimeter.measured(tag_args=["b", "d", "e"])
    def tagged(a, b=2, *, d, e="x"):
        return a

    tagged(1, d="four")
    tagged(1, 3, d=5, e="y")
    assert multimeter.flush(10)
    assert [{"b": "2", "d": "four", "e": "x"}, {"b": "3", "d": "5", "e": "y"}] == [
        {k: r.tags[k] for k in ("b", "d", "e")} for r in stored.results
    ]


def test_code_that_counts_a_callable_arguments_sees_the_original_count():
    """pyparsing, click and others look at __code__ to decide how to call a function."""

    def takes(tokens):
        return tokens

    measured = multimeter.measured(takes)
    assert 1 == measured.__code__.co_argcount
    assert ("tokens",) == measured.__code__.co_varnames[:1]


def test_callables_that_are_not_functions_keep_their_attributes():
    @multimeter.measured
    @functools.lru_cache(maxsize=8)
    def cached(x):
        return x * 2

    assert 4 == cached(2)
    assert 1 == cached.cache_info().misses
    cached.cache_clear()
    assert 0 == cached.cache_info().currsize
    to_int = multimeter.measured(functools.partial(int, base=2))
    assert 5 == to_int("101")
    assert int is to_int.func

    class Point:
        def __init__(self, x):
            self.x = x

    measured_class = multimeter.measured(Point)
    assert isinstance(measured_class(1), Point)
    assert isinstance(measured_class(1), measured_class)


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="before 3.11 each Python call takes C stack: the plain program crashes too",
)
@pytest.mark.timeout(300)  # 100,000 measured levels: minutes on a loaded machine
def test_deep_recursion_under_a_raised_limit_works_as_plainly(tmp_path):
    """No C stack per measured level: 100,000 levels do not crash the interpreter."""
    script = tmp_path / "deep.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import multimeter

            multimeter.configure(storage=multimeter.DummyStorage())
            sys.setrecursionlimit(1_000_000)

            @multimeter.measured
            def depth(n):
                return 0 if n == 0 else 1 + depth(n - 1)

            print(depth(100_000))
            """
        )
    )
    done = run_python(script, timeout=300)
    assert 0 == done.returncode, done.stderr[-2000:]
    assert "100000" == done.stdout.strip()


def test_a_positional_only_parameter_is_not_tagged_from_a_keyword_of_the_same_name(stored):
    @multimeter.measured(tag_args=["name"])
    def render(name, /, **context):
        return name, context

    assert ("index.html", {"name": "Alice"}) == render("index.html", name="Alice")
    assert multimeter.flush(10)
    assert "index.html" == stored.results[0].tags["name"]


def test_defaults_set_by_hand_beyond_the_parameters_still_measure():
    def odd(a):
        return a

    odd.__defaults__ = (1, 2)  # legal, though no def statement makes it
    measured = multimeter.measured(odd)
    assert 5 == measured(5)
    assert odd() == measured()  # the last default, as plainly


def test_text_that_is_not_valid_unicode_is_stored_with_every_other_call(tmp_path):
    """A file name from os.fsdecode() in a tag, an exception type without a module."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import multimeter

            @multimeter.measured(tag_args=["path"])
            def load(path):
                return path

            class Odd(Exception):
                pass

            Odd.__module__ = None

            @multimeter.measured
            def fails():
                raise Odd()

            for i in range(20):
                load(os.fsdecode(b"caf\\xe9-%d.csv" % i))
                try:
                    fails()
                except Odd:
                    pass
            assert multimeter.flush(30)
            results = list(multimeter.load_results("out"))
            print(len(results), sorted({r.meta_data.get("exception_module", "") for r in results}))
            print(results[0].tags["path"])
            """
        )
    )
    done = run_python(script, cwd=tmp_path, env={"MULTIMETER_DIR": "out", "PATH": ""})
    assert 0 == done.returncode, done.stderr[-2000:]
    count, modules = done.stdout.splitlines()[0].split(" ", 1)
    assert "40" == count
    assert "['', 'None']" == modules
    assert "caf\\udce9-0.csv" == done.stdout.splitlines()[1]


def test_instrumenting_what_the_configuration_reads_does_not_deadlock(tmp_path):
    """instrument("collections") measures Mapping.get, which os.environ.get is."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import multimeter

            multimeter.instrument("collections")

            @multimeter.measured
            def home():
                return os.environ.get("HOME", "")

            home()
            print("done")
            """
        )
    )
    done = run_python(
        script, cwd=tmp_path, env={"MULTIMETER_STORAGE": "none", "PATH": ""}, timeout=60
    )
    assert 0 == done.returncode, done.stderr[-2000:]
    assert "done" == done.stdout.strip().splitlines()[-1]


def test_load_results_of_a_path_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(multimeter.load_results(tmp_path / "missing"))
