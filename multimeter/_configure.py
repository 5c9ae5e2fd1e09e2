"""``configure()``: change the global configuration, and make sure the end of the
process stores what it measures.

The configuration itself is :mod:`multimeter._config`, which imports nothing of
the exit; the exit (:mod:`multimeter._lifecycle`) reads the configuration. This
module uses both: the imports run one way, with no circle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from multimeter import _config, _lifecycle
from multimeter.multimeter import Multimeter
from multimeter.probe import Probe
from multimeter.storages.base import Storage


def configure(
    *,
    storage: Storage | None = None,
    probes: Iterable[Probe | str] | None = None,
    cycle_time: float | None = None,
    tags: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    calls: str | None = None,
    spans: str | None = None,
) -> Multimeter:
    """Change the settings given; keep every other one. Returns the global
    multimeter, the same object :func:`~multimeter.get_multimeter` returns.

    >>> import multimeter
    >>> meter = multimeter.configure(storage=multimeter.DummyStorage())
    >>> multimeter.configure(tags={"team": "data"}) is meter  # the storage stays
    True

    The first call (since the start, or since :func:`~multimeter.reset`) takes
    what it is not given from the environment variables (see the README), then
    from the defaults: the ``resource`` probe, a one-second cycle, JSON Lines
    batch files under ``./multimeter-results/``, measuring enabled. A later
    call changes only what it is given.

    ``tags`` are added to every measurement, merged over ``MULTIMETER_TAGS``
    (they replace the tags an earlier call gave). ``probes`` takes probe objects
    and probe names (``resource``, ``psutil``, ``system``, ``tracemalloc``,
    ``gc``, ``nvml``), mixed as you like. ``calls``: ``"each"`` stores one
    result per ``@measured`` call, ``"aggregate"`` per function and cycle the
    count, errors, duration and CPU sums and a duration histogram (see the
    README, "Many calls: aggregate mode"). ``spans``: what ``@measured`` calls
    and measurements do with OpenTelemetry spans, where the program imported
    ``opentelemetry``: ``"attributes"`` (the default) puts their figures on the
    current span, ``"calls"`` makes each call its own span too (nested as the
    calls are), ``"off"`` leaves spans alone (see the guide "OpenTelemetry").

    A storage that a call replaces is retired: what the background writer
    still holds is stored (waiting at most the exit timeout), then the storage
    is closed. That never raises; a failure is logged.

    Raises:
        ValueError: naming the bad argument or environment variable and the allowed values.
    """
    meter = _config.change(
        storage=storage,
        probes=probes,
        cycle_time=cycle_time,
        tags=tags,
        enabled=enabled,
        calls=calls,
        spans=spans,
    )
    _lifecycle.install_sigterm_handler()
    return meter
