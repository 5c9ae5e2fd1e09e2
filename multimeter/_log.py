"""The library's own logger, and ways to log failures that can never fail themselves.

Everything here is called from error paths (a probe that raised, a storage
that failed, a stack that is nearly exhausted): a log call that raises, for
example because the application's structlog processor raises, is swallowed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable
from typing import Any

import structlog

#: The standard ``logging`` logger multimeter logs to while the application has not
#: configured structlog.
LOGGER_NAME = "multimeter"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _Fields:
    """An event's fields as ``key=value`` pairs, rendered only if a handler writes them."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{key}={_value(value)}" for key, value in self.fields.items())


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() for c in value) else repr(value)
    return describe(value)


class Logger:
    """The library's logger: an event and its fields, like structlog's.

    Once the application has configured structlog, events go to structlog's
    logger ``multimeter`` and follow that configuration. Until then they go to the
    standard library's ``logging`` logger ``multimeter`` as ``event key=value ...``
    (the fields also as the record's ``multimeter`` attribute), so they follow the
    application's logging set-up; without one, Python's last-resort handler writes
    warnings and errors to stderr. multimeter never writes to stdout.
    """

    __slots__ = ()

    def log(self, level: str, event: str, **fields: Any) -> None:
        """Log ``event`` at ``level`` (``debug``, ``info``, ``warning``, ``error``)."""
        if structlog.is_configured():
            getattr(structlog.get_logger(LOGGER_NAME), level)(event, **fields)
            return
        standard = logging.getLogger(LOGGER_NAME)
        number = _LEVELS.get(level, logging.ERROR)
        if not standard.isEnabledFor(number):
            return
        if fields:
            standard.log(number, "%s %s", event, _Fields(fields), extra={"multimeter": fields})
        else:
            standard.log(number, "%s", event, extra={"multimeter": fields})

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at debug level."""
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at info level."""
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` as a warning."""
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` as an error."""
        self.log("error", event, **fields)


logger = Logger()


def safe_log(level: str, event: str, **fields: Any) -> None:
    """Log ``event`` at ``level``; never raises (not even ``RecursionError``)."""
    try:  # noqa: SIM105 - no contextlib.suppress: it costs frames a full stack lacks
        logger.log(level, event, **fields)
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
