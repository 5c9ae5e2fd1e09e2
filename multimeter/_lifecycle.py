"""Every way a process ends passes through one flush: :func:`flush_at_exit`.

- normal exit, ``sys.exit()``: ``atexit``;
- a ``multiprocessing`` child (any start method; ``Pool`` and
  ``ProcessPoolExecutor`` workers), which ends with ``os._exit()``: a
  ``multiprocessing.util.Finalize`` registered when the process's writer starts;
- SIGTERM (``Pool.terminate()``, ``with Pool(...)``, a container stop) while the
  handler is the default one: our handler flushes, then the process dies of
  SIGTERM as before;
- ``os._exit()``, SIGKILL, an OOM kill: nothing can run; what is pending is lost.

The flush waits at most the exit timeout (``MULTIMETER_EXIT_TIMEOUT``); what is
still pending then goes to the spool of storages that have one, and what
cannot be kept is logged with its count.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from multimeter import _env, _process
from multimeter._log import safe_log
from multimeter._reentry import OwnThread, measuring_off
from multimeter._signal_watch import STORING_SIGNALS, stores_on_signal, storing_handler
from multimeter._writer import Latch
from multimeter.storages.base import keeps_for_later

if TYPE_CHECKING:
    from multimeter.multimeter import Snapshot

#: Seconds the exit gives the store in progress to end once the exit timeout has passed.
_STOP_WAIT = 0.5
#: The GIL switch interval while the exit flushes (see _switch_off).
_EXIT_SWITCH_INTERVAL = 0.0002


class _SwitchedOff:
    """What the exit switched off, given back if the process lives on (a part of
    the process's state): the configuration as it was, the GIL switch interval."""

    def __init__(self) -> None:
        self.configs: list[Any] = []
        self.intervals: list[float] = []


# -- measuring switched off for the exit -------------------------------------------


def peek() -> Snapshot | None:
    """The global configuration if there is one; builds nothing."""
    meter = _process.current().meter
    return None if meter is None else meter.snapshot


def switch_off_for_exit() -> Snapshot | None:
    """The process is ending: measure no new call (what is pending gets the writer to
    itself). Returns what to give to :func:`switch_back_on`.

    Waits for no lock: a SIGTERM's flush runs this while the thread the signal
    interrupted may be inside ``configure()`` or an exit flush of its own, holding
    a lock until the handler returns (which it never does). A ``configure()``
    racing the process's end loses nothing that the exit would have kept.
    """
    with measuring_off():  # code it runs may be measured (instrument())
        meter = _process.current().meter
        if meter is None:
            return None
        before = meter.snapshot
        if before.enabled:
            meter._update(enabled=False, wait=False)
    return before


def switch_back_on(before: Snapshot | None) -> None:
    """Undo :func:`switch_off_for_exit` (the process did not end after all)."""
    state = _process.current()
    with measuring_off(), state.config_lock:  # code it runs may be measured (instrument())
        meter = state.meter
        if before is not None and before.enabled and meter is not None:
            meter._update(enabled=True)


def _switch_off() -> None:
    """Measure no new call, and let the writer have the GIL back soon after each of
    its system calls: a thread of the application busy in pure Python would
    otherwise hold it a whole switch interval (5 ms) every time."""
    switched = _process.current().part(_SwitchedOff)
    switched.configs.append(switch_off_for_exit())
    interval = sys.getswitchinterval()
    if interval > _EXIT_SWITCH_INTERVAL:
        switched.intervals.append(interval)
        sys.setswitchinterval(_EXIT_SWITCH_INTERVAL)


def _exit_timeout() -> float:
    config = peek()
    return config.exit_timeout if config is not None else _env.DEFAULT_EXIT_TIMEOUT


def flush_at_exit(timeout: float | None = None) -> None:
    """Store what is pending in this process, waiting at most ``timeout`` seconds.

    Never raises. What is still pending after the timeout goes to the spool of
    storages that have one (``Storage.spool_results``); the rest is logged with
    its count. Unfinished temporary files of this process are removed.
    """
    state = _process.current()
    state.exit_flush = threading.get_ident()  # see _on_sigterm
    try:
        _flush_at_exit(_exit_timeout() if timeout is None else timeout)
    except BaseException as error:  # noqa: BLE001 - exit must go on
        safe_log("error", "multimeter could not flush at exit", error=repr(error))
    finally:
        state.exit_flush = None
    if state.exit_signal:  # one came in the middle of it: die of it now, as it asked
        die_of(state.exit_signal)


def _flush_at_exit(timeout: float) -> None:
    writer = _process.current().writer
    if not writer.started or writer.stopped:
        return  # nothing was queued, or an earlier exit path has given up already
    # Calls that other threads start from now on are not measured: the results
    # already made get the writer (and the time left) to themselves.
    _switch_off()
    started = time.monotonic()
    deadline = started + timeout
    writer.flush_status(timeout)  # everything queued so far, or until the timeout
    # Calls that were running end meanwhile (other threads, generators the garbage
    # collector closes): what they queued after the flush is flushed too, in the time left.
    while not writer.stopped and writer.pending() and time.monotonic() < deadline:
        writer.flush_status(max(deadline - time.monotonic(), 0.0))
    writer.failures.flush()
    # Other threads may still be making calls (daemon threads; any thread on
    # SIGTERM). The store in progress may finish (briefly); then no other starts,
    # so what is unstored stays so, is counted below, and no store is cut off
    # halfway by the end of the process.
    writer.stop(min(_STOP_WAIT, timeout))
    jobs = writer.unstored()
    lost = 0
    by_storage: dict[int, tuple[Any, list[Any]]] = {}
    for job in jobs:
        by_storage.setdefault(id(job.storage), (job.storage, []))[1].append(job)
    for storage, group in by_storage.values():
        if not keeps_for_later(storage):
            lost += len(group)
            continue
        results = [r for r in (writer.build(job) for job in group) if r is not None]
        try:
            storage.spool_results(results)
        except Exception as error:  # noqa: BLE001 - exit must go on
            lost += len(group)
            safe_log("error", "spooling at exit failed", error=repr(error))
        else:
            writer.forget(group)  # kept in the spool: never stored twice
    # Stores still in progress (or started from now on) would leave their
    # temporary files behind.
    _process.current().temporary_files.close()
    if not jobs:
        return
    safe_log(
        "warning",
        "results still pending at exit were not stored",
        pending=len(jobs),
        spooled=len(jobs) - lost,
        lost=lost,
        waited_s=round(time.monotonic() - started, 3),
    )


# -- multiprocessing children --------------------------------------------------------


def _register_finalizer() -> None:
    """In a process that uses multiprocessing, flush from a finalizer as well: its
    children end with ``os._exit()`` after running finalizers, never ``atexit``."""
    if "multiprocessing" not in sys.modules:
        return  # not a multiprocessing child; atexit serves
    from multiprocessing import util

    util.Finalize(None, flush_at_exit, exitpriority=100)


# -- SIGTERM ----------------------------------------------------------------------------


def _handles_sigterm() -> bool:
    config = peek()
    if config is not None:
        return config.handle_sigterm
    text = _env.get(_env.HANDLE_SIGTERM)
    try:
        return text is None or _env.parse_bool(_env.HANDLE_SIGTERM, text)
    except ValueError:
        return False  # configure() names the bad value; until then, stay out


class _SigtermExit:
    """The flush a SIGTERM starts, in a thread of its own, and what follows it.

    Should the process live on after the signal (SIGTERM's default action does
    nothing to pid 1 in a container), measuring resumes, but only once the flush
    is over: whichever of the handler and the flush thread comes second resumes.
    """

    def __init__(self, signum: int, timeout: float) -> None:
        self._signum = signum
        self._timeout = timeout
        self._lock = threading.Lock()  # new: nobody the signal interrupted holds it
        self._flushed = False
        self._survived = False
        self.done = Latch()  # the handler waits on it: an interrupt there must not jam it

    def flush(self) -> None:
        """The flush thread's work."""
        try:
            flush_at_exit(self._timeout)
        finally:
            with self._lock:
                self._flushed = True
                resume = self._survived
            self.done.set()
            if resume:
                _resume_after_sigterm(self._signum)

    def survived(self) -> None:
        """The handler is still running after the kill: resume, now or after the flush."""
        with self._lock:
            self._survived = True
            resume = self._flushed
        if resume:
            _resume_after_sigterm(self._signum)


def interrupts_exit_flush(signum: int) -> bool:
    """Whether ``signum`` interrupted this thread's own exit flush; it is then noted,
    and the process dies of it once that flush is over (see :func:`_on_sigterm`)."""
    state = _process.current()
    if state.exit_flush != threading.get_ident():
        return False
    state.exit_signal = signum
    return True


@storing_handler
def _on_sigterm(signum: int, frame: Any) -> None:
    """Store what is pending (bounded by the exit timeout), then die of the signal
    (SIGTERM, or SIGHUP: the terminal or the ssh connection went away).

    The flush runs in a thread of its own that the handler waits for, at most
    the exit timeout and a second: the code the signal interrupted may hold a
    lock the flush needs (a log call's, say), and the process must die anyway.
    When the signal interrupts this thread's own exit flush (a ``Pool`` worker's
    finalizer when ``Pool.terminate()`` comes), that flush holds such locks and
    goes on once the handler returns: it is left to finish, bounded by the exit
    timeout as always, and the process dies of the signal after it.
    """
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM kills at once
    if interrupts_exit_flush(signum):
        return
    job = None
    try:
        timeout = _exit_timeout()
        job = _SigtermExit(signum, timeout)
        flusher = OwnThread(job.flush, "multimeter-exit")
        flusher.start()
        job.done.wait(timeout + 1.0)
    except BaseException:  # noqa: BLE001 - dying of SIGTERM comes first
        pass
    die_of(signum)
    # Still alive: SIGTERM's default action does nothing here (pid 1 of a container
    # ignores it). Carry on measuring, as the program carries on.
    with contextlib.suppress(BaseException):
        time.sleep(0.05)  # a pending SIGTERM is delivered before this returns
        if job is not None:
            job.survived()


def die_of(signum: int) -> None:
    """Send this process ``signum`` (its action is the default one by now)."""
    _process.current().signal_watch.self_sent()
    os.kill(os.getpid(), signum)


def _resume_after_sigterm(signum: int) -> None:
    with contextlib.suppress(BaseException):
        state = _process.current()
        state.temporary_files.reopen()
        switched = state.part(_SwitchedOff)
        while switched.configs:
            switch_back_on(switched.configs.pop())
        while switched.intervals:
            sys.setswitchinterval(switched.intervals.pop())
        state.writer.resume()
        signal.signal(signum, _on_sigterm)
        safe_log(
            "warning",
            f"{signal.Signals(signum).name} did not end the process: measuring resumes,"
            " and results counted above as not stored are stored now",
            pending=state.writer.pending(),
        )


def install_sigterm_handler() -> bool:
    """Install the storing handler for SIGTERM and SIGHUP where their handler is the
    default one (``nohup`` ignores SIGHUP: left so).

    Only from the main thread (Python allows no other), never over a handler the
    application installed, never with ``MULTIMETER_HANDLE_SIGTERM=0``. Returns
    whether multimeter's handler is in place for SIGTERM. While one is in place,
    the process's :class:`~multimeter._signal_watch.SignalWatch` makes sure it runs.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        for signum in STORING_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL and _handles_sigterm():
                signal.signal(signum, _on_sigterm)
        ours = [stores_on_signal(signal.getsignal(signum)) for signum in STORING_SIGNALS]
    except (ValueError, OSError, AttributeError):
        return False
    if any(ours):
        _process.current().signal_watch.start()
    return ours[0]


def writer_started() -> None:
    """The first result of this process is on its way: make sure it will be flushed
    (the writer calls this, once per process)."""
    _register_finalizer()
    install_sigterm_handler()


atexit.register(flush_at_exit)
