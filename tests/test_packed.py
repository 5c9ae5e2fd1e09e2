"""Short calls wait for the writer packed (multimeter._packed).

What must hold: a packed call's record is the record the call would have had
unpacked; calls still come out in the order they ended (a call made inside
another before it), whatever mix of packed and unpacked calls, from any number
of threads; a waiting call holds one small item (no call object, no readings of
its own); and a signal's handler that makes calls of its own while a call is
being packed neither hangs nor loses a call.
"""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import pytest

import multimeter
from multimeter import _config, _packed, _records
from multimeter.calls import CallRecord, CallStorage
from tests._programs import run_program


class Recording(CallStorage):
    """Keeps the records it is given; can hold the writer in its first store."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.records: list[CallRecord] = []
        self.hold = hold

    def store_calls(self, records: Sequence[CallRecord]) -> None:
        if self.hold is not None:
            self.hold.wait(30)
        self.records.extend(records)

    def store(self, result: Any) -> None:
        raise AssertionError("a measured call reaches a call storage as a record")


def _configured(storage: Recording) -> Recording:
    """``storage`` as the storage of measured calls, with the ``resource`` probe alone."""
    multimeter.configure(storage=storage, probes=["resource"])
    return storage


@pytest.fixture
def unpacked_records(monkeypatch):
    """Each packed call's record made the unpacked way, from its own readings, by number."""
    made: dict[int, CallRecord] = {}
    pack = _packed.pack

    def pack_and_keep(process, call, start, end, elapsed):
        packed = pack(process, call, start, end, elapsed)
        if packed is None:
            return None
        parent = call.parent
        made[call.number] = _records.call_record(
            call.spec,
            call.setup,
            process.token,
            call.number,
            call.lane,
            call.started_us,
            call.end_us,
            call.tags,
            None,
            parent.number if parent is not None else None,
            (start,),
            (end,),
            elapsed,
        )
        return packed

    monkeypatch.setattr(_packed, "pack", pack_and_keep)
    return made


def _rows_equal(packed: CallRecord, unpacked: CallRecord) -> None:
    assert packed._replace(points=()) == unpacked._replace(points=())
    ((packed_at, packed_row),) = packed.points
    ((unpacked_at, unpacked_row),) = unpacked.points
    assert packed_at == unpacked_at
    assert list(packed_row) == list(unpacked_row)


def test_a_packed_call_has_the_record_it_would_have_had_unpacked(unpacked_records):
    """Calls that only use CPU, calls that fault pages in, calls that reap a child:
    each packed call's record equals the one made from the call's own readings."""
    storage = _configured(Recording())

    @multimeter.measured
    def work(kind: int) -> int:
        if kind == 1:
            return len(bytearray(4_000_000))  # page faults, maybe a new peak
        if kind == 2:
            return subprocess.run([sys.executable, "-c", "pass"], check=True).returncode
        return sum(range(50))

    kinds = [0] * 3_000 + [1] * 20 + [2] * 3
    for kind in kinds:
        work(kind)
    assert multimeter.flush(30)
    assert len(kinds) == len(storage.records)
    # A call that faults pages in, reaps a child or is preempted (its context
    # switches move) waits unpacked; most short calls move their CPU times alone.
    assert len(unpacked_records) > len(kinds) // 2, "most short calls are packed"
    for record in storage.records:
        if record.number in unpacked_records:
            _rows_equal(record, unpacked_records[record.number])
    reaped = [r for r in storage.records if r.points[0][1][13] > 0]  # children.cpu_user
    assert reaped, "a call that reaped a child has its CPU time"


class _Reader:
    """Reads records back as load_results() does: inner calls' marks go to their parent."""

    def __init__(self, records: list[CallRecord]) -> None:
        self.marks: dict[int, list[str]] = {}
        self.missing: list[int] = []
        seen: set[int] = set()
        for record in records:
            if record.parent is not None and record.parent in seen:
                self.missing.append(record.number)  # its parent was stored before it
            seen.add(record.number)
            own = self.marks.pop(record.number, [])
            self.marks[record.number] = own
            if record.parent is not None:
                label = record.exit_label
                self.marks.setdefault(record.parent, []).extend(
                    [f"{record.function.name}:enter", *own, label]
                )


def test_calls_are_stored_in_the_order_they_ended_packed_or_not():
    """A parent packed around children that raise or carry argument tags (those are
    not packed), in several threads: every child is stored before its parent."""
    storage = _configured(Recording())

    @multimeter.measured
    def plain(i: int) -> int:
        return i

    @multimeter.measured
    def failing(i: int) -> None:
        raise ValueError(i)

    @multimeter.measured(tag_args=["i"])
    def tagged(i: int) -> int:
        return i

    @multimeter.measured
    def parent(i: int) -> None:
        plain(i)
        with pytest.raises(ValueError):
            failing(i)
        tagged(i)
        plain(i)

    def run() -> None:
        for i in range(400):
            parent(i)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert multimeter.flush(30)
    assert 3 * 400 * 5 == len(storage.records)
    reader = _Reader(storage.records)
    assert [] == reader.missing
    parents = [r for r in storage.records if r.function.name == "parent"]
    for record in parents:
        assert [
            "plain:enter",
            "plain:exit",
            "failing:enter",
            "failing:raise ValueError",
            "tagged:enter",
            "tagged:exit",
            "plain:enter",
            "plain:exit",
        ] == reader.marks[record.number]


def test_a_waiting_call_holds_one_small_item(monkeypatch):
    """5,000 calls waiting for a held writer: a packed call holds about one object for
    the garbage collector to visit (the item; its numbers are bytes, which it does
    not visit) and under 300 bytes; a call preempted while it ran (its context
    switches moved: more of them on a busy machine) waits as itself, counted apart."""
    hold = threading.Event()
    storage = _configured(Recording(hold))
    unpacked = [0]
    pack = _packed.pack

    def counting(*args: Any) -> Any:
        packed = pack(*args)
        if packed is None:
            unpacked[0] += 1
        return packed

    monkeypatch.setattr(_packed, "pack", counting)

    @multimeter.measured
    def short(i: int) -> int:
        return i

    short(0)
    time.sleep(0.3)  # the writer holds that call and waits
    gc.collect()
    before = len(gc.get_objects())
    unpacked[0] = 0
    tracemalloc.start()
    try:
        for i in range(5_000):
            short(i)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gc.collect()
    grown = len(gc.get_objects()) - before
    hold.set()
    assert multimeter.flush(30)
    assert 5_001 == len(storage.records)
    others = unpacked[0]
    packed = 5_000 - others
    assert packed > 2_500, f"{others} of 5,000 calls not packed"
    assert grown < packed + 12 * others + 200, f"{grown} objects, {others} calls unpacked"
    assert held < 300 * packed + 2_500 * others, f"{held} bytes, {others} calls unpacked"


def test_children_come_before_parents_when_threads_race():
    """Threads that make calls fast, and threads whose calls are nested, with the
    interpreter switching threads every 10 us: each call is queued as it ends, so a
    parent is never stored before its child."""
    storage = _configured(Recording())

    @multimeter.measured
    def leaf(i: int) -> int:
        return i

    @multimeter.measured
    def child(i: int) -> int:
        return i

    @multimeter.measured
    def parent(i: int) -> int:
        return child(i)

    def spam() -> None:
        for i in range(30_000):
            leaf(i)

    def family() -> None:
        for i in range(15_000):
            parent(i)

    threads = [threading.Thread(target=work) for work in (spam, spam, family, family)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert multimeter.flush(60)
    assert 2 * 30_000 + 2 * 2 * 15_000 == len(storage.records)
    assert [] == _Reader(storage.records).missing


def test_a_forked_child_stores_its_own_calls_once(tmp_path):
    """A parent with calls waiting for its writer forks; the child's calls go to the
    child's files, the parent's once, to the parent's."""
    code = textwrap.dedent(
        """
        import os
        import multimeter

        @multimeter.measured
        def short(i):
            return i

        for i in range(300):
            short(i)
        pid = os.fork()
        if pid == 0:
            for i in range(200):
                short(i)
            os._exit(0 if multimeter.flush(30) else 1)
        _, status = os.waitpid(pid, 0)
        for i in range(100):
            short(i)
        assert os.waitstatus_to_exitcode(status) == 0
        """
    )
    run_program(tmp_path, code)
    by_pid: dict[str, int] = {}
    for result in multimeter.load_results(tmp_path / "results"):
        pid = result.identifier.split("-")[1]
        by_pid[pid] = by_pid.get(pid, 0) + 1
    assert sorted(by_pid.values()) == [200, 400]


@pytest.fixture(autouse=True)
def _fresh_configuration():
    _config.reset()
    yield
    multimeter.flush(10)
    _config.reset()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.timeout(300)  # 200,000 calls stored and read back: minutes on a loaded machine
def test_a_signal_handler_that_calls_a_measured_function_never_hangs(tmp_path):
    """A heartbeat every 5 ms from a SIGALRM handler, itself measured, while the main
    thread makes measured calls in a tight loop: the handler often runs while a call
    is being packed (a heartbeat that lands while multimeter reads the probes is
    not measured, as calls made by multimeter's code are not). The program ends, and
    every call of the loop is stored once."""
    completed = run_program(
        tmp_path,
        """
        import signal
        import multimeter

        @multimeter.measured
        def heartbeat():
            pass

        @multimeter.measured
        def work(x):
            return x

        signal.signal(signal.SIGALRM, lambda signum, frame: heartbeat())
        signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
        for i in range(50_000):
            work(i)
        signal.setitimer(signal.ITIMER_REAL, 0)
        print("done")
        """,
        timeout=60,
    )
    assert "done" in completed.stdout
    names = [r.identifier.split("-")[0] for r in multimeter.load_results(tmp_path / "results")]
    assert 50_000 == names.count("work")
    assert names.count("heartbeat") > 0


class _Job:
    """A job for the writer that stores nothing."""

    storage = multimeter.DummyStorage()

    def build(self) -> Any:
        return None


def test_a_flush_from_a_signal_handler_while_the_writer_starts_starts_no_second_writer(
    monkeypatch,
):
    """Starting the writer waits for its thread to boot; a signal's handler that
    flushes meanwhile (in the same thread) must not start another writer, which would
    store every batch twice."""
    from multimeter._writer import Writer

    started: list[threading.Thread] = []
    real_start = threading.Thread.start
    writer = Writer()

    def start_and_get_flushed(thread: threading.Thread) -> None:
        started.append(thread)
        if len(started) == 1:
            writer._ensure_alive()  # what flush() does first, from a handler
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_and_get_flushed)
    writer.put(_Job())  # the first put starts the thread
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert 1 == len([t for t in started if t.name == "multimeter-writer"])


def test_a_call_that_ends_on_the_writer_thread_never_waits_for_room():
    """The garbage collector may close a measured generator on the writer's own
    thread (jinja2 leaves them unfinished, and the collector runs wherever objects
    are made): its call is queued even when the queue is full, since only the writer
    makes room. It waited for room forever (instrumented jinja2 hung at exit)."""
    from multimeter._writer import Writer

    writer = Writer(capacity=1)
    queued_on_the_writer = threading.Event()

    class EndsCallsOnTheWriter(_Job):
        def build(self) -> Any:
            writer.put(_Job())
            writer.put(_Job())  # the queue is full now
            queued_on_the_writer.set()
            return None

    writer.put(EndsCallsOnTheWriter())
    assert queued_on_the_writer.wait(10)
    assert (True, True) == writer.flush_status(10)
    assert 0 == writer.pending()
