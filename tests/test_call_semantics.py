"""What a measured call may and may not change: configuration, marks, generators,
recursion, re-entrancy, identifiers and lanes."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time

import pytest

import multimeter
from multimeter import measured
from multimeter.probe import CumulativeProbe, ResourceProbe
from multimeter.storages.base import Storage
from multimeter.testing import CounterProbe, InMemoryStorage
from tests._programs import run_python


def _results(storage):
    assert multimeter.flush(10)
    return storage.results


def test_set_storage_on_the_global_multimeter_applies_to_the_next_call(stored):
    """set_storage(), set_cycle_time() and add_probes() reach @measured after its first call."""

    @measured
    def work():
        return 1

    work()
    meter = multimeter.get_multimeter()
    other = InMemoryStorage()
    probe = CounterProbe()
    meter.set_storage(other).set_cycle_time(0.5).add_probes(probe)
    work()
    assert multimeter.flush(10)
    assert 1 == len(stored.results)
    assert 1 == len(other.results)
    assert "counter.total" in other.results[0].points[-1].values
    assert probe.reads >= 1


def test_a_task_that_outlives_its_call_adds_no_marks_to_it(stored):
    """Marks stop when a measurement ends: a spawned task's later calls stay out."""

    @measured(name="child")
    async def child():
        return None

    release = None

    @measured(name="parent")
    async def parent():
        nonlocal release
        release = asyncio.Event()

        async def later():
            await release.wait()
            await child()

        return asyncio.ensure_future(later())

    async def main():
        task = await parent()
        release.set()
        await task

    asyncio.run(main())
    results = {r.meta_data["function"]: r for r in _results(stored)}
    assert ["parent:enter", "parent:exit"] == [m.label for m in results["parent"].marks]
    assert ["child:enter", "child:exit"] == [m.label for m in results["child"].marks]


def test_a_running_generator_collects_the_marks_of_the_calls_it_makes(stored):
    """Calls made by the generator's own code mark it; calls of its consumer do not."""

    @measured(name="inner")
    def inner():
        return 1

    @measured(name="consumer_call")
    def consumer_call():
        return 2

    @measured(name="numbers")
    def numbers():
        inner()
        yield 1
        inner()
        yield 2

    for _ in numbers():
        consumer_call()
    generator = next(r for r in _results(stored) if r.identifier.startswith("numbers-"))
    labels = [m.label for m in generator.marks]
    assert [
        "numbers:enter",
        "inner:enter",
        "inner:exit",
        "inner:enter",
        "inner:exit",
        "numbers:exit",
    ] == labels


def test_an_async_generator_collects_the_marks_of_the_calls_it_makes(stored):
    """The same for async generators."""

    @measured(name="inner")
    async def inner():
        return 1

    @measured(name="agen")
    async def agen():
        await inner()
        yield 1

    async def main():
        return [i async for i in agen()]

    assert [1] == asyncio.run(main())
    result = next(r for r in _results(stored) if r.identifier.startswith("agen-"))
    assert ["agen:enter", "inner:enter", "inner:exit", "agen:exit"] == [
        m.label for m in result.marks
    ]


@pytest.mark.parametrize("kind", ["generator", "coroutine", "async generator"])
def test_bad_arguments_raise_type_error_at_the_call_as_without_measuring(stored, kind):
    """A generator or coroutine function called with bad arguments raises at once."""

    def gen(a):
        yield a

    async def coro(a):
        return a

    async def agen(a):
        yield a

    plain = {"generator": gen, "coroutine": coro, "async generator": agen}[kind]
    with pytest.raises(TypeError) as unmeasured:
        plain(1, 2)
    with pytest.raises(TypeError) as measured_error:
        measured(plain)(1, 2)
    assert str(unmeasured.value) == str(measured_error.value)


def test_instrument_with_bad_tags_raises_value_error():
    """instrument(..., tags=<invalid>) raises as documented instead of logging."""

    class Service:
        def handle(self):
            return 1

    with pytest.raises(ValueError, match="tag"):
        multimeter.instrument(Service, tags={"stage": object()})
    assert not hasattr(vars(Service)["handle"], "__wrapped__")


def _max_depth(function) -> int:
    low, high = 1, 5000
    while low < high:
        middle = (low + high + 1) // 2
        try:
            function(middle)
            low = middle
        except RecursionError:
            high = middle - 1
    return low


def test_deep_recursion_raises_only_from_the_users_code(stored):
    """Measuring costs a few frames per level and never raises RecursionError itself."""

    def plain(n):
        return 0 if n == 0 else 1 + plain(n - 1)

    @measured
    def deep(n):
        return 0 if n == 0 else 1 + deep(n - 1)

    plain_depth = _max_depth(plain)
    measured_depth = _max_depth(deep)
    assert measured_depth * 3 >= plain_depth - 10  # at most three frames per level
    with pytest.raises(RecursionError) as caught:
        deep(plain_depth)
    frames = [entry.name for entry in caught.traceback]
    assert "deep" == frames[-1]


def test_measured_code_called_by_a_storage_is_not_measured():
    """A storage that calls measured code does not feed itself."""

    @measured
    def helper():
        return 1

    class Calling(Storage):
        def __init__(self):
            self.results = []

        def store(self, result):
            helper()
            self.results.append(result)

    storage = Calling()
    multimeter.configure(storage=storage)

    @measured
    def work():
        return 2

    work()
    assert multimeter.flush(10)
    time.sleep(0.05)
    assert multimeter.flush(10)
    assert ["work"] == [r.meta_data["function"].rsplit(".", 1)[-1] for r in storage.results]


def test_measured_code_called_by_a_probe_is_not_measured(stored):
    """A probe whose read() calls measured code does not measure it (nor recurse)."""

    @measured(name="helper")
    def helper():
        return 1

    class Calling(CumulativeProbe):
        measures = ()

        def read(self):
            return helper()

        def derive(self, values, current, previous, time_elapsed):
            pass

    multimeter.get_multimeter().add_probes(Calling())

    @measured(name="work")
    def work():
        return 2

    work()
    assert ["work"] == [r.identifier.split("-")[0] for r in _results(stored)]


def test_identifiers_carry_64_random_bits_per_process(stored):
    """<name>-<pid>-<16 hex digits>-<n>: processes sharing a pid do not collide."""

    @measured
    def work():
        return 1

    work()
    _, pid, token, number = _results(stored)[0].identifier.rsplit("-", 3)
    assert 16 == len(token)
    assert all(text.isdigit() for text in (pid, number))
    int(token, 16)


def test_long_function_names_make_valid_unique_identifiers(tmp_path):
    """A 300-character name is shortened with a hash; its results are stored."""
    multimeter.configure(storage=multimeter.FileStorage(tmp_path, multimeter.JsonFormat()))
    first = measured(name="x" * 300)(lambda: 1)
    second = measured(name="x" * 299 + "y")(lambda: 2)
    assert (1, 2) == (first(), second())
    assert multimeter.flush(10)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert 2 == len(names)
    assert all(len(name.encode()) <= 160 for name in names)
    assert names[0].split("-")[0] != names[1].split("-")[0]
    loaded = [multimeter.load_result(tmp_path / name) for name in names]
    assert {"x" * 300, "x" * 299 + "y"} == {r.meta_data["function"] for r in loaded}


def test_concurrent_calls_hold_distinct_lanes_and_lanes_are_reused(stored):
    """Calls in flight at once never share a lane; later calls reuse the few lanes."""
    barrier = threading.Barrier(8)

    @measured
    def work(wait):
        if wait:
            barrier.wait(10)

    threads = [threading.Thread(target=work, args=(True,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(100):
        work(False)
    results = _results(stored)
    first = {r.meta_data["lane"] for r in results[:8]}
    assert 8 == len(first)
    assert {r.meta_data["lane"] for r in results} <= {str(n) for n in range(9)}


def test_a_slow_probe_does_not_hold_up_other_threads_calls(stored):
    """A probe that sleeps slows the sampler and its own reads, not unrelated calls."""
    gate = threading.Event()

    class Slow(ResourceProbe):
        def start(self):
            gate.wait(10)  # start/end hooks: the plan tracks this probe

    meter = multimeter.Multimeter(Slow(), cycle_time=0.01, storage=InMemoryStorage())
    slow = meter.measure("slow")
    blocked = threading.Thread(target=slow.start)
    blocked.start()
    time.sleep(0.1)

    @measured
    def quick():
        return 1

    started = time.monotonic()
    for _ in range(100):
        quick()
    elapsed = time.monotonic() - started
    gate.set()
    blocked.join(10)
    slow.end()
    assert elapsed < 5
    assert 100 == len(_results(stored))


def test_a_subclass_that_overrides_derive_is_honoured(stored):
    """ResourceProbe subclasses overriding derive() are served through it."""

    class Doubled(ResourceProbe):
        def derive(self, values, current, previous, time_elapsed):
            super().derive(values, current, previous, time_elapsed)
            values["process.max_rss"] = -1.0

    multimeter.configure(storage=stored, probes=[Doubled()], cycle_time=0.01)

    @measured
    def work():
        return 1

    work()
    assert [-1.0] == list(_results(stored)[0].values("process.max_rss"))


def test_measuring_starts_no_child_process():
    """The meta data is made without running `uname -p`: RUSAGE_CHILDREN stays zero."""
    program = textwrap.dedent(
        """
        import resource
        import multimeter
        multimeter.configure(storage=multimeter.testing.InMemoryStorage())

        @multimeter.measured
        def work():
            return 1

        work()
        assert multimeter.flush(10)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
        """
    )
    output = run_python(
        "-c", "import multimeter.testing\n" + program, timeout=60, check=True
    ).stdout.split()
    assert ["0", "0.0"] == output


def test_a_tag_arg_ending_with_a_backslash_is_stored_by_every_format(tmp_path):
    """'C:\\data\\' as a tag_args value: line protocol cannot end a tag with '\\'; it is cut."""
    multimeter.configure(storage=multimeter.FileStorage(tmp_path, multimeter.LineFormat()))

    @measured(tag_args=["path"])
    def load(path):
        return path

    assert "C:\\data\\" == load("C:\\data\\")
    load("x" * 199 + "\\y")
    assert multimeter.flush(10)
    loaded = [multimeter.load_result(path) for path in sorted(tmp_path.iterdir())]
    assert {"C:\\data", "x" * 199} == {result.tags["path"] for result in loaded}


def test_decorator_tags_influxdb_would_refuse_raise_when_decorating():
    """@measured(tags=...) refuses a '_' key or a trailing backslash, like configure()."""
    with pytest.raises(ValueError, match="_k"):
        measured(tags={"_k": "v"})(lambda: 1)
    with pytest.raises(ValueError, match="backslash"):
        measured(tags={"k": "v\\"})(lambda: 1)


def test_a_measured_coroutine_reads_like_the_plain_one(stored):
    """The coroutine object keeps the function's __name__ and __qualname__."""

    async def fetch():
        return 1

    plain, wrapped = fetch(), measured(fetch)()
    assert (plain.__name__, plain.__qualname__) == (wrapped.__name__, wrapped.__qualname__)
    assert 1 == asyncio.run(wrapped)
    plain.close()


def test_a_keyboard_interrupt_inside_multimeter_goes_on_and_leaves_no_trace(stored):
    """Ctrl-C landing in multimeter's own code propagates; later calls are measured."""

    class InterruptedOnce(ResourceProbe):
        reads = 0

        def read(self):
            InterruptedOnce.reads += 1
            if InterruptedOnce.reads == 2:  # the end reading of the first call
                raise KeyboardInterrupt
            return super().read()

    multimeter.configure(storage=stored, probes=[InterruptedOnce()], cycle_time=0.01)

    @measured(name="work")
    def work():
        return 1

    with pytest.raises(KeyboardInterrupt):
        work()
    for _ in range(100):
        work()
        time.sleep(0.0001)  # no shared readings: every call reads its probe twice
    assert 100 == len(_results(stored))


def test_lanes_stay_near_the_peak_concurrency_under_heavy_preemption(stored):
    """32 threads with a 1 us switch interval: no more lanes than calls in flight at once."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:

        @measured
        def work():
            return None

        def run():
            for _ in range(300):
                work()

        threads = [threading.Thread(target=run) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    lanes = {r.meta_data["lane"] for r in _results(stored)}
    assert 9600 == len(_results(stored))
    # Near the peak concurrency (32): a lane freed in the very microsecond a call starts
    # is passed over for a new one (points of two calls on a lane never share a
    # timestamp), so a few more may be made; what must not happen is growth with calls.
    assert len(lanes) <= 2 * 32


def test_a_keyboard_interrupt_at_the_start_of_ending_a_call_leaves_nothing_behind(stored):
    """Ctrl-C landing as the call's end begins: no phantom call on the stack or sampler."""
    from multimeter import _measured, _process

    @measured(name="work")
    def work():
        return 1

    previous = sys.gettrace()  # coverage's tracer, when the suite runs under it

    def interrupt_at_end(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_name == "end" and "_measured" in code.co_filename:
            sys.settrace(previous)
            raise KeyboardInterrupt
        return None

    sys.settrace(interrupt_at_end)
    try:
        with pytest.raises(KeyboardInterrupt):
            work()
    finally:
        sys.settrace(previous)
    assert _measured._active.get() is None
    grids = _process.current().sampler._grids.values()
    assert [] == [c for g in grids for c in g.calls.values() if c.spec.name == "work"]
    work()
    assert ["work:enter", "work:exit"] == [m.label for m in _results(stored)[-1].marks]
