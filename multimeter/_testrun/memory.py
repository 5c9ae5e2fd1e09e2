"""A test's peak memory: how far the process's resident set rose above its size at the start.

On Linux the kernel's high-water mark (``VmHWM``) is reset to the current size
at the start of each test (writing ``5`` to ``/proc/self/clear_refs``), so the
mark read at its end is the test's own peak, however short the spike. Where that
cannot be done (macOS, a locked-down ``/proc``), the peak is the lifetime
high-water mark where the test raised it, else unknown.
"""

from __future__ import annotations

import os
import resource
import sys

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: ``ru_maxrss`` is in kilobytes on Linux, bytes on macOS.
_MAXRSS_SCALE = 1 if sys.platform == "darwin" else 1024


class PeakMemory:
    """Resets and reads the process's peak resident set size around each test."""

    def __init__(self) -> None:
        self.resets = _can_reset()

    def start(self) -> tuple[int, int]:
        """Reset the high-water mark (where possible); (resident bytes now, the mark now)."""
        if self.resets:
            if _reset():
                resident = _resident()
                return resident, resident  # the mark is the resident size now
            self.resets = False
        return _resident(), self._mark()

    def peak_rise(self, started: tuple[int, int]) -> tuple[int | None, int | None]:
        """(bytes the peak rose above the resident size at ``started``, the peak in bytes);
        ``None`` for what is not known."""
        resident, mark = started
        now = self._mark()
        if self.resets:
            return max(now - resident, 0), now
        if now > mark:  # the lifetime mark rose during the test: that is its peak
            return max(now - resident, 0), now
        return None, None

    def _mark(self) -> int:
        if self.resets:
            hwm = _status_kb("VmHWM:")
            if hwm is not None:
                return hwm * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_SCALE


def _can_reset() -> bool:
    return sys.platform.startswith("linux") and _reset() and _status_kb("VmHWM:") is not None


def _reset() -> bool:
    try:
        descriptor = os.open("/proc/self/clear_refs", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(descriptor, b"5")
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)


def _resident() -> int:
    try:
        descriptor = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            return int(os.read(descriptor, 512).split()[1]) * _PAGE
        finally:
            os.close(descriptor)
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_SCALE


def _status_kb(field: str) -> int | None:
    try:
        descriptor = os.open("/proc/self/status", os.O_RDONLY)
        try:
            text = os.read(descriptor, 16384)
        finally:
            os.close(descriptor)
        at = text.index(field.encode())
        return int(text[at + len(field) :].split(None, 1)[0])
    except (OSError, ValueError, IndexError):
        return None
