"""The shared sampler, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import threading
import time

import pytest

from multimeter._sampler import Sampler
from multimeter._session import Session
from multimeter.probe import Probe
from multimeter.result import Result, us_to_datetime
from multimeter.testing import CounterProbe, FakeClock


def _session(*probes, cycle: float = 1.0, name: str = "s") -> Session:
    return Session(Result(*probes, identifier=name), probes, cycle)


def _ticks(sampler: Sampler) -> list[tuple[float, float]]:
    seen: list[tuple[float, float]] = []
    sampler.tick_hook = lambda deadline, now: seen.append((deadline, now))
    return seen


def test_ticks_fall_on_the_grid_start_plus_k_cycles(sampler, clock):
    """Ticks are scheduled at start + k * cycle, whatever time they actually ran."""
    seen = _ticks(sampler)
    session = _session(CounterProbe(), cycle=0.5)
    sampler.begin(session)
    for _ in range(4):
        clock.advance(0.5 + 0.1)  # always a little late
        sampler.run_due()
    assert [1000.5, 1001.0, 1001.5, 1002.0] == [deadline for deadline, _ in seen]


def test_a_late_tick_does_not_shift_the_following_ones(sampler, clock):
    """After a tick 0.4 s late, the next one is still due at its grid time."""
    sampler.begin(_session(CounterProbe(), cycle=1.0))
    clock.advance(1.4)
    assert 1 == sampler.run_due()
    assert 1002.0 == sampler.next_deadline()


def test_ticks_that_could_not_run_are_skipped_not_bunched(sampler, clock):
    """Waking 3.5 cycles late runs one tick, and the next is due at the grid's next time."""
    session = _session(CounterProbe(), cycle=1.0)
    sampler.begin(session)
    clock.advance(3.5)
    assert 1 == sampler.run_due()
    assert 0 == sampler.run_due()
    assert 1004.0 == sampler.next_deadline()
    assert 1 == len(session.result)


def test_every_session_gets_a_final_point_even_shorter_than_a_cycle(sampler, clock):
    """A measurement of 10 ms with a 1 s cycle still has one point, with a rate."""
    probe = CounterProbe()
    session = _session(probe, cycle=1.0)
    sampler.begin(session)
    clock.advance(0.01)
    probe.value = 5.0
    sampler.finish(session)
    assert [pytest.approx(500.0)] == list(session.result.values("counter.rate"))


def test_overlapping_sessions_get_rates_over_their_own_intervals(sampler, clock):
    """One reading per tick serves both sessions; each divides by its own interval."""
    probe = CounterProbe()
    outer = _session(probe, name="outer")
    sampler.begin(outer)
    clock.advance(0.6)
    probe.value = 6.0  # 10/s during the first 0.6 s
    inner = _session(probe, name="inner")
    sampler.begin(inner)
    clock.advance(0.4)
    probe.value = 14.0  # 20/s during the next 0.4 s
    sampler.run_due()  # tick at 1001.0: outer is due, inner started only 0.4 s ago
    clock.advance(0.2)
    probe.value = 18.0  # 20/s
    sampler.finish(inner)
    sampler.finish(outer)
    assert [pytest.approx(14.0), pytest.approx(20.0)] == list(outer.result.values("counter.rate"))
    assert [pytest.approx(20.0)] == list(inner.result.values("counter.rate"))


def test_probes_are_read_once_per_tick_for_all_sessions(sampler, clock):
    """Ten sessions on one probe cost one reading per tick, not ten."""
    probe = CounterProbe()
    sessions = [_session(probe, name=f"s{i}") for i in range(10)]
    for session in sessions:
        sampler.begin(session)
    reads_before = probe.reads
    clock.advance(1.0)
    sampler.run_due()
    assert 1 == probe.reads - reads_before
    assert all(1 == len(s.result) for s in sessions)


def test_sessions_of_different_cycles_follow_their_own_grids(sampler, clock):
    """A 0.5 s session gets twice the points of a 1 s session over the same time."""
    fast, slow = _session(CounterProbe(), cycle=0.5), _session(CounterProbe(), cycle=1.0)
    sampler.begin(fast)
    sampler.begin(slow)
    for _ in range(8):
        clock.advance(0.25)
        sampler.run_due()
    assert (4, 2) == (len(fast.result), len(slow.result))


def test_probes_start_with_their_first_session_and_end_with_their_last(sampler, clock):
    """start() and end() are called once per period of use, however many sessions share it."""
    calls: list[str] = []

    class Recording(CounterProbe):
        def start(self):
            calls.append("start")

        def end(self):
            calls.append("end")

    probe = Recording()
    first, second = _session(probe), _session(probe)
    sampler.begin(first)
    sampler.begin(second)
    sampler.finish(first)
    assert ["start"] == calls
    sampler.finish(second)
    assert ["start", "end"] == calls


class Exploding(Probe):
    """A probe of the documented protocol that fails every time."""

    def sample(self, values, time_elapsed):
        raise OSError("sensor unplugged")


def test_a_failing_probe_is_logged_once_and_sampling_goes_on(sampler, clock, logs):
    """Its values are missing; the other probe's values are there; one warning only."""
    good = CounterProbe()
    session = _session(good, Exploding())
    sampler.begin(session)
    for _ in range(3):
        clock.advance(1.0)
        good.value += 1.0
        sampler.run_due()
    sampler.finish(session)
    assert 4 == len(session.result)
    assert all("counter.total" in p.values for p in session.result.points)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert 1 == len(warnings)
    assert "Exploding" == warnings[0]["probe"]
    assert "sensor unplugged" in warnings[0]["error"]


def test_a_probe_of_the_documented_protocol_is_sampled_with_the_elapsed_time(sampler, clock):
    """Plain Probe subclasses get sample(values, time_elapsed) once per tick."""
    elapsed: list[float] = []

    class Plain(Probe):
        def sample(self, values, time_elapsed):
            elapsed.append(time_elapsed)
            values["plain.value"] = 1.0

    session = _session(Plain())
    sampler.begin(session)
    clock.advance(1.0)
    sampler.run_due()
    clock.advance(0.25)
    sampler.finish(session)
    assert [1.0, 0.25] == elapsed
    assert [1.0, 1.0] == list(session.result.values("plain.value"))


def test_point_timestamps_follow_the_wall_clock(sampler, clock):
    """Each point is stamped with the wall time of the tick."""
    session = _session(CounterProbe())
    sampler.begin(session)
    clock.advance(1.0)
    sampler.run_due()
    assert us_to_datetime(clock.time_us()) == session.result.start


def test_the_thread_starts_on_demand_and_ends_when_nothing_is_measured():
    """One background thread; it goes away after the linger time with no sessions."""
    sampler = Sampler(linger=0.05)
    assert not sampler.running
    session = _session(CounterProbe(), cycle=0.01)
    sampler.begin(session)
    assert sampler.running
    sampler.finish(session)
    deadline = time.monotonic() + 10
    while sampler.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sampler.running


def test_one_thread_serves_many_concurrent_sessions():
    """However many sessions are active, there is one sampler thread."""
    sampler = Sampler()
    before = set(threading.enumerate())
    sessions = [_session(CounterProbe(), cycle=0.01, name=f"s{i}") for i in range(50)]
    for session in sessions:
        sampler.begin(session)
    started = set(threading.enumerate()) - before
    for session in sessions:
        sampler.finish(session)
    assert ["multimeter-sampler"] == [t.name for t in started]


def test_the_thread_samples_on_its_own():
    """With a real clock, points accumulate without any call from the test."""
    sampler = Sampler()
    session = _session(CounterProbe(), cycle=0.01)
    sampler.begin(session)
    deadline = time.monotonic() + 10
    while len(session.result) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.finish(session)
    assert len(session.result) >= 4


def test_fake_clock_moves_only_when_told(clock: FakeClock):
    """The fake clock is the seam that keeps these tests free of sleeps."""
    before = clock.monotonic()
    clock.advance(2.0)
    assert 2.0 == clock.monotonic() - before


def test_points_queued_in_batches_are_all_there_when_read(sampler, clock):
    """Ticks queue readings; reading the result (mid-measurement or after) shows every point."""
    probe = CounterProbe()
    session = _session(probe, cycle=1.0)
    sampler.begin(session)
    ticks = Session.BATCH + 5
    for _ in range(ticks):
        clock.advance(1.0)
        probe.value += 2.0
        sampler.run_due()
    assert ticks == len(session.result)
    assert [pytest.approx(2.0)] * ticks == list(session.result.values("counter.rate"))
    sampler.finish(session)
    assert ticks + 1 == len(session.result)


class _FakeCall:
    """A call in flight, as @measured makes them."""

    def __init__(self, probe, clock, cycle=1.0):
        self.cycle = cycle
        self.start_mono = clock.monotonic()
        self.session = None
        self.probe = probe
        self.reading = probe.read()

    def promote(self):
        session = Session(Result(self.probe, identifier="call"), (self.probe,), self.cycle)
        session.start_from({id(self.probe): self.reading}, self.start_mono)
        self.session = session
        return session


def test_short_calls_in_flight_never_become_sessions(sampler, clock):
    """A call that ends before half a cycle has passed costs no session."""
    call = _FakeCall(CounterProbe(), clock)
    sampler.enter(call)
    clock.advance(0.3)
    sampler.run_due()
    assert sampler.leave(call) is None


def test_long_calls_are_promoted_and_sampled_from_their_start(sampler, clock):
    """At the first tick half a cycle after its start, a call gets a session with rates."""
    probe = CounterProbe()
    call = _FakeCall(probe, clock)
    sampler.enter(call)
    for _ in range(3):
        clock.advance(1.0)
        probe.value += 4.0
        sampler.run_due()
    session = sampler.leave(call)
    assert session is call.session is not None
    clock.advance(0.5)
    sampler.finish(session)
    rates = list(session.result.values("counter.rate"))
    assert [pytest.approx(4.0)] * 3 + [pytest.approx(0.0)] == rates


def test_the_thread_lingers_after_the_last_call_in_flight():
    """Short calls keep the thread alive for the linger time, not just until they leave."""
    sampler = Sampler(linger=30.0)
    clock_now = time.monotonic

    class Call:
        cycle = 0.01
        session = None

        def __init__(self):
            self.start_mono = clock_now()

    call = Call()
    sampler.enter(call)
    thread = sampler.thread
    sampler.leave(call)
    time.sleep(0.05)  # several cycles: an idle thread without the linger would be gone
    assert sampler.running
    assert thread is sampler.thread
