"""The one sampler of the process: a background thread serving every active measurement.

Each measurement is a :class:`Session`. Sessions with the same cycle time
share a :class:`_Grid` of ticks at ``anchor + k * cycle`` on the monotonic
clock: a late tick does not shift the following ones, and ticks that could not
run at all are skipped rather than bunched. At a tick every probe in use is
read once; each due session turns those readings into values over its own
interval (see :class:`multimeter.probe.CumulativeProbe`). A session gets a
point at a tick only if at least half a cycle has passed since its previous
point, and always gets a final point when it ends.

The thread (a :class:`~multimeter._ticker.Ticker`: scheduling only) starts when
the first session begins, and ends when no session has been active for
``linger`` seconds. Probe code (``read``, ``sample``, ``start``,
``end``) never runs under the lock that measured calls may wait for: a slow
probe slows the sampler thread and the calls that read it themselves, nobody
else. Each process has its own sampler (``multimeter._process``): after
``os.fork()`` the child starts with an empty one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from multimeter._clock import SYSTEM_CLOCK, Clock
from multimeter._log import warn_once
from multimeter._reentry import MeasuringOffLock, measuring_off
from multimeter._session import (
    Session,
    call_hooks,
    needs_hook,
    probe_failed,
    read_probes,
    read_probes_guarded,
)
from multimeter._ticker import Ticker
from multimeter.probe import Probe

_TickHook = Callable[[float, float], None]


class Call(Protocol):
    """A measurement in flight that the sampler may promote to a :class:`Session`."""

    cycle: float
    start_mono: float
    session: Session | None

    def promote(self) -> Session:
        """Make (and remember in ``session``) the session that continues this call."""


class _Grid:
    """The ticks of one cycle time and the sessions that follow them."""

    __slots__ = ("anchor", "calls", "cycle", "k", "sessions")

    def __init__(self, cycle: float, anchor: float) -> None:
        self.cycle = cycle
        self.anchor = anchor
        self.k = 1
        self.sessions: dict[int, Session] = {}
        self.calls: dict[int, Call] = {}  # in flight, not yet promoted to sessions

    @property
    def deadline(self) -> float:
        return self.anchor + self.k * self.cycle

    def advance(self, now: float) -> None:
        """Move to the first tick after ``now``, skipping ticks that were missed."""
        self.k = max(self.k + 1, math.floor((now - self.anchor) / self.cycle) + 1)


class _ProbeState:
    __slots__ = ("last", "probe", "users")

    def __init__(self, probe: Probe, last: float) -> None:
        self.probe = probe
        self.users = 0
        self.last = last


class Sampler:
    """Serves every active session of the process from one thread.

    Args:
        clock: Where time comes from.
        threaded: Start a background thread on demand. Without one, call
            :meth:`run_due` to run the ticks that are due (tests do).
        linger: Seconds the thread waits for new sessions before it ends.
    """

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        *,
        threaded: bool = True,
        linger: float = 1.0,
    ) -> None:
        self._clock = clock
        self._linger = linger
        self.tick_hook: _TickHook | None = None
        # Calls made while a thread holds it (by a signal's handler) are not measured.
        self._lock = MeasuringOffLock()
        self._plain_lock = threading.Lock()
        self._grids: dict[float, _Grid] = {}
        self._probes: dict[int, _ProbeState] = {}
        self._active = 0
        self._idle_since = self._clock.monotonic()
        self._ticker = Ticker(self._lock, clock, self._plan, self.run_due) if threaded else None
        # The values each plain probe gave at its last sample (see finish()).
        self._last_values: dict[int, dict[str, Any]] = {}

    @property
    def clock(self) -> Clock:
        """The clock this sampler reads."""
        return self._clock

    # -- sessions -------------------------------------------------------------

    def begin(self, session: Session) -> None:
        """Start sampling ``session``: start its probes and take its first readings."""
        starting = []
        with self._lock:
            now = self._clock.monotonic()
            for probe in session.plan.tracked:
                state = self._probes.get(id(probe))
                if state is None:
                    state = self._probes[id(probe)] = _ProbeState(probe, now)
                state.users += 1
                if state.users == 1 and needs_hook(probe, "start"):
                    starting.append(probe)
        # Start hooks run before the session is sampled, outside the lock.
        call_hooks(starting, "start")
        with self._lock:
            grid = self._grids.get(session.cycle)
            if grid is None:
                grid = self._grids[session.cycle] = _Grid(session.cycle, now)
            session.last = now
            self._register(session, grid)
            ticker = self._ticker
            if ticker is not None:
                if ticker.thread is None:
                    ticker.start()
                elif grid.deadline < ticker.sleeping_until:
                    ticker.ring()
        session.start_from(read_probes_guarded(session.plan.cumulative), now)

    def _register(self, session: Session, grid: _Grid) -> None:
        """Make ``session`` one the ticks of ``grid`` serve (the lock is held)."""
        session.owner = self
        session.lock = self._lock
        session.builder.set_sync(session.sync)
        session.active = True
        grid.sessions[id(session)] = session
        self._active += 1

    def finish(
        self,
        session: Session,
        *,
        flush: bool = True,
        readings: dict[int, Any] | None = None,
        now: float | None = None,
        now_us: int | None = None,
    ) -> None:
        """Stop sampling ``session`` after queueing its final point.

        With ``flush=False`` the queued readings are turned into points later,
        by whoever first reads the result (the per-call path leaves that to the
        background writer).
        """
        if not session.active or session.owner is not self:
            return
        if readings is None or now is None or now_us is None:
            readings = read_probes_guarded(session.plan.cumulative)
            now = self._clock.monotonic()
            now_us = self._clock.time_us()
        plain = session.plan.plain
        plain_values = self._sample_plain(plain, wait=False) if plain else {}
        ending = []
        with self._lock:
            if not session.active or session.owner is not self:
                return  # lost a race with another finish(), or begun before a fork
            session.record(now, now_us, readings, plain_values)
            session.lock = None
            if flush:
                session.flush()
                session.builder.set_sync(None)
            else:
                session.builder.set_sync(session.flush)
            session.active = False
            grid = self._grids.get(session.cycle)
            if grid is not None:
                grid.sessions.pop(id(session), None)
            self._active -= 1
            if not self._active:
                self._idle_since = now
            for probe in session.plan.tracked:
                state = self._probes.get(id(probe))
                if state is None:
                    continue
                state.users -= 1
                if not state.users:
                    del self._probes[id(probe)]
                    if needs_hook(probe, "end"):
                        ending.append(probe)
        call_hooks(ending, "end")

    # -- calls: the cheap path for short measurements ----------------------------

    def enter(self, call: Call) -> None:
        """Track ``call`` (its start readings taken) without making a session.

        The sampler promotes it to a :class:`Session` at the first tick at least
        half a cycle after its start, so only calls that run that long pay for
        one. No lock is taken unless the grid or the thread must be made.
        """
        grid = self._grids.get(call.cycle)
        ticker = self._ticker
        idle = ticker is not None and ticker.thread is None
        if grid is None or idle:
            with self._lock:
                grid = self._grids.get(call.cycle)
                if grid is None:
                    grid = self._grids[call.cycle] = _Grid(call.cycle, self._clock.monotonic())
        grid.calls[id(call)] = call
        if ticker is None:
            return
        if idle:
            with self._lock:
                if ticker.thread is None:
                    ticker.start()
        elif grid.anchor + grid.k * grid.cycle < ticker.sleeping_until:
            ticker.ring()

    def leave(self, call: Call) -> Session | None:
        """Stop tracking ``call``; return its session if the sampler promoted it.

        Removing the call is one atomic ``dict.pop``: whoever removes it first
        wins. Only when the sampler got there first (the call was promoted) is
        the lock taken, to wait for the promotion to complete.
        """
        self._idle_since = self._clock.monotonic()  # the thread lingers from here
        grid = self._grids.get(call.cycle)
        if grid is not None and grid.calls.pop(id(call), None) is not None:
            return None
        with self._lock:
            return call.session

    def _promote(self, grid: _Grid, earliest: float) -> None:
        """Turn calls in flight since ``earliest`` or before into sessions (lock held)."""
        for key, call in list(grid.calls.items()):
            if call.start_mono > earliest or grid.calls.pop(key, None) is None:
                continue  # too young, or it has just left
            try:
                session = call.promote()
            except Exception as error:  # noqa: BLE001 - the sampler must go on
                warn_once(
                    ("promote", type(error)), "sampler failed to promote a call", error=repr(error)
                )
                continue
            self._register(session, grid)

    # -- ticks ----------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The time of the next tick that has sessions to serve, or ``None``."""
        with self._lock:
            return self._next_deadline()

    def _next_deadline(self) -> float | None:
        deadlines = [g.deadline for g in self._grids.values() if g.sessions or g.calls]
        return min(deadlines) if deadlines else None

    def run_due(self, now: float | None = None) -> int:
        """Run the ticks due at ``now`` (default: the clock's now); return how many ran.

        Probes of the documented protocol are sampled outside the sampler's lock
        (they may be slow); cumulative probes are read under it (they are cheap).
        """
        clock = self._clock
        if now is None:
            now = clock.monotonic()
        due: list[Session] = []
        ran = 0
        with self._lock:
            for grid in self._grids.values():
                deadline = grid.anchor + grid.k * grid.cycle
                if deadline > now or not (grid.sessions or grid.calls):
                    continue
                ran += 1
                if self.tick_hook is not None:
                    self.tick_hook(deadline, now)
                grid.advance(now)
                earliest = now - grid.cycle / 2
                if grid.calls:
                    self._promote(grid, earliest)
                due += [s for s in grid.sessions.values() if s.last <= earliest]
            if not due:
                return ran
        # Probes are read outside the lock: a slow probe must not hold up the
        # measured calls that start and end meanwhile.
        readings = self._read_cumulative(due)
        plain = dict.fromkeys(p for s in due for p in s.plan.plain)
        plain_values = self._sample_plain(plain) if plain else {}
        with self._lock:
            self._record(due, readings, plain_values)
        return ran

    def _record(
        self,
        due: list[Session],
        readings: dict[int, Any],
        plain_values: dict[int, dict[str, Any]],
    ) -> None:
        tick_time = self._clock.monotonic()
        tick_us = self._clock.time_us()
        for session in due:
            if session.active and session.last < tick_time:
                session.record(tick_time, tick_us, readings, plain_values)

    @staticmethod
    def _read_cumulative(sessions: Iterable[Session]) -> dict[int, Any]:
        """Each cumulative probe of the sessions read once."""
        return read_probes(dict.fromkeys(p for s in sessions for p in s.plan.cumulative))

    def _sample_plain(
        self, probes: Iterable[Probe], *, wait: bool = True
    ) -> dict[int, dict[str, Any]]:
        """Sample plain probes (one at a time: ``sample()`` keeps state).

        With ``wait=False`` (a measured call's final point) a probe being sampled
        by another thread right now is not waited for: its values from that
        latest sample are used instead.
        """
        if not self._plain_lock.acquire(wait):
            last = self._last_values
            return {id(p): last[id(p)] for p in probes if id(p) in last}
        plain_values: dict[int, dict[str, Any]] = {}
        try:
            with measuring_off():
                for probe in probes:
                    state = self._probes.get(id(probe))
                    now = self._clock.monotonic()
                    elapsed = now - state.last if state is not None else 0.0
                    values: dict[str, Any] = {}
                    try:
                        probe.sample(values, elapsed)
                    except Exception as error:  # noqa: BLE001
                        probe_failed(probe, error)
                        continue
                    if state is not None:
                        state.last = now
                    plain_values[id(probe)] = self._last_values[id(probe)] = values
        finally:
            self._plain_lock.release()
        return plain_values

    # -- the thread -----------------------------------------------------------

    def _plan(self, now: float) -> tuple[float, bool] | None:
        """When the thread wakes next (the lock is held): the next tick, the end of
        its lingering, or ``None`` (nothing measured for ``linger`` seconds: stop)."""
        deadline = self._next_deadline()
        if deadline is not None:
            return deadline, True
        idle = now - self._idle_since
        if self._active == 0 and idle >= self._linger:
            return None
        return now + max(self._linger - idle, 0.001), False

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._ticker is not None and self._ticker.running

    @property
    def thread(self) -> threading.Thread | None:
        """The background thread, while there is one."""
        return self._ticker.thread if self._ticker is not None else None
