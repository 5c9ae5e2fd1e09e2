"""The live status line of ``multimeter run`` on a terminal.

The line lives on the terminal's bottom row, outside a scroll region that
takes every other row (as ``apt`` draws its progress bar): the program's own
output scrolls above it and is never written over, whatever it writes and
whenever. Each redraw is one ``write()`` to stderr that saves the cursor,
draws the bottom row and puts the cursor back where the program left it (with
its colours), so the program's partial lines and prompts stay intact. At the
end the scroll region is given back and the row cleared. Without a terminal
on stderr (or with ``TERM=dumb``) nothing is drawn and no escape code is written.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import psutil

from multimeter._cli._common import format_bytes
from multimeter._reentry import OwnThread

#: Seconds between two redraws.
INTERVAL = 0.5


def wanted(descriptor: int = 2) -> bool:
    """Whether a status line can be drawn on ``descriptor``: a terminal that knows
    scroll regions (not ``TERM=dumb``) with at least 3 rows."""
    try:
        if not os.isatty(descriptor):
            return False
        rows = os.get_terminal_size(descriptor).lines
    except (OSError, ValueError):
        return False
    return os.environ.get("TERM", "") not in ("", "dumb") and rows >= 3


class _Tree:
    """CPU seconds and resident memory of a process and its live descendants."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self._skip = {os.getpid()} if pid != os.getpid() else set()

    def read(self) -> tuple[float, float]:
        cpu = memory = 0.0
        try:
            members = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            members = []
        for member in members:
            if member.pid in self._skip:
                continue
            try:
                with member.oneshot():
                    times = member.cpu_times()
                    cpu += times.user + times.system
                    memory += member.memory_info().rss
            except psutil.Error:
                continue
        return cpu, memory


class StatusLine:
    """Draws ``elapsed, CPU %, memory`` of the process tree of ``pid`` every half second.

    Use as a context manager around the run; nothing happens when ``enabled`` is false.
    """

    def __init__(self, pid: int, *, enabled: bool, descriptor: int = 2) -> None:
        self._pid = pid
        self._enabled = enabled
        self._descriptor = descriptor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rows = 0
        self._started = time.monotonic()
        self._owner = os.getpid()

    def __enter__(self) -> StatusLine:
        if self._enabled:
            try:
                self._tree = _Tree(self._pid)
                self._rows = os.get_terminal_size(self._descriptor).lines
            except (OSError, psutil.Error):
                self._enabled = False
                return self
            # Make room for the bottom row first: a cursor on it would be outside
            # the scroll region (where a newline does not scroll).
            self._write(f"\n\x1b[1A\x1b7\x1b[1;{self._rows - 1}r\x1b8")
            self._thread = OwnThread(self._loop, "multimeter-status")
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop drawing, give the scroll region back and clear the bottom row."""
        if not self._enabled or os.getpid() != self._owner:  # not in a forked child
            return
        self._enabled = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        rows = self._rows
        self._write(f"\x1b7\x1b[r\x1b[{rows};1H\x1b[2K\x1b8")

    def _loop(self) -> None:
        last_cpu, last_time = self._tree.read()[0], time.monotonic()
        while not self._stop.wait(INTERVAL):
            cpu, memory = self._tree.read()
            now = time.monotonic()
            percent = max(cpu - last_cpu, 0.0) / max(now - last_time, 1e-6) * 100
            last_cpu, last_time = cpu, now
            text = (
                f"multimeter: {now - self._started:7.1f} s   CPU {percent:5.0f} %"
                f"   memory {format_bytes(memory)}"
            )
            self._draw(text)

    def _draw(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            size = os.get_terminal_size(self._descriptor)
            text = text[: max(size.columns - 1, 0)]
            region = ""
            if size.lines != self._rows:  # resized: the region follows the new bottom row
                region = f"\x1b[1;{size.lines - 1}r"
                self._rows = size.lines
            # Save the cursor (and the program's colours), draw, restore: one write.
            self._write(f"\x1b7{region}\x1b[{self._rows};1H\x1b[0m\x1b[2K{text}\x1b8")

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        with contextlib.suppress(OSError):
            while data:
                written = os.write(self._descriptor, data)
                data = data[written:]
