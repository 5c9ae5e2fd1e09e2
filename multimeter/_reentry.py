"""Which threads are running multimeter's own code (their calls are not measured).

Measured code that a storage, a probe or a log processor calls would otherwise
feed itself: every result it stores would make another result.
"""

from __future__ import annotations

import _signal
import contextlib
import signal
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any


class _Busy(threading.local):
    busy = False


#: ``BUSY.busy`` is true on multimeter's own threads (sampler, writer) and, on a
#: user's thread, while multimeter reads the probes there.
BUSY = _Busy()


@contextlib.contextmanager
def measuring_off() -> Iterator[None]:
    """Measure no call on this thread meanwhile (probe code, storage code it runs)."""
    was_busy = BUSY.busy
    BUSY.busy = True
    try:
        yield
    finally:
        BUSY.busy = was_busy


#: Signals that arrive for the process as a whole (``kill``, a terminal, a timer):
#: the kernel hands each to any thread that does not block it. Faults and aborts
#: are the faulting thread's own, and SIGPIPE is ignored by Python: those stay.
_SYNCHRONOUS = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS", "SIGPIPE"}


def _asynchronous_signals() -> set[signal.Signals]:
    return {
        sig
        for sig in signal.valid_signals()
        if isinstance(sig, signal.Signals) and sig.name not in _SYNCHRONOUS
    }


class MeasuringOffLock:
    """A plain lock during whose holding no call is measured on the holding thread.

    A signal's handler runs in the main thread between two of its instructions,
    possibly while that thread holds this lock; a measured call made by the
    handler would wait for the lock forever. So the holder is marked busy (as
    multimeter's own threads are) from just before it takes the lock until just
    after it gives it back: such a call runs unmeasured instead of waiting.
    """

    __slots__ = ("_lock", "_was_busy")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._was_busy = False  # the holder's mark before it took the lock

    def __enter__(self) -> None:
        was_busy = BUSY.busy
        BUSY.busy = True
        self._lock.acquire()
        self._was_busy = was_busy  # only the holder writes or reads it

    def __exit__(self, *exc_info: object) -> None:
        was_busy = self._was_busy
        self._lock.release()
        BUSY.busy = was_busy


#: Signal numbers that may have a Python handler (plain ints: cheap to look up).
_CATCHABLE = tuple(int(sig) for sig in signal.valid_signals() if 0 < int(sig) < signal.NSIG)
#: ``signal.getsignal`` without its conversion of SIG_DFL and SIG_IGN to enum members
#: (about 1 us each, which a storm of signals whose handlers make measured calls
#: cannot afford): the C function behind it, where there is one.
_getsignal = getattr(_signal, "getsignal", signal.getsignal)


def made_by_signal_handler(frame: types.FrameType | None, depth: int = 8) -> bool:
    """Whether one of the ``depth`` frames from ``frame`` up runs a Python signal
    handler: the call was made by a handler that interrupted the thread (and not,
    say, by a probe that multimeter's code called). Costs a few microseconds: for rare paths."""
    codes = set()
    for signum in _CATCHABLE:
        try:
            handler = _getsignal(signum)
        except (ValueError, OSError):  # pragma: no cover - not a signal here
            continue
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            codes.add(code)
    while frame is not None and depth > 0 and codes:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
        depth -= 1
    return False


def own_thread() -> None:
    """Mark the calling thread as multimeter's own for its whole life: no call
    measured there (what a storage or a probe calls would otherwise feed itself)."""
    BUSY.busy = True


class OwnThread(threading.Thread):
    """A daemon thread of multimeter's (writer, sampler, exit flush, ...).

    It is born with every asynchronous signal blocked, so the kernel hands
    SIGTERM, SIGINT, SIGHUP, SIGALRM and the like to a thread of the
    application, where Python runs their handlers. A signal that reached one of
    ours instead would only set CPython's flag while the main thread sleeps on
    in a lock (a ``Pool`` worker in its queue's semaphore never woke up to die
    of ``Pool.terminate()``'s SIGTERM). The mask is set by the thread that
    starts this one, around ``start()``, so there is no moment at which the new
    thread can take a signal; the starting thread gets its own mask back at once
    (a signal that came meanwhile is delivered to it then).
    """

    def __init__(self, target: Callable[..., object], name: str, args: tuple[Any, ...] = ()):
        super().__init__(target=target, name=name, args=args, daemon=True)

    def run(self) -> None:
        own_thread()
        super().run()

    def start(self) -> None:
        mask = getattr(signal, "pthread_sigmask", None)
        if mask is None:  # pragma: no cover - Windows
            super().start()
            return
        previous = mask(signal.SIG_BLOCK, _BLOCKED)
        try:
            super().start()
        finally:
            mask(signal.SIG_SETMASK, previous)


_BLOCKED = _asynchronous_signals()
