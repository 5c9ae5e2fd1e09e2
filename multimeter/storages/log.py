"""A storage that writes one structured log event per result."""

from __future__ import annotations

from multimeter._log import logger
from multimeter.result import Result
from multimeter.storages.base import Storage

__all__ = ["LogStorage"]


class LogStorage(Storage):
    """Logs each result's :meth:`~multimeter.result.Result.summary` as one log event.

    The event is ``"measurement"`` at level info on the ``multimeter`` logger,
    with the fields ``identifier``, ``tags``, ``duration_s``, ``cpu_user_s``,
    ``cpu_system_s``, ``children_cpu_user_s``, ``children_cpu_system_s``,
    ``peak_memory_bytes``, ``max_rss_bytes``, ``outcome``, ``points`` and
    ``marks``. It goes where multimeter's log lines go: the standard ``logging``
    logger ``multimeter`` (as ``measurement key=value ...``, the fields also as the
    record's ``multimeter`` attribute), or structlog once the application has
    configured it, rendered as that configuration says (e.g. as JSON lines). Select it with
    ``MULTIMETER_STORAGE=log``.
    """

    def __init__(self, event: str = "measurement") -> None:
        self._event = event

    def store(self, result: Result) -> None:
        """Log the summary of ``result``."""
        logger.info(self._event, **result.summary())

    def __repr__(self) -> str:
        return "LogStorage()"
