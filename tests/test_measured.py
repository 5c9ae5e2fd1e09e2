"""@measured: each call its own measurement, the measured code untouched."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

import multimeter
from multimeter import measured


def _results(storage):
    assert multimeter.flush(10)
    return storage.results


def test_bare_and_configured_forms_measure_each_call(stored):
    """@measured and @measured(...) both store one result per call."""

    @measured
    def plain(x):
        return x * 2

    @measured(name="custom", tags={"stage": "etl"})
    def configured(x):
        return x + 1

    assert (4, 3) == (plain(2), configured(2))
    results = _results(stored)
    assert ["plain", "custom"] == [r.identifier.split("-")[0] for r in results]
    assert "etl" == results[1].tags["stage"]


def test_return_values_exceptions_and_metadata_are_preserved(stored):
    """The same exception object propagates; name, doc, signature and __wrapped__ stay."""
    error = LookupError("missing")

    def original(a, b=2, *, c):
        """Docs."""
        raise error

    wrapped = measured(original)
    with pytest.raises(LookupError) as caught:
        wrapped(1, c=3)
    assert caught.value is error
    assert "original" == caught.traceback[-1].name
    assert ("original", "Docs.", original) == (
        wrapped.__name__,
        wrapped.__doc__,
        wrapped.__wrapped__,
    )
    assert inspect.signature(original) == inspect.signature(wrapped)
    result = _results(stored)[0]
    assert ["original:enter", "original:raise LookupError"] == [m.label for m in result.marks]
    assert ("raise", "LookupError") == (
        result.meta_data["outcome"],
        result.meta_data["exception_type"],
    )


def test_default_names_drop_locals_and_keep_the_class(stored):
    """A method reads Loader.load; a function defined in a function reads its own name."""

    class Loader:
        @measured
        def load(self):
            return "loaded"

        @classmethod
        @measured
        def build(cls):
            return cls

        @staticmethod
        @measured
        def check(x):
            return x

    assert "loaded" == Loader().load()
    assert Loader is Loader.build()
    assert 5 == Loader.check(5) == Loader().check(5)
    names = [r.meta_data["function"] for r in _results(stored)]
    assert ["Loader.load", "Loader.build", "Loader.check", "Loader.check"] == names


def test_identifiers_are_unique_file_and_influx_safe(stored):
    """8 threads x 1,000 calls: every result stored, identifiers unique and safe."""

    @measured
    def work(i):
        return i

    def run():
        for i in range(1000):
            work(i)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    identifiers = [r.identifier for r in _results(stored)]
    assert 8000 == len(identifiers) == len(set(identifiers))
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert all(set(i) <= allowed and i.startswith("work-") for i in identifiers)


def test_async_functions_are_measured_over_the_awaited_execution(stored):
    """The coroutine stays a coroutine function and its measurement spans the await."""

    @measured
    async def fetch(x):
        await asyncio.sleep(0.02)
        return x

    assert inspect.iscoroutinefunction(fetch)
    assert 7 == asyncio.run(fetch(7))
    result = _results(stored)[0]
    assert result.summary()["duration_s"] >= 0.015


def test_generators_are_measured_from_first_item_to_exhaustion_or_close(stored):
    """Generators and async generators: one measurement each, ended by exhaustion or close."""

    @measured
    def numbers(n):
        yield from range(n)

    @measured
    async def anumbers(n):
        for i in range(n):
            yield i

    async def collect():
        return [i async for i in anumbers(3)]

    assert [0, 1, 2] == list(numbers(3))
    assert [0, 1, 2] == asyncio.run(collect())
    partial = numbers(10)
    assert 0 == next(partial)
    partial.close()
    results = _results(stored)
    assert 3 == len(results)
    assert all("ok" == r.meta_data["outcome"] for r in results)


def test_nested_calls_mark_every_enclosing_measurement(stored):
    """An outer pipeline's timeline shows the phases of the measured calls inside it."""

    @measured
    def step():
        return None

    @measured
    def pipeline():
        step()
        step()

    pipeline()
    outer = next(r for r in _results(stored) if r.identifier.startswith("pipeline-"))
    assert [
        "pipeline:enter",
        "step:enter",
        "step:exit",
        "step:enter",
        "step:exit",
        "pipeline:exit",
    ] == [m.label for m in outer.marks]


def test_concurrent_asyncio_tasks_never_see_each_others_marks(stored):
    """100 tasks with nested measured calls: each task's marks stay on its own measurements."""

    @measured(tag_args=["n"])
    async def inner(n):
        await asyncio.sleep(0)
        return n

    @measured(tag_args=["n"])
    async def outer(n):
        await asyncio.sleep(0)
        await inner(n)
        await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(outer(n) for n in range(100)))

    asyncio.run(main())
    outers = [r for r in _results(stored) if r.identifier.startswith("outer-")]
    assert 100 == len(outers)
    for result in outers:
        assert ["outer:enter", "inner:enter", "inner:exit", "outer:exit"] == [
            m.label for m in result.marks
        ]


def test_tag_args_take_positional_keyword_and_default_values(stored):
    """Bound values become tags, converted with str() or a given converter, and cut."""

    @measured(tag_args={"dataset": None, "rows": lambda r: f"{r // 1000}k"})
    def load(dataset, rows=5000, *, mode="full"):
        return dataset

    load("sales", 12000)
    load(dataset="x" * 500)
    first, second = _results(stored)
    assert {"dataset": "sales", "rows": "12k"} == {k: first.tags[k] for k in ("dataset", "rows")}
    assert multimeter._measured.MAX_TAG_LENGTH == len(second.tags["dataset"])
    assert "5k" == second.tags["rows"]


def test_unknown_tag_args_raise_when_decorating():
    """A parameter name the function does not have is a ValueError naming it."""
    with pytest.raises(ValueError, match="'nope'"):

        @measured(tag_args=["nope"])
        def f(x):
            return x


def test_tags_merge_global_then_decorator_then_arguments(stored):
    """configure(tags) < decorator tags < tags from arguments."""
    multimeter.configure(storage=stored, tags={"team": "data", "stage": "global"})

    @measured(tags={"stage": "etl", "dataset": "fixed"}, tag_args=["dataset"])
    def load(dataset):
        return dataset

    load("sales")
    assert {"team": "data", "stage": "etl", "dataset": "sales"} == _results(stored)[0].tags


def test_decorated_functions_look_up_the_configuration_at_call_time(tmp_path):
    """@measured at import and configure() later in main() works."""

    @measured
    def early():
        return 1

    multimeter.configure(storage=multimeter.FileStorage(tmp_path, multimeter.JsonFormat()))
    early()
    assert multimeter.flush(10)
    files = list(tmp_path.glob("early-*.json"))
    assert 1 == len(files)
    result = multimeter.load_result(files[0])
    assert result.meta_data["qualname"].endswith("early")


def test_storage_errors_are_logged_never_raised(tmp_path, logs):
    """A result directory that cannot be used: the function returns normally, error logged."""
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    multimeter.configure(storage=multimeter.FileStorage(blocker, multimeter.JsonFormat()))

    @measured
    def work():
        return "fine"

    assert "fine" == work()
    assert not multimeter.flush(10)
    errors = [e for e in logs if e["log_level"] == "error"]
    assert 1 == len(errors)
    assert errors[0]["identifier"].startswith("work-")
    assert "file-not-dir" in errors[0]["storage"]


def test_disabled_measuring_calls_straight_through(stored):
    """enabled=False: the function runs, nothing is stored."""
    multimeter.configure(storage=stored, enabled=False)

    @measured
    def work():
        return 3

    assert 3 == work()
    assert [] == _results(stored)


def test_a_call_longer_than_a_cycle_gets_points_at_the_ticks(stored):
    """Short calls get one point; a call running for many cycles is sampled at every tick."""
    import time

    @measured
    def slow():
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            time.sleep(0.005)

    @measured
    def quick():
        return None

    slow()
    quick()
    by_name = {r.meta_data["function"]: r for r in _results(stored)}
    assert len(by_name["slow"]) >= 5  # cycle 0.01 s over 0.2 s
    assert 1 == len(by_name["quick"])
    assert by_name["slow"].summary()["duration_s"] >= 0.19


def test_a_read_only_result_directory_never_breaks_the_measured_function(logs):
    """A directory that cannot be created (read-only file system): logged with the path."""
    multimeter.configure(
        storage=multimeter.FileStorage("/sys/multimeter-test", multimeter.JsonFormat())
    )

    @measured
    def work():
        return "fine"

    assert "fine" == work()
    assert not multimeter.flush(10)
    errors = [e for e in logs if e["log_level"] == "error"]
    assert 1 == len(errors)
    assert "/sys/multimeter-test" in errors[0]["storage"]


def _child_calls(directory: str) -> None:
    multimeter.configure(storage=multimeter.FileStorage(directory, multimeter.JsonFormat()))

    @measured(name="child")
    def child():
        return 1

    for _ in range(5):
        child()
    assert multimeter.flush(20)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_multiprocessing_fork_children_store_their_own_calls_once(tmp_path):
    """The parent's queued results are stored by the parent only; children store theirs."""
    import multiprocessing

    multimeter.configure(storage=multimeter.FileStorage(tmp_path, multimeter.JsonFormat()))

    @measured(name="parent")
    def parent():
        return 1

    for _ in range(20):
        parent()  # some still queued when the children are forked
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_child_calls, args=(str(tmp_path),)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [0, 0] == [p.exitcode for p in processes]
    assert multimeter.flush(20)
    assert 20 == len(list(tmp_path.glob("parent-*.json")))
    assert 10 == len(list(tmp_path.glob("child-*.json")))
