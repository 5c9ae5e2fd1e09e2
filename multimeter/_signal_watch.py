"""Make sure the handler of a storing signal (SIGTERM, SIGHUP) really runs.

CPython runs a signal's Python handler in the main thread, at its next check
between bytecodes, or when a blocking system call there is interrupted. With
another thread running (our writer), a signal that arrives while the main
thread is on its way into a blocking call can find neither: the main thread
waits on in ``sem_wait`` (a ``multiprocessing.Pool`` worker waiting for its
queue's lock) and the handler never runs. Without a Python handler the default
action would have killed the process; with ours, ``Pool.terminate()`` joined
such a worker forever (one worker in about 500).

So while one of multimeter's handlers is in place, the process's wakeup file
descriptor (``signal.set_wakeup_fd``: CPython writes each arriving signal's
number there from the C level) is a pipe that a thread of ours reads. When a
storing signal arrives and its handler has not started shortly after, that
thread sends the signal again to the main thread alone
(``signal.pthread_kill``), which interrupts the blocking call, and CPython runs
the handler. Where the application (asyncio's ``add_signal_handler``) has a
wakeup descriptor, it is left alone and nothing is watched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from multimeter._reentry import OwnThread

#: Signals that make multimeter store what is pending before the process dies of them.
STORING_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_Handler = TypeVar("_Handler", bound=Callable[..., Any])

#: How long a handler may take to start before the signal is sent to the main thread again.
_GRACE = 0.05
#: How many times it is sent again for one arrival.
_RETRIES = 5


_MARK = "_multimeter_stores_on_signal"


def storing_handler(handler: _Handler) -> _Handler:
    """Mark ``handler`` as one of multimeter's storing handlers (see :class:`SignalWatch`)."""
    setattr(handler, _MARK, True)
    return handler


def stores_on_signal(handler: object) -> bool:
    """Whether ``handler`` (as ``signal.getsignal`` returns it) is a storing handler."""
    return bool(getattr(handler, _MARK, False))


def _waiting(signum: int) -> bool:
    """Whether ``signum``'s handler is a storing handler of ours that has not started."""
    try:
        return stores_on_signal(signal.getsignal(signum))
    except (ValueError, OSError):  # pragma: no cover - not a signal here
        return False


class SignalWatch:
    """The wakeup pipe and its reader thread, for one process (see the module's doc).

    A handler of multimeter's is marked with :func:`storing_handler`; it sets its
    signal back to the default action first thing, so while the current handler
    is still a marked one, it has not started.
    """

    def __init__(self) -> None:
        self._read = -1
        self._write = -1
        self._thread: OwnThread | None = None
        # The forking thread's own mask, kept per thread: threads fork at the same time.
        self._forking = threading.local()
        self._self_sent = 0  # signals a handler sends itself to die of (not to resend)

    def start(self) -> None:
        """Watch, if the application has no wakeup descriptor (main thread only).

        Not in a child forked from a thread other than the main one: it ends when
        that thread returns, and a thread that only waits for signals would keep it
        alive (see ``multimeter._process``)."""
        main = threading.main_thread()
        if (
            self._thread is not None
            or threading.current_thread() is not main
            or not isinstance(main, getattr(threading, "_MainThread", ()))
        ):
            return
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except (ValueError, OSError):
            previous = None
        if previous != -1:  # the application's, or none could be set: keep out
            if previous is not None:
                with contextlib.suppress(ValueError, OSError):
                    signal.set_wakeup_fd(previous)
            os.close(read)
            os.close(write)
            return
        self._read, self._write = read, write
        self._thread = OwnThread(self._watch, "multimeter-signals")
        self._thread.start()

    def self_sent(self) -> None:
        """A handler is about to send itself its signal to die of it: do not resend it."""
        self._self_sent += 1

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._read, 512)
            except InterruptedError:  # pragma: no cover - our threads block signals
                continue
            except OSError:
                return
            if not data:
                return
            self._make_sure(set(data).intersection(STORING_SIGNALS))

    def _make_sure(self, arrived: Collection[int]) -> None:
        for signum in arrived:
            if self._self_sent:
                self._self_sent -= 1
                continue
            main = threading.main_thread().ident
            for _ in range(_RETRIES):
                time.sleep(_GRACE)
                if main is None or not _waiting(signum):
                    break  # the handler started (or the application replaced it)
                with contextlib.suppress(OSError, ValueError):
                    signal.pthread_kill(main, signum)

    # -- fork -----------------------------------------------------------------------

    def before_fork(self) -> None:
        """Block the storing signals whose handler is ours in the forking thread while
        the child is made (the child inherits that mask).

        A child has nothing of its own to store until it queues a result, but it
        inherits our handler; a SIGTERM it got before CPython reset its signal state
        was dropped (a child that SIG_DFL would have killed lived on), and its byte
        went to the parent's pipe, whose watch then sent SIGTERM to the parent. Blocked,
        it waits until :meth:`after_fork_in_child` has put the default action back.
        """
        ours = [signum for signum in STORING_SIGNALS if _waiting(signum)]
        mask = getattr(signal, "pthread_sigmask", None)
        if ours and mask is not None:
            with contextlib.suppress(ValueError, OSError):
                self._forking.mask = mask(signal.SIG_BLOCK, ours)

    def after_fork_in_parent(self) -> None:
        """Give the forking thread its signal mask back."""
        self._restore_mask()

    def after_fork_in_child(self) -> None:
        """In the child: let go of the parent's pipe, give the storing signals their
        default action (the handler comes back with the child's first result, see
        ``multimeter._lifecycle``), then unblock them: one that came meanwhile ends
        the child as it would have without multimeter."""
        if self._thread is not None:
            with contextlib.suppress(ValueError, OSError):
                current = signal.set_wakeup_fd(-1)
                if current not in (-1, self._write):  # the application's: keep it
                    signal.set_wakeup_fd(current)
            for descriptor in (self._read, self._write):
                with contextlib.suppress(OSError):
                    os.close(descriptor)
        for signum in STORING_SIGNALS:
            if _waiting(signum):
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(signum, signal.SIG_DFL)
        self._restore_mask()

    def _restore_mask(self) -> None:
        previous = getattr(self._forking, "mask", None)
        self._forking.mask = None
        if previous is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
