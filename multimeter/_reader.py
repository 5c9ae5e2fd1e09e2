"""Reading expensive figures away from the measured program: the background reader.

Some figures cost far more to read than ``getrusage`` (psutil's ``/proc``
reads, a scan of the process table for the child tree, NVML): 80 µs to a few
milliseconds, and every file read gives up the GIL. Read on the sampler's
thread while the program runs CPU-bound Python, each of those GIL hand-overs
waits up to the interpreter's switch interval (5 ms), and a 100 ms cycle
stretches to a second. So such figures are read by a **reader**: one helper
process per measured process (``python -m multimeter._reader``), which runs
every registered :class:`Collector` at its own interval and writes each reading
into a slot of a shared memory block. The measured process then reads a slot
with a few ``struct`` unpacks: no system call, no GIL hand-over, about a
microsecond, so a probe built on it can be read on every measured call.

Where no helper process can be started (no usable ``sys.executable``, a
platform without ``pass_fds``), the same loop runs in a daemon thread of the
measured process: it works the same, but under a CPU-bound main thread its
readings come late.

A slot is a seqlock: the reader bumps the sequence number to an odd value,
writes the values, then bumps it to the next even value; the measured process
accepts a record only when it read the same even number before and after it.
A slot holds the collector's latest reading and the one before it (rates over
the collector's own latest interval). After each write the reader also bumps one
counter of the whole memory (:attr:`Reader.changes`): while it stays the same,
no slot has changed, so the per-call path checks that one number, however many
background probes are in use.
The helper ends when the pipe it reads commands from closes, that is when the
measured process ends, however it ends. After ``fork()`` a child starts its own
reader on first use.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import math
import mmap
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from multimeter import _env, _process
from multimeter._log import warn_once
from multimeter._reentry import OwnThread

__all__ = ["Collector", "Reader", "Reading", "Slot", "reader"]

#: A reading: (time, values, the collector's previous (time, values) or ``None``).
Reading = tuple[float, tuple[float, ...], "tuple[float, tuple[float, ...]] | None"]

#: Bytes of shared memory per reader: slots for ~80 collectors of 50 values.
MEMORY_SIZE = 1 << 17
_SEQ = struct.Struct("=Q")
#: The memory starts with the counter of slot writes, then come the slots.
_SLOTS_START = 64
_ERROR_TEXT = 240  # bytes of error text kept per slot
_ERROR = struct.Struct(f"=Q{_ERROR_TEXT}s")
_HEADER = struct.Struct("=QI")  # a command: length of the pickle, slot offset
#: ``thread`` reads in a thread of the measured process instead of a helper process.
READER_VARIABLE = _env.READER


class Collector(abc.ABC):
    """What a reader runs: gathers one reading of ``fields`` at a time.

    It is built in the measured process and pickled to the reader, so it must
    pickle (keep handles such as ``psutil.Process`` out of ``__init__``; make them
    in :meth:`open`). :meth:`collect` runs every :attr:`interval` seconds.
    """

    #: Seconds between two readings.
    interval: float = 0.1
    #: Processes to leave out of what is read (the reader process itself).
    exclude: frozenset[int] = frozenset()
    #: The pid of the measured process (set when the collector is registered).
    measured_pid: int = 0

    @property
    @abc.abstractmethod
    def fields(self) -> tuple[str, ...]:
        """The names of the values :meth:`collect` returns, in order (fixed)."""

    def open(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Prepare, in the reader, before the first :meth:`collect`."""

    @abc.abstractmethod
    def collect(self) -> Sequence[float]:
        """One reading: a value per field, ``math.nan`` for one not available now."""


class Slot:
    """The measured process's view of one collector's latest reading.

    :meth:`latest` returns ``(time, values, previous)``: the ``time.monotonic()``
    of the reading (the same clock in every process of the machine), a tuple of
    floats, and the collector's reading before it as ``(time, values)`` (``None``
    for its first); or ``None`` before the first reading. While the reading does
    not change, the same tuple object is returned.
    """

    __slots__ = (
        "_cached",
        "_error_seq",
        "_label",
        "_memory",
        "_offset",
        "_record",
        "_seq",
        "_size",
    )

    def __init__(self, memory: Any, offset: int, size: int, label: str) -> None:
        self._memory = memory
        self._offset = offset
        self._record = struct.Struct(f"={2 * (size + 1)}d")  # the latest and the one before
        self._size = size
        self._seq = 0
        self._cached: Reading | None = None
        self._error_seq = 0
        self._label = label

    @staticmethod
    def footprint(size: int) -> int:
        """Bytes a slot of ``size`` values takes."""
        return _SEQ.size + 16 * (size + 1) + _ERROR.size

    @property
    def has_reading(self) -> bool:
        """Whether :meth:`latest` has returned a reading of the reader's."""
        return self._cached is not None

    def latest(self) -> Reading | None:
        """The latest complete reading (see the class)."""
        memory, offset = self._memory, self._offset
        seq = _SEQ.unpack_from(memory, offset)[0]
        if seq == self._seq or seq & 1:
            return self._cached
        record = self._record.unpack_from(memory, offset + _SEQ.size)
        if _SEQ.unpack_from(memory, offset)[0] != seq:
            return self._cached  # overwritten meanwhile: the next read gets it
        self._seq = seq
        end = self._size + 1
        before = (record[end], record[end + 1 :]) if record[end] else None
        self._cached = (record[0], record[1:end], before)
        self._check_error()
        return self._cached

    def _check_error(self) -> None:
        at = self._offset + _SEQ.size + self._record.size
        error_seq, text = _ERROR.unpack_from(self._memory, at)
        if error_seq != self._error_seq:
            self._error_seq = error_seq
            message = text.rstrip(b"\0").decode("utf-8", "replace")
            warn_once(
                ("reader", self._label, message.split(":")[0]),
                "probe reading failed; the figures it gives are missing or stale",
                probe=self._label,
                error=message,
            )


class Reader:
    """The reader of this process: a helper process (or thread) and its memory."""

    def __init__(self, readers: _Readers) -> None:
        self._readers = readers  # the process's (see _Readers)
        self._lock = threading.Lock()
        self._next_offset = _SLOTS_START
        self._memory: mmap.mmap | None = None
        #: The counter of slot writes (``changes[0]``), once the reader has started.
        self.changes: memoryview | None = None
        self._commands = -1  # write end of the command pipe
        self._pipe: tuple[int, int] | None = None  # its (st_dev, st_ino): still ours?
        self._registered: dict[bytes, tuple[int, int]] = {}  # pickle: (offset, size) of its slot
        self.process: subprocess.Popen[bytes] | None = None
        self.thread: threading.Thread | None = None

    def register(self, collector: Collector, label: str) -> Slot:
        """Start running ``collector``; the returned slot shows its readings."""
        size = len(collector.fields)
        collector.measured_pid = os.getpid()
        payload = pickle.dumps(collector)
        with self._lock:
            if self._memory is None:
                self._start()
            assert self._memory is not None
            known = self._registered.get(payload)
            if known is not None:  # the same collector runs already: share its slot
                return Slot(self._memory, known[0], size, label)
            footprint = Slot.footprint(size)
            offset = self._next_offset
            if offset + footprint > MEMORY_SIZE:
                raise ValueError("too many background probes in one process")
            if not self._owns_commands():
                raise OSError("the reader's command pipe was closed or replaced by other code")
            self._next_offset += footprint
            os.write(self._commands, _HEADER.pack(len(payload), offset) + payload)
            self._registered[payload] = (offset, size)
            return Slot(self._memory, offset, size, label)

    def _owns_commands(self) -> bool:
        """Whether the command pipe's file descriptor is still the pipe (code that
        closes every descriptor, ``os.closerange``, may have given its number to a
        file of the program's own: never write to it or close it then)."""
        if self._commands < 0:
            return False
        try:
            status = os.fstat(self._commands)
        except OSError:
            return False
        return (status.st_dev, status.st_ino) == self._pipe

    @property
    def started_reading(self) -> bool:
        """Whether the reader has written anything (a reading, an error) into a slot."""
        memory = self._memory
        if memory is None:
            return False
        for offset, size in self._registered.values():
            errors_at = offset + Slot.footprint(size) - _ERROR.size
            if _SEQ.unpack_from(memory, offset)[0] or _SEQ.unpack_from(memory, errors_at)[0]:
                return True
        return False

    def _start(self) -> None:
        readers = self._readers
        memory_file = _memory_file()
        self._memory = mmap.mmap(memory_file, MEMORY_SIZE)
        # Never released: the memory stays mapped as long as the process lives (forget()).
        self.changes = memoryview(self._memory)[: _SEQ.size].cast("Q")
        commands_in, self._commands = os.pipe()
        status = os.fstat(self._commands)
        self._pipe = (status.st_dev, status.st_ino)
        try:
            if readers.in_thread or os.environ.get(READER_VARIABLE, "").strip().lower() == "thread":
                self.process = None
            elif readers.deaths >= MAX_DEATHS:
                raise OSError(f"the reader process died {readers.deaths} times")
            else:
                self.process = _spawn(memory_file, commands_in)
                # At exit the helper ends by itself once the pipe closes; closing it
                # here and waiting a moment spares the interpreter's teardown a
                # "subprocess is still running" ResourceWarning.
                atexit.register(self._at_exit)
        except (OSError, ValueError) as error:
            warn_once(
                ("reader", "thread"),
                "cannot start the reader process; reading in a thread instead",
                error=repr(error),
            )
        try:
            if self.process is not None:
                return
            reader_in = os.dup(commands_in)
            self.thread = OwnThread(serve, "multimeter-reader", (self._memory, reader_in))
            self.thread.start()
        finally:
            os.close(commands_in)
            os.close(memory_file)

    @property
    def alive(self) -> bool:
        """Whether the helper process (or thread) still runs."""
        if self.process is not None:
            # Its command pipe closed by other code (os.closerange), it has ended or will.
            return self.process.poll() is None and self._owns_commands()
        return self.thread is not None and self.thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the reader (tests; at exit the pipe closes by itself)."""
        with self._lock:
            if self._owns_commands():
                os.close(self._commands)
            self._commands = -1
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.thread is not None:
            self.thread.join(timeout)

    def _at_exit(self) -> None:
        if self._readers is _readers():  # not a copy in a forked child
            self.close(timeout=1.0)

    def forget(self, retired: list[Any]) -> None:
        """Let go of this reader without touching it (in a forked child, or once its
        helper died); its memory stays mapped, in ``retired``."""
        if self.process is not None and self.process.returncode is None:
            # Not to be waited for from here, and no "subprocess is still running"
            # ResourceWarning when the copy is dropped.
            self.process.returncode = 0
        if self._owns_commands():
            with contextlib.suppress(OSError):
                os.close(self._commands)
        self._commands = -1
        # Never unmapped: the mapping holds a duplicate of the memory's descriptor, and
        # that number may belong to a file of the program's by now (os.closerange).
        if self._memory is not None:
            retired.append(self._memory)


def _memory_file() -> int:
    """A file descriptor of ``MEMORY_SIZE`` zeroed bytes that no name points to."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("multimeter-reader", os.MFD_CLOEXEC)
    else:  # pragma: no cover - macOS and the BSDs
        import tempfile

        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())
    os.ftruncate(fd, MEMORY_SIZE)
    return fd


def _spawn(memory_file: int, commands_in: int) -> subprocess.Popen[bytes]:
    executable = sys.executable
    if not executable:
        raise ValueError("no Python executable to run the reader with")
    if getattr(sys, "frozen", False):  # PyInstaller, cx_Freeze: it would run the application
        raise ValueError(f"a frozen application: {executable} is not a Python to run the reader")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    # The reader imports what this process imports from where it does: multimeter,
    # psutil and a collector's modules, even where they were put on sys.path by hand.
    paths = [package_root] + [os.path.abspath(p or os.curdir) for p in sys.path if p != "-"]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if os.path.isdir(p)))
    env["MULTIMETER_ENABLED"] = "0"  # the reader measures nothing of its own
    return subprocess.Popen(
        [executable, "-m", "multimeter._reader", "--serve", str(memory_file), str(commands_in)],
        pass_fds=(memory_file, commands_in),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in a terminal goes to the program, not to it
        env=env,
    )


class _Running:
    __slots__ = ("before", "collector", "due", "error_seq", "offset", "seq", "values")

    def __init__(self, collector: Collector, offset: int) -> None:
        self.collector = collector
        self.offset = offset
        self.due = time.monotonic()  # the first collection at once, the next an interval later
        self.seq = 0
        self.error_seq = 0
        self.values = struct.Struct(f"={len(collector.fields) + 1}d")
        self.before = bytes(self.values.size)  # the previous record (time 0: none)


def serve(memory: Any, commands: int) -> None:
    """The reader's loop: take collectors from ``commands``, run each at its
    interval, write readings into ``memory``; return when the pipe closes."""
    running: list[_Running] = []
    pending = b""
    try:
        while True:
            now = time.monotonic()
            timeout = max(min((r.due for r in running), default=now + 3600.0) - now, 0.0)
            readable, _, _ = select.select([commands], [], [], timeout)
            if readable:
                data = os.read(commands, 1 << 16)
                if not data:
                    return
                pending += data
                pending = _take_commands(pending, memory, running)
            now = time.monotonic()
            for item in running:
                if item.due <= now:
                    _collect(item, memory)
                    item.due = max(item.due + item.collector.interval, time.monotonic())
    finally:
        os.close(commands)


def _take_commands(pending: bytes, memory: Any, running: list[_Running]) -> bytes:
    while len(pending) >= _HEADER.size:
        length, offset = _HEADER.unpack_from(pending)
        end = _HEADER.size + length
        if len(pending) < end:
            break
        item: _Running | None = None
        try:
            collector = pickle.loads(pending[_HEADER.size : end])
            item = _Running(collector, offset)
            collector.open()
        except Exception as error:  # noqa: BLE001 - reported through the slot
            if item is not None:
                _report(item, memory, f"{type(error).__name__}: {error}")
        else:
            running.append(item)
        pending = pending[end:]
    return pending


def _collect(item: _Running, memory: Any) -> None:
    collector = item.collector
    try:
        values = collector.collect()
        record = item.values.pack(time.monotonic(), *values)
    except Exception as error:  # noqa: BLE001 - reported through the slot
        # Said first, then a reading without values: the measured process sees
        # the figures go missing and, with that new reading, the error.
        _report(item, memory, f"{type(error).__name__}: {error}")
        nans = [math.nan] * len(collector.fields)
        _write(item, memory, item.values.pack(time.monotonic(), *nans))
        return
    _write(item, memory, record)
    problem = getattr(collector, "problem", None)
    if problem:  # collected, but something was left out: say so once
        collector.problem = None  # type: ignore[attr-defined]
        _report(item, memory, problem)


def _write(item: _Running, memory: Any, record: bytes) -> None:
    offset = item.offset
    item.seq += 1
    both = record + item.before
    _SEQ.pack_into(memory, offset, item.seq * 2 - 1)
    memory[offset + _SEQ.size : offset + _SEQ.size + len(both)] = both
    _SEQ.pack_into(memory, offset, item.seq * 2)
    item.before = record
    # Then the counter of the whole memory (one writer: this reader).
    _SEQ.pack_into(memory, 0, _SEQ.unpack_from(memory, 0)[0] + 1)


def _report(item: _Running, memory: Any, text: str) -> None:
    item.error_seq += 1
    at = item.offset + _SEQ.size + 2 * item.values.size
    _ERROR.pack_into(memory, at, item.error_seq, text.encode("utf-8", "replace")[:_ERROR_TEXT])


#: After this many deaths, a thread reads instead (a process that cannot run here).
MAX_DEATHS = 2


class _Readers:
    """The readers of one process (a part of its ``multimeter._process`` state)."""

    def __init__(self) -> None:
        self.current: Reader | None = None
        self.lock = threading.Lock()
        self.deaths = 0  # reader processes of this process that died
        #: Set once a reader process ended before its first reading: read in threads
        #: from then on (a forked child too).
        self.in_thread = False
        #: Memory of readers let go of, kept mapped (see :meth:`Reader.forget`).
        self.retired: list[Any] = []

    def after_fork_in_child(self) -> _Readers:
        """The child's readers: none yet; the parent's memory stays mapped."""
        child = _Readers()
        child.in_thread = self.in_thread
        child.retired = self.retired
        if self.current is not None:
            self.current.forget(child.retired)
        return child


def _readers() -> _Readers:
    return _process.current().part(_Readers)


def reader() -> Reader:
    """The reader of the current process (started on first registration)."""
    readers = _readers()
    current = readers.current
    if current is not None:
        return current
    with readers.lock:
        if readers.current is None:
            readers.current = Reader(readers)
        return readers.current


def replace(dead: Reader) -> None:
    """Drop ``dead`` (its helper has died): the next :func:`reader` starts anew,
    in a thread once processes died :data:`MAX_DEATHS` times."""
    readers = _readers()
    with readers.lock:
        if readers.current is dead:
            readers.deaths += 1
            status = dead.process.poll() if dead.process is not None else None
            if status is not None and status >= 0 and not dead.started_reading:
                # It ended by itself before it read anything (sys.executable is no
                # Python with multimeter and psutil: an embedding application, another
                # interpreter): another process would fail the same way. (One killed
                # by a signal is replaced by a new process.)
                readers.in_thread = True
                warn_once(
                    ("reader", "thread"),
                    "the reader process ended before its first reading; reading in a"
                    " thread instead",
                    executable=sys.executable,
                    exit_status=status,
                )
            else:
                warn_once(
                    ("reader", "died"),
                    "the reader process has died; starting a new one",
                    exit_status=status,
                )
            dead.forget(readers.retired)
            readers.current = None


def current() -> Reader | None:
    """The reader that serves this process now (``None`` before the first, or
    right after a fork)."""
    return _readers().current


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 3 or argv[0] != "--serve":
        print("usage: python -m multimeter._reader --serve MEMORY_FD COMMANDS_FD", file=sys.stderr)
        return 2
    memory_fd, commands = int(argv[1]), int(argv[2])
    memory = mmap.mmap(memory_fd, MEMORY_SIZE)
    os.close(memory_fd)
    serve(memory, commands)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
