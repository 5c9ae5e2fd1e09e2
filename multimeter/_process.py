"""Everything that belongs to one process and must not survive ``fork()``.

One :class:`ProcessState` holds it: the pid, the random token in identifiers,
the call counter, the sampler, the writer, the last shared probe reading, the
temporary files being written and the open cycles of aggregate mode.
A single fork hook replaces the whole object in the child, so nothing of the
parent's threads, queues or locks is used there. Code reads ``_process.state``
each time (never keeps it), so after a fork it sees the child's state.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from multimeter import _log
from multimeter._sampler import Sampler
from multimeter._signal_watch import SignalWatch
from multimeter._writer import Writer
from multimeter.storages._temporary import TemporaryFiles

#: Random bits in the token of each process: collisions between processes that
#: share a pid (containers: pid 1) are negligible at 64 bits.
TOKEN_BYTES = 8


#: Called once per process, in the thread that starts the writer (see _lifecycle).
writer_started_hooks: list[Callable[[], None]] = []


def _writer_started() -> None:
    for hook in writer_started_hooks:
        hook()


class PackingLock:
    """The lock of a process's batches of packed calls (see ``multimeter._packed``),
    and whether the writer last found it held for long (by a thread that a signal's
    handler interrupted, say): then it does not wait for it again."""

    __slots__ = ("lock", "stuck")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stuck = False


class ProcessState:
    """The state of the current process; replaced as a whole in a forked child."""

    __slots__ = (
        "aggregates",
        "calls",
        "exit_flush",
        "exit_signal",
        "last_reading",
        "meta",
        "packed",
        "packed_epoch",
        "packing",
        "pid",
        "sampler",
        "signal_watch",
        "temporary_files",
        "token",
        "writer",
    )

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = f"{self.pid}-{os.urandom(TOKEN_BYTES).hex()}"
        self.calls = itertools.count(1)
        self.sampler = Sampler()
        self.writer = Writer(
            on_start=_writer_started, orphaned=_orphaned()
        )
        # (probe plan, monotonic time, readings) of the last end-of-call reading.
        self.last_reading: tuple[Any, float, tuple[Any, ...]] = (None, 0.0, ())
        self.meta: dict[str, str] | None = None  # the process meta data, made on first use
        # The batch that short calls are packed into now (see _packed); None: none open.
        self.packed: Any = None
        # Counts the jobs queued other than packed calls (see _packed.close).
        self.packed_epoch = 0
        self.packing = PackingLock()  # the lock of the packed calls' batches
        # The thread running the exit flush, while one runs; a storing signal that
        # came in the middle of it (see multimeter._lifecycle).
        self.exit_flush: int | None = None
        self.exit_signal = 0
        self.signal_watch = SignalWatch()  # makes sure a storing signal's handler runs
        self.temporary_files = TemporaryFiles()  # what FileStorage is writing right now
        # The calls folded but not stored yet, per aggregating storage (see _aggregate).
        self.aggregates: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _orphaned() -> Callable[[], bool] | None:
    """In a child forked from a thread other than the main one, that thread is the
    child's main thread, and the child ends when it returns (no interpreter exit
    runs). Our threads must not keep such a child alive: the writer stops once
    that thread is gone and its queue is empty. ``None`` elsewhere."""
    main = threading.main_thread()
    if isinstance(main, getattr(threading, "_MainThread", ())):  # the interpreter's own
        return None
    return lambda: not main.is_alive()


state = ProcessState()


def _before_fork() -> None:
    state.signal_watch.before_fork()


def _after_fork_in_parent() -> None:
    state.signal_watch.after_fork_in_parent()


def _after_fork_in_child() -> None:
    global state
    parent = state
    state = ProcessState()
    parent.signal_watch.after_fork_in_child()
    _log.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
