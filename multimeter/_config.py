"""The process-global configuration: the one :class:`Multimeter` that
``configure()`` changes and ``get_multimeter()`` returns.

Its :class:`~multimeter.multimeter.Snapshot` is the whole configuration, one
immutable object: ``@measured`` calls read it (:func:`current`), the exit reads
it (:func:`peek`). Precedence for every setting: the explicit argument of
``configure()``, then the environment variable, then the built-in default.
Environment variables are read when the configuration is first built (first
use, or the first ``configure()``) and after :func:`reset`; a later
``configure()`` changes only the settings it is given.

``configure()`` itself lives in :mod:`multimeter._configure` (it also installs
the exit's SIGTERM handler); this module imports nothing of the exit, which
reads it.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from multimeter import _env, _process
from multimeter._aggregate import AggregatingStorage, check_calls, storage_for_calls
from multimeter._log import logger
from multimeter._reentry import measuring_off
from multimeter._spans import SPANS_CHOICES, check_spans
from multimeter._tags import normalize_tags
from multimeter.multimeter import Multimeter, Snapshot, check_cycle_time, check_storage
from multimeter.probe import Probe, ResourceProbe
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage

if TYPE_CHECKING:
    from multimeter.storages.influx import InfluxDBStorage
    from multimeter.storages.otlp import OTLPStorage


def _lazy(module: str, name: str) -> Callable[[], Probe]:
    """A constructor that imports its module only when a probe is made."""

    def make() -> Probe:
        import importlib

        made: Probe = getattr(importlib.import_module(module), name)()
        return made

    make.__qualname__ = name
    return make


#: Probes that ``MULTIMETER_PROBES`` and ``configure(probes=[...])`` can name.
PROBES: dict[str, Callable[[], Probe]] = {
    "resource": ResourceProbe,
    "psutil": _lazy("multimeter.probes.psutil", "PsutilProbe"),
    "system": _lazy("multimeter.probes.system", "SystemProbe"),
    "tracemalloc": _lazy("multimeter.probes.tracemalloc", "TracemallocProbe"),
    "gc": _lazy("multimeter.probes.gc", "GCProbe"),
    "nvml": _lazy("multimeter.probes.nvml", "NvmlProbe"),
}

# The global multimeter (None until first use, and after reset()), whether
# configure() was called since the start (or reset()), and the lock that serialises
# the changes (never taken by a call that is measured) are the process's
# (``ProcessState.meter``, ``configured``, ``config_lock``): a forked child carries
# on the configuration, with a lock of its own.


def _storage_from_env(environ: Mapping[str, str] | None) -> Storage:
    from multimeter.storages.file import FileStorage, JsonFormat, LineFormat
    from multimeter.storages.jsonl import JsonLinesStorage
    from multimeter.storages.log import LogStorage

    kind = _env.get(_env.STORAGE, environ)
    kind = "file" if kind is None else _env.parse_choice(_env.STORAGE, kind, _env.STORAGE_CHOICES)
    if kind == "none":
        return DummyStorage()
    if kind == "log":
        return LogStorage()
    if kind == "influxdb":
        return influxdb_storage_from_env(environ)
    if kind == "otlp":
        return otlp_storage_from_env(environ)
    text = _env.get(_env.FORMAT, environ)
    file_format = (
        "jsonl" if text is None else _env.parse_choice(_env.FORMAT, text, _env.FORMAT_CHOICES)
    )
    directory = _env.get(_env.DIR, environ) or _env.DEFAULT_DIR
    if file_format == "jsonl":
        return JsonLinesStorage(directory)
    return FileStorage(directory, JsonFormat() if file_format == "json" else LineFormat())


def influxdb_storage_from_env(environ: Mapping[str, str] | None = None) -> InfluxDBStorage:
    """An InfluxDBStorage from ``MULTIMETER_INFLUXDB_*`` (or ``INFLUXDB_V2_*``) variables."""
    from multimeter._url import is_http_url
    from multimeter.storages.influx import InfluxDBStorage

    def setting(name: str) -> str | None:
        value = _env.get(name, environ)
        fallback = _env.INFLUXDB_FALLBACKS.get(name)
        if value is None and fallback is not None:
            value = _env.get(fallback, environ)
        return value

    token = setting(_env.INFLUXDB_TOKEN)
    if token is None:
        raise ValueError(
            f"{_env.INFLUXDB_TOKEN} (or INFLUXDB_V2_TOKEN) must be set for"
            f" {_env.STORAGE}=influxdb; allowed: an InfluxDB API token"
        )
    url = setting(_env.INFLUXDB_URL) or "http://localhost:8086"
    if not is_http_url(url):
        raise ValueError(
            f"{_env.INFLUXDB_URL}={url!r} is not valid; allowed: an http(s)://host[:port] URL"
        )
    spool = _spool_directory(environ)
    return InfluxDBStorage(
        token,
        url=url,
        org=setting(_env.INFLUXDB_ORG) or "kantai",
        bucket=setting(_env.INFLUXDB_BUCKET) or "multimeter",
        spool_directory=spool,
    )


def _spool_directory(environ: Mapping[str, str] | None) -> str:
    """``MULTIMETER_SPOOL_DIR``, else ``<MULTIMETER_DIR>/spool``."""
    return _env.get(_env.SPOOL_DIR, environ) or str(
        pathlib.Path(_env.get(_env.DIR, environ) or _env.DEFAULT_DIR) / "spool"
    )


def otlp_storage_from_env(environ: Mapping[str, str] | None = None) -> OTLPStorage:
    """An OTLPStorage: the endpoint, headers, timeout and service from the standard
    ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME`` variables (read by the
    exporter and the SDK), the spool from ``MULTIMETER_SPOOL_DIR``."""
    from multimeter.storages.otlp import OTLPStorage

    return OTLPStorage(spool_directory=_spool_directory(environ))


def _probes_from_env(environ: Mapping[str, str] | None) -> list[Probe]:
    text = _env.get(_env.PROBES, environ)
    names = ["resource"] if text is None else _env.parse_names(_env.PROBES, text, tuple(PROBES))
    return [PROBES[name]() for name in dict.fromkeys(names)]


def _from_environment(
    *,
    storage: Storage | None = None,
    probes: Iterable[Probe | str] | None = None,
    cycle_time: float | None = None,
    tags: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    calls: str | None = None,
    spans: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every setting, from the arguments, the environment and the defaults (checked:
    the keywords of :meth:`Multimeter.update`).

    Raises:
        ValueError: naming the argument or the environment variable that is wrong.
    """
    if enabled is None:
        text = _env.get(_env.ENABLED, environ)
        enabled = True if text is None else _env.parse_bool(_env.ENABLED, text)
    elif not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    if cycle_time is None:
        text = _env.get(_env.CYCLE_TIME, environ)
        cycle_time = 1.0 if text is None else _env.parse_cycle_time(_env.CYCLE_TIME, text)
    cycle_time = check_cycle_time(cycle_time)
    global_tags = _global_tags(tags, environ)
    text = _env.get(_env.SAMPLE_RATE, environ)
    sample_rate = 1.0 if text is None else _env.parse_fraction(_env.SAMPLE_RATE, text)
    text = _env.get(_env.EXIT_TIMEOUT, environ)
    exit_timeout = (
        _env.DEFAULT_EXIT_TIMEOUT if text is None else _env.parse_positive(_env.EXIT_TIMEOUT, text)
    )
    text = _env.get(_env.HANDLE_SIGTERM, environ)
    handle_sigterm = True if text is None else _env.parse_bool(_env.HANDLE_SIGTERM, text)
    # Read elsewhere (the reader, the meta data), checked here with the rest.
    text = _env.get(_env.READER, environ)
    if text is not None:
        _env.parse_choice(_env.READER, text, _env.READER_CHOICES)
    text = _env.get(_env.RUN, environ)
    if text is not None:
        _env.parse_run(_env.RUN, text)
    if calls is None:
        text = _env.get(_env.CALLS, environ)
        calls = "each" if text is None else _env.parse_choice(_env.CALLS, text, _env.CALLS_CHOICES)
    else:
        calls = check_calls(calls)
    if spans is None:
        text = _env.get(_env.SPANS, environ)
        spans = "attributes" if text is None else _env.parse_choice(_env.SPANS, text, SPANS_CHOICES)
    else:
        spans = check_spans(spans)
    storage = _storage_from_env(environ) if storage is None else check_storage(storage)
    return {
        "probes": _probes_from_env(environ) if probes is None else _probe_list(probes),
        "cycle_time": cycle_time,
        "storage": storage_for_calls(storage, calls, cycle_time),
        "tags": global_tags,
        "enabled": enabled,
        "sample_rate": sample_rate,
        "exit_timeout": exit_timeout,
        "handle_sigterm": handle_sigterm,
        "spans": spans,
    }


def build(
    *,
    storage: Storage | None = None,
    probes: Iterable[Probe | str] | None = None,
    cycle_time: float | None = None,
    tags: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    calls: str | None = None,
    spans: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Multimeter:
    """A new multimeter (not the global one) configured from the arguments, the
    environment and the defaults, as the first ``configure()`` would be.

    Raises:
        ValueError: naming the argument or the environment variable that is wrong.
    """
    settings = _from_environment(
        storage=storage,
        probes=probes,
        cycle_time=cycle_time,
        tags=tags,
        enabled=enabled,
        calls=calls,
        spans=spans,
        environ=environ,
    )
    return Multimeter()._update(**settings)


def _global_tags(
    tags: Mapping[str, Any] | None, environ: Mapping[str, str] | None
) -> dict[str, str]:
    """``tags`` merged over ``MULTIMETER_TAGS``, checked."""
    text = _env.get(_env.TAGS, environ)
    env_tags = normalize_tags(_env.parse_tags(_env.TAGS, text) if text else {})
    _check_global_tags(env_tags, _env.TAGS)
    given_tags = normalize_tags(tags)
    _check_global_tags(given_tags, "tags")
    return {**env_tags, **given_tags}


def _changes(
    now: Snapshot,
    *,
    storage: Storage | None,
    probes: Iterable[Probe | str] | None,
    cycle_time: float | None,
    tags: Mapping[str, Any] | None,
    enabled: bool | None,
    calls: str | None,
    spans: str | None = None,
) -> dict[str, Any]:
    """The settings given, checked, as changes to ``now`` (the keywords of
    :meth:`Multimeter.update`); ``calls`` and ``cycle_time`` re-wrap the storage.

    Raises:
        ValueError: naming the argument that is wrong and the allowed values.
    """
    changes: dict[str, Any] = {}
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise ValueError(f"enabled must be True or False, got {enabled!r}")
        changes["enabled"] = enabled
    if cycle_time is not None:
        changes["cycle_time"] = check_cycle_time(cycle_time)
    if spans is not None:
        changes["spans"] = check_spans(spans)
    if tags is not None:
        changes["tags"] = _global_tags(tags, None)
    if probes is not None:
        changes["probes"] = _probe_list(probes)
    # Whether calls aggregate is the storage's to say (one owner of the setting).
    current = now.storage
    if calls is None:
        calls = "aggregate" if isinstance(current, AggregatingStorage) else "each"
    else:
        calls = check_calls(calls)
    inner = _unwrapped(current)
    if storage is not None:
        inner = check_storage(storage)
    cycle = changes.get("cycle_time", now.cycle_time)
    if not (
        calls == "aggregate"
        and isinstance(current, AggregatingStorage)
        and current.inner is inner
        and current.cycle_time == cycle
    ):
        wanted = storage_for_calls(inner, calls, cycle)
        if wanted is not current:
            changes["storage"] = wanted
    return changes


def _probe_list(probes: Any) -> list[Probe]:
    """Probe objects as given, probe names made into probes (each name once)."""
    if isinstance(probes, (Probe, str)) or not isinstance(probes, Iterable):
        raise ValueError(
            "probes must be a list of Probe objects or probe names such as"
            f" ['resource', 'psutil'], got {probes!r}"
        )
    made: list[Probe] = []
    named: set[str] = set()
    for item in probes:
        if isinstance(item, str):
            name = item.strip().lower()
            if name not in PROBES:
                raise ValueError(f"probes: unknown probe name {item!r}; known: {', '.join(PROBES)}")
            if name not in named:
                named.add(name)
                made.append(PROBES[name]())
        else:
            made.append(item)
    return made


def _check_global_tags(tags: Mapping[str, str], setting: str) -> None:
    """Global tags go on every result: refuse what the line format or InfluxDB refuse."""
    from multimeter.storages._line import check_series_tags

    try:
        check_series_tags(tags)
    except ValueError as error:
        raise ValueError(
            f"{setting}: {error}; allowed: keys not starting with '_', values not"
            " ending with a backslash"
        ) from None


def change(
    *,
    storage: Storage | None = None,
    probes: Iterable[Probe | str] | None = None,
    cycle_time: float | None = None,
    tags: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    calls: str | None = None,
    spans: str | None = None,
) -> Multimeter:
    """What ``configure()`` does to the configuration (see :func:`multimeter.configure`):
    the first call since the start (or :func:`reset`) sets every setting from the
    arguments, the environment and the defaults, a later one only those given.
    The global multimeter stays the same object; a storage it replaces is retired.

    Raises:
        ValueError: naming the bad argument or environment variable and the allowed values.
    """
    state = _process.current()
    asked = {
        "storage": storage,
        "probes": probes,
        "cycle_time": cycle_time,
        "tags": tags,
        "enabled": enabled,
        "calls": calls,
        "spans": spans,
    }
    if _interrupted(state):
        return _later(state, asked)
    with measuring_off():  # code it runs may be measured (instrument())
        with state.config_lock:
            meter = state.meter
            if meter is not None and state.configured:
                settings = _changes(
                    meter.snapshot,
                    storage=storage,
                    probes=probes,
                    cycle_time=cycle_time,
                    tags=tags,
                    enabled=enabled,
                    calls=calls,
                    spans=spans,
                )
            else:
                settings = _from_environment(
                    storage=storage,
                    probes=probes,
                    cycle_time=cycle_time,
                    tags=tags,
                    enabled=enabled,
                    calls=calls,
                    spans=spans,
                )
            before = None if meter is None else meter.snapshot
            if meter is None:
                meter = Multimeter()
            meter._update(**settings)
            state.meter = meter
            state.configured = True
            _catch_up(state, meter)
            after = meter.snapshot
        if before is not None:
            retire(before.storage, after.storage, after.exit_timeout)
    return meter


def _interrupted(state: Any) -> bool:
    """Whether this thread is in the middle of a change of the configuration: a
    signal's handler interrupted it (the reentrant lock is held by this thread)."""
    return bool(state.config_lock._is_owned())


def _later(state: Any, asked: dict[str, Any]) -> Multimeter:
    """A ``configure()`` from a signal's handler that interrupted a change in this
    thread: checked now (a bad value raises here), done when that change is over."""
    meter = state.meter
    if meter is not None and state.configured:
        _changes(meter.snapshot, **asked)  # raises ValueError for a bad value
    state.config_pending.append(asked)
    return meter if meter is not None else _stand_in()


def _catch_up(state: Any, meter: Multimeter) -> None:
    """Do what signal handlers asked while this change ran (see :func:`_later`)."""
    while state.config_pending:
        asked = state.config_pending.pop(0)
        try:
            meter._update(**_changes(meter.snapshot, **asked))
        except ValueError as error:
            logger.error("configure() from a signal handler failed", error=str(error))


def _stand_in() -> Multimeter:
    """A multimeter that measures nothing, for a signal's handler that interrupted
    the first build of the configuration in its thread (it is not kept)."""
    return Multimeter(storage=DummyStorage())._update(enabled=False)


def retire(old: Storage, new: Storage | None, timeout: float) -> None:
    """``old`` is replaced by ``new``: store what the writer still holds (waiting at
    most ``timeout`` seconds), then close ``old`` (only store what it holds back,
    when ``new`` keeps it inside). Never raises: a failure is logged.

    A call that was in flight at the change still goes to ``old``: the storages
    of multimeter stay usable after ``close()`` (a later store opens again).
    """
    if old is new:
        return
    with measuring_off():  # code it runs may be measured (instrument())
        try:
            writer = _process.current().writer
            if writer.started and not writer.flush(timeout):
                logger.warning(
                    "results for a replaced storage were not all stored in time; it is"
                    " closed anyway, later ones are stored in it as they come",
                    storage=repr(old),
                    timeout_s=timeout,
                )
            if new is not None and _unwrapped(old) is _unwrapped(new):  # calls changed only
                old.flush_buffers()
            else:
                old.close()
        except Exception as error:  # noqa: BLE001 - configure() and reset() never fail here
            logger.error("closing a replaced storage failed", storage=repr(old), error=repr(error))


def _unwrapped(storage: Storage) -> Storage:
    """The storage inside the one that aggregates calls, else ``storage``."""
    return storage.inner if isinstance(storage, AggregatingStorage) else storage


def current() -> Snapshot:
    """The global configuration, built from the environment on first use.

    A bad environment variable here (no explicit ``configure()`` call) is logged
    once, naming the variable, and measuring is switched off: the program runs on.
    """
    meter = _process.current().meter
    if meter is not None:
        return meter.snapshot
    return _implicit().snapshot


def _implicit() -> Multimeter:
    state = _process.current()
    # Measuring off while the configuration is built: it reads os.environ and more,
    # which instrument() may have measured (measuring would need this very lock).
    if _interrupted(state):
        return _stand_in()  # the interrupted build goes on once the handler returns
    with measuring_off(), state.config_lock:
        if state.meter is not None:
            return state.meter
        try:
            meter = build()
        except ValueError as error:
            logger.error(
                "multimeter is switched off: bad configuration in the environment",
                error=str(error),
            )
            meter = Multimeter(storage=DummyStorage())._update(enabled=False)
        except Exception as error:  # noqa: BLE001 - never into the measured code
            # A module the code interrupted by a signal's handler was importing, half
            # made, say: measure nothing now, build again at the next use.
            logger.warning(
                "building the configuration failed; trying again later", error=repr(error)
            )
            return _stand_in()
        state.meter = meter
        return meter


def get_multimeter() -> Multimeter:
    """The process-global multimeter (built from the environment on first use).

    ``configure()`` changes this very object: it stays the same until :func:`reset`.
    """
    meter = _process.current().meter
    return meter if meter is not None else _implicit()


def is_configured() -> bool:
    """Whether ``configure()`` was called since the process started (or since
    :func:`reset`); without it, the settings come from the environment and the defaults.
    """
    return _process.current().configured


def flush(timeout: float | None = None) -> bool:
    """Wait until every finished measurement is stored.

    Returns ``True`` when all were stored (or kept in a storage's spool),
    ``False`` when the timeout passed first or a storage failed (the failure
    is logged). Never waits on a writer thread that died: a new one takes over.
    """
    return _process.current().writer.flush(timeout)


def reset() -> None:
    """Go back to the configuration of a fresh process: the defaults and the
    ``MULTIMETER_*`` variables (read again at the next use), and
    :func:`is_configured` false.

    The storage in use is retired first: what the writer still holds is stored
    (waiting at most the exit timeout), then the storage is closed. Never raises
    (a failure is logged). The multimeter :func:`get_multimeter` returned before is
    left as it was; the next call returns a new one.
    """
    state = _process.current()
    with measuring_off():  # code it runs may be measured (instrument())
        with state.config_lock:
            meter = state.meter
            state.meter = None
            state.configured = False
        if meter is not None:
            now = meter.snapshot
            retire(now.storage, None, now.exit_timeout)
