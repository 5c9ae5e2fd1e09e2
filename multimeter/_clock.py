"""The clocks the sampler reads: monotonic for scheduling, wall time for timestamps."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the sampler needs from a clock; tests pass a fake."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    def time_us(self) -> int:
        """Wall-clock microseconds since the Unix epoch (UTC)."""


class SystemClock:
    """The real clocks."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def time_us() -> int:
        """Wall-clock microseconds since the Unix epoch (UTC)."""
        return time.time_ns() // 1000


SYSTEM_CLOCK = SystemClock()
