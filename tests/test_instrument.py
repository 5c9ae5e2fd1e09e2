"""instrument(): measure existing code without editing it, and undo it exactly."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings

import pytest

import multimeter
from multimeter._instrument import inspects_its_caller
from multimeter._measured import is_measured
from tests import _programs


def _names(storage) -> list[str]:
    assert multimeter.flush(10)
    return [r.meta_data["function"] for r in storage.results]


@pytest.fixture
def etl():
    module = importlib.import_module("tests.pkg_for_instrument.etl")
    yield module
    importlib.reload(module)


def test_a_module_has_its_public_functions_and_class_methods_measured(stored, etl):
    """Public functions and the methods of public classes defined there; not imports or privates."""
    originals = dict(vars(etl))
    handle = multimeter.instrument(etl)
    assert "loaded a" == etl.load("a")
    assert [2] == etl.transform([1])
    assert "loaded b" == etl.Loader().run("b")
    assert isinstance(etl.Loader.create(), etl.Loader)
    assert 2 == etl.Loader.version()
    assert "hidden" == etl._private()
    assert etl.join is originals["join"]
    assert ["load", "transform", "load", "Loader.run", "Loader.create", "Loader.version"] == (
        _names(stored)
    )
    assert {"load", "transform", "Loader.run", "Loader.create", "Loader.version"} == {
        name.split("etl.", 1)[1] for name in handle.patched
    }


def test_uninstrument_puts_back_the_original_objects_exactly(stored, etl):
    """Identity, not just behaviour: the very same function and descriptor objects return."""
    before_module = dict(vars(etl))
    before_class = dict(vars(etl.Loader))
    handle = multimeter.instrument(etl)
    assert is_measured(vars(etl.Loader)["create"])
    handle.uninstrument()
    assert all(vars(etl)[k] is v for k, v in before_module.items())
    assert all(vars(etl.Loader)[k] is v for k, v in before_class.items())
    etl.load("x")
    assert [] == _names(stored)


def test_instrumenting_twice_measures_each_call_once(stored, etl):
    """Idempotent: a second instrument() patches nothing more."""
    multimeter.instrument(etl)
    second = multimeter.instrument(etl)
    etl.load("a")
    assert ["load"] == _names(stored)
    assert () == second.patched


def test_include_and_exclude_are_glob_patterns_on_names(stored, etl):
    """Patterns match the short name or the qualified name."""
    multimeter.instrument(etl, include=["load", "Loader.*"], exclude="Loader.version")
    etl.load("a")
    etl.transform([1])
    etl.Loader.version()
    etl.Loader.create()
    assert ["load", "Loader.create"] == _names(stored)


def test_a_class_is_instrumented_in_place_with_tags(stored):
    """instrument(cls) patches its methods; tags go on every measurement."""

    class Service:
        def handle(self, x):
            return x + 1

    handle = multimeter.instrument(Service, tags={"component": "api"})
    assert 2 == Service().handle(1)
    assert multimeter.flush(10)
    assert "api" == stored.results[0].tags["component"]
    handle.uninstrument()
    assert not is_measured(vars(Service)["handle"])


def test_a_function_target_returns_the_measured_function(stored):
    """instrument(func) returns a measured function; the original is untouched."""

    def compute(x):
        return x * 3

    measured = multimeter.instrument(compute)
    assert 9 == measured(3)
    assert compute is measured.uninstrument()
    assert measured is multimeter.instrument(measured)
    assert ["compute"] == _names(stored)


def test_a_module_not_yet_imported_is_instrumented_on_import(stored):
    """A dotted name: the hook instruments the module when it is first imported."""
    name = "tests.pkg_for_instrument.lazy"
    sys.modules.pop(name, None)
    handle = multimeter.instrument(name, include="load")
    try:
        lazy = importlib.import_module(name)
        assert "loaded q" == lazy.load("q")
        assert ["load"] == _names(stored)
    finally:
        handle.uninstrument()
        sys.modules.pop(name, None)


def _nested_reader():
    def inner():
        return sys._getframe(1)

    return inner


@pytest.mark.parametrize(
    "function",
    [
        lambda: sys._getframe(1),
        lambda: sys._getframemodulename(1),
        lambda: inspect.currentframe(),
        lambda frame: frame.f_back,
        lambda frame: inspect.getouterframes(frame),
        lambda frame: inspect.getframeinfo(frame),
        lambda: inspect.stack(),
        lambda: warnings.warn("old", DeprecationWarning, stacklevel=2),
    ],
    ids=[
        "_getframe",
        "_getframemodulename",
        "currentframe",
        "f_back",
        "getouterframes",
        "getframeinfo",
        "inspect.stack",
        "stacklevel",
    ],
)
def test_reading_frames_or_passing_stacklevel_inspects_the_caller(function):
    """The signs in a function's own code: frame-reading names, a ``stacklevel=`` keyword."""
    assert inspects_its_caller(function) is not None


@pytest.mark.parametrize(
    "function",
    [
        lambda stack: stack.pop(),
        lambda: warnings.warn("old"),  # noqa: B028 - a warning without stacklevel, on purpose
        _nested_reader,
        len,
    ],
    ids=["stack-without-inspect", "warn-without-stacklevel", "nested-code", "builtin"],
)
def test_other_functions_do_not_inspect_the_caller(function):
    """A ``stack`` that is not ``inspect.stack``, or frames read by nested code only."""
    assert None is inspects_its_caller(function)


def test_a_bad_target_raises_value_error():
    """Only functions, classes, modules and dotted names can be instrumented."""
    with pytest.raises(ValueError, match="instrument"):
        multimeter.instrument(42)


pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def test_forked_children_store_their_own_calls_and_not_the_parents(tmp_path):
    """os.fork: the child stores its calls; the parent's queued results are stored once."""
    multimeter.configure(storage=multimeter.FileStorage(tmp_path, multimeter.JsonFormat()))

    @multimeter.measured
    def work(who):
        return who

    for _ in range(50):
        work("parent")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for _ in range(10):
                work("child")
            code = 0 if multimeter.flush(20) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    assert multimeter.flush(20)
    files = list(tmp_path.glob("work-*.json"))
    assert 60 == len(files)
    pids = [multimeter.load_result(f).meta_data["pid"] for f in files]
    assert 50 == pids.count(str(os.getpid()))
    assert 10 == pids.count(str(pid))


JINJA2_TEMPLATES = """
    import multimeter
    import jinja2

    multimeter.instrument("jinja2")
    environment = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
    source = '''
    {% macro row(x) %}<td>{{ x|e }}</td>{% endmacro %}
    {% for item in items if item %}{{ row(item) }}
    {% if loop.index > 3 %}{% break %}{% endif %}{% endfor %}
    {% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}
    {% endfor %}{{ ns.n }}
    {{ name|default('x')|upper }} {{ items|join(',') }} {{ items|map('upper')|list }}
    {% with a = 1 %}{{ a + NUMBER }}{% endwith %}
    '''
    rendered = [
        environment.from_string(source.replace("NUMBER", str(i))).render(
            items=["a", "b", "c", "d", "e"], name="n"
        )
        for i in range(200)
    ]
    print(len(rendered), rendered[-1].split()[-1])
"""


@pytest.mark.timeout(300)  # the whole of jinja2 instrumented, in a subprocess
def test_jinja2_instrumented_whole_compiles_and_renders_templates(tmp_path):
    """jinja2 leaves measured generators unfinished for the garbage collector to close:
    the program runs as without measuring (it crashed with SIGSEGV in ContextVar.set,
    or every later measured generator raised LookupError)."""
    pytest.importorskip("jinja2")
    completed = _programs.run_program(tmp_path, JINJA2_TEMPLATES, timeout=240)
    assert "200 200" == completed.stdout.strip()[-7:]
    assert "LookupError" not in completed.stderr + completed.stdout
