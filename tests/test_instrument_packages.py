"""instrument() on a package: its submodules, every name its functions go by, and undoing it."""

from __future__ import annotations

import importlib
import json
import pickle
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import multimeter
from multimeter._measured import is_measured
from tests._programs import run_python

SHOP = "tests.pkg_for_instrument.shop"
LOOKBACK = "tests.pkg_for_instrument.lookback"
ALIASES = "tests.pkg_for_instrument.aliases"
HOLLOW = "tests.pkg_for_instrument.hollow"
SELFISH = "tests.pkg_for_instrument.selfish"
RACY = "tests.pkg_for_instrument.racy"
LAZY = "tests.pkg_for_instrument.lazy"
ROOT = Path(__file__).resolve().parents[1]


def _names(storage: Any) -> list[str]:
    assert multimeter.flush(10)
    return [r.meta_data["function"] for r in storage.results]


def _forget(package: str) -> None:
    """Drop the package and its submodules from sys.modules and from their parent."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    parent, _, child = package.rpartition(".")
    if hasattr(sys.modules.get(parent), child):
        delattr(sys.modules[parent], child)


def _everything(modules: list[types.ModuleType]) -> list[tuple[Any, str, Any]]:
    """Every (owner, name, object) in these modules and in the classes they hold."""
    found = []
    for module in modules:
        for name, value in vars(module).items():
            found.append((module, name, value))
            if isinstance(value, type):
                found.extend((value, name, member) for name, member in vars(value).items())
    return found


def _changed(everything: list[tuple[Any, str, Any]]) -> list[tuple[Any, str]]:
    """The (owner, name) pairs that no longer hold the same object."""
    return [(owner, name) for owner, name, value in everything if vars(owner)[name] is not value]


@pytest.fixture(autouse=True)
def _meta_path_restored() -> Iterator[None]:
    """No import hook outlives its test."""
    before = list(sys.meta_path)
    yield
    sys.meta_path[:] = before


@pytest.fixture
def instrumented() -> Iterator[Callable[..., Any]]:
    """multimeter.instrument(), undone when the test ends."""
    handles = []

    def instrument(target: Any, **options: Any) -> Any:
        handles.append(multimeter.instrument(target, **options))
        return handles[-1]

    yield instrument
    for handle in reversed(handles):
        handle.uninstrument()


@pytest.fixture
def shop() -> Iterator[types.ModuleType]:
    """The test package, freshly imported (its submodule ``later`` not imported)."""
    _forget(SHOP)
    yield importlib.import_module(SHOP)
    _forget(SHOP)


@pytest.fixture
def shop_not_imported() -> Iterator[str]:
    """The test package's name, with the package not imported."""
    _forget(SHOP)
    yield SHOP
    _forget(SHOP)


def test_a_package_has_the_functions_of_its_submodules_measured_under_every_name(
    stored, shop, instrumented
):
    """Re-exports, aliases included, become the very object measured in the submodule."""
    instrumented(shop)
    assert is_measured(shop._impl.price)
    assert shop.price is shop._impl.price
    assert shop.cost is shop._impl.price
    assert shop.total is shop._impl.total
    assert 3 == shop.cost("tea")
    assert 5 == shop.total(["tea", "pi"])
    assert ["price", "price", "price", "total"] == sorted(_names(stored))


def test_a_class_defined_in_a_submodule_is_patched_once_in_place(stored, shop, instrumented):
    """A class re-exported under several names is one class, its methods measured once."""
    handle = instrumented(shop)
    assert shop.Basket is shop.Cart is shop._impl.Cart
    assert "EUR" == shop.Basket.currency()
    assert ["tea"] == shop.Cart.empty().add("tea").items
    assert ["Cart.currency", "Cart.empty", "Cart.add"] == _names(stored)
    assert 1 == handle.patched.count(f"{SHOP}._impl.Cart.add")


def test_the_handle_lists_every_name_patched_and_leaves_imports_from_elsewhere_alone(
    shop, instrumented
):
    """``json.dumps`` re-exported by the package stays json's own; privates stay too."""
    handle = instrumented(shop)
    assert {
        f"{SHOP}._impl.price",
        f"{SHOP}._impl.total",
        f"{SHOP}._impl.Cart.add",
        f"{SHOP}._impl.Cart.empty",
        f"{SHOP}._impl.Cart.currency",
        f"{SHOP}.price",
        f"{SHOP}.cost",
        f"{SHOP}.total",
    } == set(handle.patched)
    assert shop.dumps is json.dumps
    assert not is_measured(shop._impl._rounded)


def test_the_handle_counts_functions_and_names_in_its_repr(shop, instrumented):
    """A function re-exported under three names counts once among the functions."""
    handle = instrumented(shop)
    assert f"<Instrumentation of '{SHOP}': 5 functions patched under 8 names>" == repr(handle)


def test_uninstrument_puts_back_every_name_in_every_module(shop, instrumented):
    """Identity, for the package, its submodules and the classes in them."""
    before = _everything([shop, shop._impl])
    handle = instrumented(shop)
    assert is_measured(shop.cost)
    handle.uninstrument()
    assert [] == _changed(before)


def test_a_submodule_imported_later_is_instrumented_on_import(stored, shop, instrumented):
    """Its own functions are measured, and so are the package's names it re-exports."""
    handle = instrumented(shop)
    later = importlib.import_module(f"{SHOP}.later")
    assert 1 == later.discount("tea")
    assert later.price is shop.price
    assert ["discount", "price"] == sorted(_names(stored))
    handle.uninstrument()
    assert not is_measured(later.discount)
    assert later.price is shop._impl.price
    assert not is_measured(later.price)


def test_a_package_not_imported_yet_is_instrumented_with_its_submodules_on_import(
    stored, shop_not_imported, instrumented
):
    """Each submodule is measured right after it runs, so the package copies measured names."""
    meta_path = list(sys.meta_path)
    handle = instrumented(shop_not_imported)
    shop = importlib.import_module(shop_not_imported)
    assert shop.cost is shop.price is shop._impl.price
    assert is_measured(shop.price)
    assert 3 == shop.cost("tea")
    assert ["price"] == _names(stored)
    handle.uninstrument()
    assert meta_path == sys.meta_path
    assert shop.cost is shop.price is shop._impl.price
    assert not is_measured(shop.price)


def test_recursive_false_keeps_to_the_package_module_itself(shop, instrumented):
    """The shop's ``__init__`` defines nothing, so nothing is patched."""
    handle = instrumented(shop, recursive=False)
    assert () == handle.patched
    assert not is_measured(shop.price)


def test_patterns_match_qualified_names_relative_to_the_package(shop, instrumented):
    """``_impl.price``, ``_impl.Cart.add``: the submodule's path, then ``__qualname__``."""
    handle = instrumented(shop, include="_impl.*", exclude=["total", "_impl.Cart.currency"])
    assert {
        f"{SHOP}._impl.price",
        f"{SHOP}._impl.Cart.add",
        f"{SHOP}._impl.Cart.empty",
        f"{SHOP}.price",
        f"{SHOP}.cost",
    } == set(handle.patched)


def test_patterns_decide_per_function_so_an_alias_follows_its_function(shop, instrumented):
    """``include="price"`` measures ``cost`` too: the same function under another name."""
    instrumented(shop, include="price")
    assert is_measured(shop.cost)
    assert not is_measured(shop.total)


def test_patterns_also_match_the_plain_qualified_name(shop, instrumented):
    """``Cart.*`` matches ``Cart.add`` of ``_impl``, as ``_impl.Cart.*`` does."""
    handle = instrumented(shop, include="Cart.*")
    assert {f"{SHOP}._impl.Cart.{name}" for name in ("add", "empty", "currency")} == set(
        handle.patched
    )


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"recursive": False}, f"defined in another module, such as '{SHOP}._impl'"),
        ({"include": "nothing*"}, "excluded by include/exclude"),
    ],
)
def test_an_instrument_that_patches_nothing_logs_a_warning_saying_why(
    shop, instrumented, logs, options, reason
):
    """The warning names the target and the reason."""
    instrumented(shop, **options)
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert ("instrument patched nothing", SHOP) == (warning["event"], warning["target"])
    assert reason in warning["reason"]


def test_instrumenting_a_package_twice_warns_that_it_is_already_measured(shop, instrumented, logs):
    """The second handle patches nothing and says so."""
    instrumented(shop)
    assert () == instrumented(shop).patched
    assert ["its functions are already measured"] == [
        entry["reason"] for entry in logs if entry["log_level"] == "warning"
    ]


def test_a_class_without_public_methods_warns_that_nothing_is_defined(instrumented, logs):
    """Nothing to measure is worth a warning too."""

    class Empty:
        pass

    instrumented(Empty)
    assert [(Empty.__qualname__, "no public functions or methods are defined there")] == [
        (entry["target"], entry["reason"]) for entry in logs if entry["log_level"] == "warning"
    ]


@pytest.fixture
def aliases() -> Iterator[types.ModuleType]:
    """A module function also kept as a staticmethod, and other modules' functions on a class."""
    _forget(ALIASES)
    yield importlib.import_module(ALIASES)
    _forget(ALIASES)


def test_a_function_also_kept_as_a_staticmethod_is_one_measured_object(
    stored, aliases, instrumented
):
    """``Parser.parse is aliases.parse``: one function, one measured object, pickled by name."""
    handle = instrumented(aliases)
    parser = aliases.Parser
    assert parser.parse is aliases.parse
    assert is_measured(aliases.parse)
    assert vars(parser)["from_text"].__func__ is aliases.from_text
    assert is_measured(aliases.from_text)
    for function in (parser.parse, parser().parse):
        assert function is pickle.loads(pickle.dumps(function))
    assert ["a", "b"] == parser.parse("a b")
    assert isinstance(parser.from_text("a"), parser)
    assert ["a", "b"] == list(parser.tokens("a b"))
    assert ["parse", "from_text", "Parser.tokens"] == _names(stored)
    assert repr(handle).endswith("3 functions patched under 5 names>")


def test_a_function_kept_as_a_staticmethod_goes_through_a_spawned_pool():
    """``Pool.map(Parser.parse, ...)`` pickles the measured function by its module name."""
    code = textwrap.dedent(
        f"""
        import importlib, multiprocessing, multimeter
        aliases = importlib.import_module("{ALIASES}")
        multimeter.configure(storage=multimeter.DummyStorage())
        multimeter.instrument(aliases)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            print(pool.map(aliases.Parser.parse, ["a b", "c"]))
        """
    )
    done = run_python("-c", code, cwd=ROOT, timeout=120)
    assert "[['a', 'b'], ['c']]" == done.stdout.strip(), done.stderr


def test_class_attributes_defined_outside_the_package_are_left_alone(aliases, instrumented):
    """``staticmethod(textwrap.dedent)`` and ``json.loads`` on a class stay as they were."""
    before = dict(vars(aliases.Parser))
    instrumented(aliases)
    assert all(before[name] is vars(aliases.Parser)[name] for name in ("dedent", "dumps", "loads"))
    assert json.dumps is pickle.loads(pickle.dumps(aliases.Parser.dumps))


@pytest.fixture
def lookback() -> Iterator[types.ModuleType]:
    """Functions that read their caller's frame, freshly imported."""
    _forget(LOOKBACK)
    yield importlib.import_module(LOOKBACK)
    _forget(LOOKBACK)


def test_functions_that_inspect_their_caller_are_left_unmeasured_and_listed(lookback, instrumented):
    """The handle's ``skipped`` names each with the reason; its ``repr()`` counts them."""
    handle = instrumented(lookback)
    assert not is_measured(lookback.make_record)
    assert not is_measured(lookback.old_api)
    assert not is_measured(vars(lookback.Factory)["build"])
    assert is_measured(lookback.new_api)
    assert is_measured(lookback.with_helper)
    assert is_measured(vars(lookback.Factory)["size"])
    assert {
        (f"{LOOKBACK}.make_record", "reads its caller's frame (_getframe)"),
        (f"{LOOKBACK}.old_api", "passes stacklevel= to point at its caller"),
        (f"{LOOKBACK}.Factory.build", "reads its caller's frame (currentframe, f_back)"),
    } == set(handle.skipped)
    assert repr(handle).endswith("3 functions patched under 3 names; 3 functions skipped>")


def test_a_factory_left_unmeasured_makes_classes_of_its_callers_module(lookback, instrumented):
    """As ``namedtuple()`` and ``attr.make_class()`` do: the caller is this test module."""
    instrumented(lookback)
    assert __name__ == lookback.make_record("Record").__module__
    assert __name__ == lookback.Factory().build("Built").__module__


def test_a_deprecation_warning_left_unmeasured_points_at_its_caller(lookback, instrumented):
    """``stacklevel=2`` names this file, not the library's."""
    instrumented(lookback)
    with pytest.warns(DeprecationWarning) as caught:
        assert 2 == lookback.old_api()
    assert [__file__] == [warning.filename for warning in caught]


def test_each_function_left_unmeasured_is_logged_at_info_level(lookback, instrumented, logs):
    """One line per function, no warning."""
    instrumented(lookback)
    skipped = [entry for entry in logs if entry["event"] == "instrument skipped"]
    assert {"info"} == {entry["log_level"] for entry in skipped}
    assert [f"{LOOKBACK}.Factory.build", f"{LOOKBACK}.make_record", f"{LOOKBACK}.old_api"] == (
        sorted(entry["target"] for entry in skipped)
    )


def test_a_function_instrumented_by_itself_is_measured_and_its_caller_is_the_wrapper(lookback):
    """Asked for by name, it is measured; the frame it reads is its own module's."""
    measured = multimeter.instrument(lookback.make_record)
    assert is_measured(measured)
    assert LOOKBACK == measured("Record").__module__


def test_attrs_make_class_makes_a_class_of_the_calling_module_that_pickles(
    instrumented, monkeypatch
):
    """``instrument("attr")`` leaves ``attr.make_class`` (it reads ``sys._getframe(1)``) alone."""
    attr = pytest.importorskip("attr")
    handle = instrumented("attr")
    assert 10 < len(handle.patched)
    assert "attr._make.make_class" in {name for name, _ in handle.skipped}
    point = attr.make_class("Point", ["a"])
    assert __name__ == point.__module__
    monkeypatch.setattr(sys.modules[__name__], "Point", point, raising=False)
    assert point(1) == pickle.loads(pickle.dumps(point(1)))


def test_a_module_not_imported_yet_warns_when_imported_if_nothing_was_patched(instrumented, logs):
    """No warning at instrument() time: it comes with the import."""
    _forget(LAZY)
    instrumented(LAZY, include="nothing*")
    assert [] == logs
    importlib.import_module(LAZY)
    _forget(LAZY)
    assert [LAZY] == [entry["target"] for entry in logs if entry["log_level"] == "warning"]


def test_a_package_not_imported_yet_never_warns_that_nothing_was_patched(instrumented, logs):
    """Its submodules may come at any time: ``hollow.parsing``, imported later, is measured."""
    _forget(HOLLOW)
    handle = instrumented(HOLLOW)
    importlib.import_module(HOLLOW)
    assert [] == [entry for entry in logs if entry["log_level"] == "warning"]
    parsing = importlib.import_module(f"{HOLLOW}.parsing")
    assert is_measured(parsing.parse)
    assert (f"{HOLLOW}.parsing.parse",) == handle.patched
    _forget(HOLLOW)


def test_a_package_that_instruments_itself_while_imported_is_measured_whole(logs):
    """Functions defined after its ``instrument(__name__)`` and names imported after it too."""
    _forget(SELFISH)
    selfish = importlib.import_module(SELFISH)
    handle = selfish.handle
    try:
        assert is_measured(selfish.late)
        assert selfish.helper is selfish.util.helper
        assert is_measured(selfish.helper)
        assert {f"{SELFISH}.late", f"{SELFISH}.helper", f"{SELFISH}.util.helper"} == set(
            handle.patched
        )
        assert [] == [entry for entry in logs if entry["log_level"] == "warning"]
        handle.uninstrument()
        assert not is_measured(selfish.late)
        assert not is_measured(selfish.helper)
        assert not is_measured(selfish.util.helper)
    finally:
        handle.uninstrument()
        _forget(SELFISH)


def test_a_submodule_half_imported_by_another_thread_is_instrumented_when_its_import_ends(
    instrumented, logs
):
    """``slow`` pauses after ``a``: ``c`` and the measured ``b`` it imports come later."""
    _forget(RACY)
    racy = importlib.import_module(RACY)
    other = importlib.import_module(f"{RACY}.other")
    started, proceed = threading.Event(), threading.Event()
    racy.gate = (started, proceed)
    importer = threading.Thread(target=importlib.import_module, args=(f"{RACY}.slow",))
    importer.start()
    try:
        assert started.wait(10)
        handle = instrumented(racy)
    finally:
        proceed.set()
        importer.join(10)
    slow = sys.modules[f"{RACY}.slow"]
    try:
        assert {"a": True, "b": True, "c": True} == {
            name: is_measured(getattr(slow, name)) for name in "abc"
        }
        assert {f"{RACY}.slow.{name}" for name in "abc"} <= set(handle.patched)
        handle.uninstrument()
        assert {"a": False, "b": False, "c": False} == {
            name: is_measured(getattr(slow, name)) for name in "abc"
        }
        assert not is_measured(other.b)
    finally:
        _forget(RACY)


@pytest.fixture
def more_itertools() -> types.ModuleType:
    """A real package: defined in ``more`` and ``recipes``, re-exported by ``__init__``."""
    return importlib.import_module("more_itertools")


def test_a_real_package_is_measured_under_every_name_and_computes_the_same(
    stored, more_itertools, instrumented
):
    """``more_itertools.chunked`` is ``more_itertools.more.chunked``, measured."""
    plain = list(more_itertools.chunked(range(7), 3)), more_itertools.first([5, 6])
    handle = instrumented("more_itertools")
    assert more_itertools.chunked is more_itertools.more.chunked
    assert is_measured(more_itertools.chunked)
    assert is_measured(more_itertools.take)  # defined in recipes
    assert more_itertools.peekable is more_itertools.more.peekable
    assert is_measured(vars(more_itertools.peekable)["peek"])
    assert 100 < len(set(handle.patched)) == len(handle.patched)
    assert plain == (list(more_itertools.chunked(range(7), 3)), more_itertools.first([5, 6]))
    assert {"chunked", "first"} <= set(_names(stored))


def test_a_real_package_is_put_back_exactly(more_itertools, instrumented):
    """Every name in every module of more_itertools, and in its classes, is the original."""
    modules = [m for n, m in sys.modules.items() if n.partition(".")[0] == "more_itertools"]
    before = _everything(modules)
    handle = instrumented(more_itertools)
    assert 100 < int(repr(handle).split(": ")[1].split()[0])
    handle.uninstrument()
    assert [] == _changed(before)
