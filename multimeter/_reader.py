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
The sequence number's high 32 bits hold the slot's *generation*: when a probe
is garbage-collected its collector is stopped and its slot is given to the
next registration with a new generation, so a late write of the old collector
is never taken for a reading of the new one.
The helper ends when the pipe it reads commands from closes, that is when the
measured process ends, however it ends. After ``fork()`` a child starts its own
reader on first use.
"""

from __future__ import annotations

import abc
import atexit
import collections
import contextlib
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

from multimeter._log import warn_once

__all__ = ["Collector", "Slot", "reader"]

#: Bytes of shared memory per reader: slots for ~40 collectors of 50 values.
MEMORY_SIZE = 1 << 16
_SEQ = struct.Struct("=Q")
_ERROR_TEXT = 240  # bytes of error text kept per slot
_ERROR = struct.Struct(f"=Q{_ERROR_TEXT}s")
#: A command: length of the pickle (0: stop the collector at the offset), slot
#: offset, generation.
_HEADER = struct.Struct("=QII")
_LOW = 0xFFFFFFFF


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

    :meth:`latest` returns ``(time, values)``: the ``time.monotonic()`` of the
    reading (the same clock in every process of the machine) and a tuple of
    floats, or ``None`` before the first reading. While the reading does not
    change, the same tuple object is returned.
    """

    __slots__ = (
        "_cached",
        "_error_seq",
        "_generation",
        "_label",
        "_memory",
        "_record",
        "_seq",
        "extent",
        "offset",
    )

    def __init__(
        self, memory: Any, offset: int, size: int, label: str, generation: int = 1
    ) -> None:
        self._memory = memory
        self.offset = offset
        self.extent = Slot.footprint(size)  # bytes it takes
        self._generation = generation
        self._record = struct.Struct(f"={size + 1}d")
        self._seq = generation << 32  # what a slot not written yet holds for us
        self._cached: tuple[float, tuple[float, ...]] | None = None
        self._error_seq = generation << 32
        self._label = label

    @staticmethod
    def footprint(size: int) -> int:
        """Bytes a slot of ``size`` values takes."""
        return _SEQ.size + 8 * (size + 1) + _ERROR.size

    def latest(self) -> tuple[float, tuple[float, ...]] | None:
        """The latest complete reading (see the class)."""
        memory, offset = self._memory, self.offset
        seq = _SEQ.unpack_from(memory, offset)[0]
        if seq == self._seq or seq & 1 or seq >> 32 != self._generation:
            return self._cached  # no new reading, one being written, or a former collector's
        record = self._record.unpack_from(memory, offset + _SEQ.size)
        if _SEQ.unpack_from(memory, offset)[0] != seq:
            return self._cached  # overwritten meanwhile: the next read gets it
        self._seq = seq
        self._cached = (record[0], record[1:])
        self._check_error()
        return self._cached

    def _check_error(self) -> None:
        at = self.offset + _SEQ.size + self._record.size
        error_seq, text = _ERROR.unpack_from(self._memory, at)
        if error_seq != self._error_seq and error_seq >> 32 == self._generation:
            self._error_seq = error_seq
            message = text.rstrip(b"\0").decode("utf-8", "replace")
            warn_once(
                ("reader", self._label, message.split(":")[0]),
                "probe reading failed; the figures it gives are missing or stale",
                probe=self._label,
                error=message,
            )


class _Reader:
    """The reader of this process: a helper process (or thread) and its memory."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._next_offset = 0
        self._memory: mmap.mmap | None = None
        self._commands = -1  # write end of the command pipe
        self._generation = 0
        #: Slots given back: footprint -> offsets.
        self._free: dict[int, list[int]] = {}
        #: Slots given back while the lock was taken: (offset, footprint).
        self._pending: collections.deque[tuple[int, int]] = collections.deque()
        self.running = 0  # collectors the reader runs now
        self.process: subprocess.Popen[bytes] | None = None
        self.thread: threading.Thread | None = None

    def register(self, collector: Collector, label: str) -> Slot:
        """Start running ``collector``; the returned slot shows its readings.

        Raises:
            ValueError: the shared memory has no room for another slot (about
                a hundred ``PsutilProbe`` alive at once).
        """
        size = len(collector.fields)
        payload = pickle.dumps(collector)
        with self._lock:
            if self._memory is None:
                self._start()
            self._take_pending()
            footprint = Slot.footprint(size)
            free = self._free.get(footprint)
            if free:
                offset = free.pop()
            else:
                offset = self._next_offset
                if offset + footprint > MEMORY_SIZE:
                    raise ValueError("too many background probes alive in one process")
                self._next_offset += footprint
            assert self._memory is not None
            self._generation = self._generation % _LOW + 1
            generation = self._generation
            header = _HEADER.pack(len(payload), offset, generation)
            os.write(self._commands, header + payload)
            self.running += 1
            return Slot(self._memory, offset, size, label, generation)

    def unregister(self, offset: int, footprint: int) -> None:
        """Stop the collector of a slot and keep the slot for the next one.

        Called when a probe is garbage-collected (from any thread, maybe while
        this thread holds the lock: then it is done at the next registration).
        """
        if self.pid != os.getpid():
            return  # a forked child's copy of its parent's reader
        if not self._lock.acquire(blocking=False):
            self._pending.append((offset, footprint))
            return
        try:
            self._pending.append((offset, footprint))
            self._take_pending()
        finally:
            self._lock.release()

    def _take_pending(self) -> None:
        while self._pending:
            offset, footprint = self._pending.popleft()
            if self._commands >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._commands, _HEADER.pack(0, offset, 0))
                    self._free.setdefault(footprint, []).append(offset)
                    self.running -= 1

    def _start(self) -> None:
        memory_file = _memory_file()
        self._memory = mmap.mmap(memory_file, MEMORY_SIZE)
        commands_in, self._commands = os.pipe()
        try:
            self.process = _spawn(memory_file, commands_in)
            # At exit the helper ends by itself once the pipe closes; closing it
            # here and waiting a moment also spares the interpreter's teardown a
            # "subprocess is still running" ResourceWarning.
            atexit.register(self._at_exit)
        except (OSError, ValueError) as error:
            warn_once(
                ("reader", "thread"),
                "cannot start the reader process; reading in a thread instead",
                error=repr(error),
            )
            reader_in = os.dup(commands_in)
            self.thread = threading.Thread(
                target=serve,
                args=(self._memory, reader_in),
                name="multimeter-reader",
                daemon=True,
            )
            self.thread.start()
        finally:
            os.close(commands_in)
            os.close(memory_file)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the reader (tests; at exit the pipe closes by itself)."""
        with self._lock:
            if self._commands >= 0:
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
        if self.pid == os.getpid():
            self.close(timeout=1.0)

    def forget(self) -> None:
        """In a forked child: let go of the parent's reader without touching it."""
        if self.process is not None:
            # Not this process's child: never wait for it, and no "subprocess
            # is still running" ResourceWarning when the copy is dropped.
            self.process.returncode = 0
        if self._commands >= 0:
            with contextlib.suppress(OSError):
                os.close(self._commands)
            self._commands = -1


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
    if not executable or os.environ.get("MULTIMETER_READER") == "thread":
        raise ValueError("no Python executable to run the reader with")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
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
    __slots__ = ("collector", "due", "error_seq", "generation", "offset", "seq", "values")

    def __init__(self, collector: Collector, offset: int, generation: int = 1) -> None:
        self.collector = collector
        self.offset = offset
        self.generation = generation << 32
        self.due = 0.0
        self.seq = 0
        self.error_seq = 0
        self.values = struct.Struct(f"={len(collector.fields) + 1}d")


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
        length, offset, generation = _HEADER.unpack_from(pending)
        end = _HEADER.size + length
        if len(pending) < end:
            break
        if length == 0:  # stop the collector of that slot
            running[:] = [r for r in running if r.offset != offset]
            pending = pending[end:]
            continue
        item: _Running | None = None
        try:
            collector = pickle.loads(pending[_HEADER.size : end])
            item = _Running(collector, offset, generation)
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
        _report(item, memory, f"{type(error).__name__}: {error}")
        return
    problem = getattr(collector, "problem", None)
    if problem:  # collected, but something was left out: say so once
        collector.problem = None  # type: ignore[attr-defined]
        _report(item, memory, problem)
    offset = item.offset
    item.seq = item.seq % (_LOW >> 1) + 1
    _SEQ.pack_into(memory, offset, item.generation | (item.seq * 2 - 1))
    memory[offset + _SEQ.size : offset + _SEQ.size + len(record)] = record
    _SEQ.pack_into(memory, offset, item.generation | (item.seq * 2))


def _report(item: _Running, memory: Any, text: str) -> None:
    item.error_seq = item.error_seq % _LOW + 1
    at = item.offset + _SEQ.size + item.values.size
    error_seq = item.generation | item.error_seq
    _ERROR.pack_into(memory, at, error_seq, text.encode("utf-8", "replace")[:_ERROR_TEXT])


_current: _Reader | None = None
_current_lock = threading.Lock()


def reader() -> _Reader:
    """The reader of the current process (started on first registration)."""
    global _current
    current = _current
    if current is not None and current.pid == os.getpid():
        return current
    with _current_lock:
        if _current is None or _current.pid != os.getpid():
            _current = _Reader()
        return _current


def current() -> _Reader | None:
    """The reader that serves this process now (``None`` before the first, or
    right after a fork)."""
    return _current


def _after_fork_in_child() -> None:
    global _current
    if _current is not None:
        _current.forget()
    _current = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
