"""The library's own logger, and ways to log failures that can never fail themselves.

Everything here is called from error paths (a probe that raised, a storage
that failed, a stack that is nearly exhausted): a log call that raises, for
example because the application's structlog processor raises, is swallowed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Any

import structlog

logger = structlog.get_logger("multimeter")


def safe_log(level: str, event: str, **fields: Any) -> None:
    """Log ``event`` at ``level``; never raises (not even ``RecursionError``)."""
    try:  # noqa: SIM105 - no contextlib.suppress: it costs frames a full stack lacks
        getattr(logger, level)(event, **fields)
    except Exception:  # noqa: BLE001 - logging must never break the caller
        pass


def describe(obj: Any) -> str:
    """``repr(obj)``, or its type's name when its ``__repr__`` raises."""
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not break an error path
        return f"<{type(obj).__name__}>"


def warn_once(key: Hashable, event: str, **fields: Any) -> None:
    """Log ``event`` as a warning the first time ``key`` is seen in this process
    (a forked child knows what its parent logged)."""
    try:
        from multimeter import _process  # it needs this module: imported on use

        first = object()
        # setdefault: one step no other thread splits, so two never both log.
        if _process.current().warned.setdefault(key, first) is not first:
            return
    except Exception:  # noqa: BLE001 - e.g. RecursionError on a nearly full stack
        return
    safe_log("warning", event, **fields)


class RateLimitedLog:
    """Logs the first failure of each kind at once, then at most one line per
    ``interval`` seconds for that kind, with the count of failures since the
    last line (a full disk fails every result: one line per result would flood
    the log)."""

    def __init__(self, event: str, interval: float = 10.0) -> None:
        self._event = event
        self._interval = interval
        self._lock = threading.Lock()
        self._kinds: dict[Hashable, list[Any]] = {}  # kind -> [last logged at, count since]

    def error(self, kind: Hashable, **fields: Any) -> None:
        """Count one failure of ``kind``; log it (with the count not logged) when due."""
        now = time.monotonic()
        with self._lock:
            entry = self._kinds.get(kind)
            if entry is None:
                if len(self._kinds) > 1000:
                    self._kinds.clear()
                entry = self._kinds[kind] = [-float("inf"), 0]
            if now - entry[0] < self._interval:
                entry[1] += 1
                return
            suppressed, entry[0], entry[1] = entry[1], now, 0
        if suppressed:
            fields["failures_not_logged"] = suppressed
        safe_log("error", self._event, **fields)

    def flush(self) -> None:
        """Log the count of failures not logged yet, if any (at exit)."""
        with self._lock:
            suppressed = sum(entry[1] for entry in self._kinds.values())
            for entry in self._kinds.values():
                entry[1] = 0
        if suppressed:
            safe_log("error", self._event, failures_not_logged=suppressed)


def forget_warnings() -> None:
    """Let every warning be logged once more (used by tests)."""
    from multimeter import _process

    _process.current().warned.clear()
