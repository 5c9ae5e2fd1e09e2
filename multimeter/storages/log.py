"""A storage that writes one structured log event per result."""

from __future__ import annotations

from multimeter._log import logger
from multimeter.result import Result
from multimeter.storages.base import Storage

__all__ = ["LogStorage"]


class LogStorage(Storage):
    """Logs each result's :meth:`~multimeter.result.Result.summary` as one structlog event.

    The event is ``"measurement"`` at level info on the ``multimeter`` logger,
    with the fields ``identifier``, ``tags``, ``duration_s``, ``cpu_user_s``,
    ``cpu_system_s``, ``children_cpu_user_s``, ``children_cpu_system_s``,
    ``peak_memory_bytes``, ``max_rss_bytes``, ``outcome``, ``points`` and
    ``marks``. How it is rendered (e.g. as JSON lines) is up to the
    application's structlog configuration. Select it with
    ``MULTIMETER_STORAGE=log``.
    """

    def __init__(self, event: str = "measurement") -> None:
        self._event = event

    def store(self, result: Result) -> None:
        """Log the summary of ``result``."""
        logger.info(self._event, **result.summary())

    def __repr__(self) -> str:
        return "LogStorage()"
