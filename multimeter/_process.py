"""Everything that belongs to one process and must not survive ``fork()``.

One :class:`ProcessState` holds it: the pid, the random token in identifiers,
the call counter, the sampler, the writer, the last probe readings shared
between calls, the temporary files being written, the open cycles of
aggregate mode, the process's mark sink, and the per-process parts of other
modules (:meth:`ProcessState.part`). Code reaches it through :func:`current`
each time (never keeps it across calls that may straddle a fork).

This module's fork hook is the only one in multimeter: in a forked child it
replaces the whole object, so nothing of the parent's threads, queues or
locks is used there. A part that the child must carry on from the parent's
(renewing a lock, keeping memory mapped) says how with ``after_fork_in_child``.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from multimeter import _log
from multimeter._sampler import Sampler
from multimeter._signal_watch import SignalWatch
from multimeter._writer import Writer
from multimeter.storages._temporary import TemporaryFiles

#: Random bits in the token of each process: collisions between processes that
#: share a pid (containers: pid 1) are negligible at 64 bits.
TOKEN_BYTES = 8

T = TypeVar("T")


class ProcessState:
    """The state of the current process; replaced as a whole in a forked child."""

    __slots__ = (
        "aggregates",
        "calls",
        "config_lock",
        "config_pending",
        "configured",
        "exit_flush",
        "exit_signal",
        "last_reading",
        "marks",
        "meta",
        "meter",
        "names",
        "parts",
        "pid",
        "sampler",
        "shared_reading",
        "signal_watch",
        "temporary_files",
        "token",
        "unfinished",
        "warned",
        "writer",
    )

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = f"{self.pid}-{os.urandom(TOKEN_BYTES).hex()}"
        self.calls = itertools.count(1)
        #: Numbers that make the names this process gives unique (measurement
        #: identifiers, spool files).
        self.names = itertools.count(1)
        # The global configuration (see multimeter._config): the global Multimeter
        # (None until first use), whether configure() made it, and the lock of
        # changes. A forked child carries on its parent's configuration.
        self.meter: Any = None
        self.configured = False
        # Reentrant: a signal's handler may call configure() or get_multimeter() in
        # the thread whose change it interrupted (see _config: what it asks is done
        # once that change is over, in config_pending).
        self.config_lock = threading.RLock()
        self.config_pending: list[Any] = []
        self.sampler = Sampler()
        self.writer = Writer(token=self.token, on_start=_writer_started, orphaned=_orphaned())
        # (probe plan, monotonic time, readings) of the last end-of-call reading.
        self.last_reading: tuple[Any, float, tuple[Any, ...]] = (None, 0.0, ())
        # (resource reading, its figures other than the CPU times): the reading that
        # packed calls share (see _packed).
        self.shared_reading: tuple[Any, Any] = ((None, None), None)
        self.meta: dict[str, str] | None = None  # the process meta data, made on first use
        # The thread running the exit flush, while one runs; a storing signal that
        # came in the middle of it (see multimeter._lifecycle).
        self.exit_flush: int | None = None
        self.exit_signal = 0
        self.signal_watch = SignalWatch()  # makes sure a storing signal's handler runs
        self.temporary_files = TemporaryFiles()  # what FileStorage is writing right now
        # The calls folded but not stored yet, per aggregating storage (see _aggregate).
        self.aggregates: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        # Calls that a full stack cut short while they started (see _measured); a
        # dict: adding to it is not a call, which a full stack could not make.
        self.unfinished: dict[Any, None] = {}
        # Where the enter and exit marks of calls that no enclosing call collects go,
        # from any thread (``multimeter run``, the pytest plugin); None: nowhere.
        self.marks: Any = None
        # What _log.warn_once() has logged (the keys).
        self.warned: dict[Any, Any] = {}
        # Other modules' per-process objects, by their class (see part()).
        self.parts: dict[type, Any] = {}

    def part(self, kind: type[T]) -> T:
        """This process's instance of ``kind`` (made with ``kind()`` on first use).

        A module keeps what belongs to a process here rather than in a module
        global, so that a forked child starts with its own. In the child, an
        instance of the parent's with an ``after_fork_in_child()`` method is
        asked for the child's (it returns one, or ``None`` for a new one).
        """
        parts = self.parts
        found = parts.get(kind)
        if found is None:
            found = parts.setdefault(kind, kind())  # two threads: both get the first
        return found

    def _inherit(self, parent: ProcessState) -> None:
        """Carry on the parent's parts that ask to be (in a forked child), and what
        it has warned of."""
        self.warned = parent.warned.copy()
        self.meter = parent.meter
        self.configured = parent.configured
        for kind, part in list(parent.parts.items()):
            after_fork = getattr(part, "after_fork_in_child", None)
            if after_fork is None:
                continue
            try:
                kept = after_fork()
            except Exception as error:  # noqa: BLE001 - the child must go on
                _log.safe_log("warning", "renewing state after fork failed", error=repr(error))
                continue
            if kept is not None:
                self.parts[kind] = kept


def _writer_started() -> None:
    """The first result of this process is on its way: make sure it is flushed at exit."""
    from multimeter import _lifecycle  # _lifecycle needs this module: imported on use

    _lifecycle.writer_started()


def _orphaned() -> Callable[[], bool] | None:
    """In a child forked from a thread other than the main one, that thread is the
    child's main thread, and the child ends when it returns (no interpreter exit
    runs). Our threads must not keep such a child alive: the writer stops once
    that thread is gone and its queue is empty. ``None`` elsewhere."""
    main = threading.main_thread()
    if isinstance(main, getattr(threading, "_MainThread", ())):  # the interpreter's own
        return None
    return lambda: not main.is_alive()


_state = ProcessState()


def current() -> ProcessState:
    """The state of the current process.

    A new pid is noticed by the fork hook below, which Python runs in every child
    that ``os.fork()`` makes (``multiprocessing``'s fork and forkserver workers
    included), before any code of the child runs.
    """
    return _state


def _before_fork() -> None:
    _state.signal_watch.before_fork()


def _after_fork_in_parent() -> None:
    _state.signal_watch.after_fork_in_parent()


def _after_fork_in_child() -> None:
    global _state
    parent = _state
    _state = child = ProcessState()
    child._inherit(parent)
    parent.signal_watch.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
