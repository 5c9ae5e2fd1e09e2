"""The library's own logger, and a way to log a recurring failure only once."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

import structlog

logger = structlog.get_logger("multimeter")

_seen: set[Hashable] = set()
_seen_lock = threading.Lock()


def warn_once(key: Hashable, event: str, **fields: Any) -> None:
    """Log ``event`` as a warning the first time ``key`` is seen in this process."""
    with _seen_lock:
        if key in _seen:
            return
        _seen.add(key)
    logger.warning(event, **fields)


def forget_warnings() -> None:
    """Let every warning be logged once more (used by tests)."""
    with _seen_lock:
        _seen.clear()
