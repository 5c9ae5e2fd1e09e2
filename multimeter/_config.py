"""The process-global configuration behind ``configure()`` and ``get_multimeter()``.

Precedence for every setting: the explicit argument of ``configure()``, then
the environment variable, then the built-in default.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from multimeter import _env, _lifecycle, _process
from multimeter._log import logger
from multimeter._reentry import measuring_off
from multimeter._tags import normalize_tags
from multimeter.multimeter import Multimeter, check_cycle_time
from multimeter.probe import Probe, ResourceProbe
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage

if TYPE_CHECKING:
    from multimeter.storages.influx import InfluxDBStorage


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


@dataclass(frozen=True)
class Config:
    """The global settings, replaced as a whole by ``configure()``."""

    multimeter: Multimeter
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    sample_rate: float = 1.0
    exit_timeout: float = _env.DEFAULT_EXIT_TIMEOUT
    handle_sigterm: bool = True
    #: ``each`` (one result per ``@measured`` call) or ``aggregate`` (sums per cycle).
    calls: str = "each"


_current: Config | None = None
_lock = threading.Lock()


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
    spool = _env.get(_env.SPOOL_DIR, environ) or str(
        pathlib.Path(_env.get(_env.DIR, environ) or _env.DEFAULT_DIR) / "spool"
    )
    return InfluxDBStorage(
        token,
        url=url,
        org=setting(_env.INFLUXDB_ORG) or "kantai",
        bucket=setting(_env.INFLUXDB_BUCKET) or "multimeter",
        spool_directory=spool,
    )


def _probes_from_env(environ: Mapping[str, str] | None) -> list[Probe]:
    text = _env.get(_env.PROBES, environ)
    names = ["resource"] if text is None else _env.parse_names(_env.PROBES, text, tuple(PROBES))
    return [PROBES[name]() for name in dict.fromkeys(names)]


def build(
    *,
    storage: Storage | None = None,
    probes: Iterable[Probe | str] | None = None,
    cycle_time: float | None = None,
    tags: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    calls: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """A configuration from the arguments, the environment and the defaults.

    Raises:
        ValueError: naming the argument or the environment variable that is wrong.
    """
    from multimeter._aggregate import check_calls, storage_for_calls

    if enabled is None:
        text = _env.get(_env.ENABLED, environ)
        enabled = True if text is None else _env.parse_bool(_env.ENABLED, text)
    elif not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    if cycle_time is None:
        text = _env.get(_env.CYCLE_TIME, environ)
        cycle_time = 1.0 if text is None else _env.parse_cycle_time(_env.CYCLE_TIME, text)
    cycle_time = check_cycle_time(cycle_time)
    text = _env.get(_env.TAGS, environ)
    env_tags = normalize_tags(_env.parse_tags(_env.TAGS, text) if text else {})
    _check_global_tags(env_tags, _env.TAGS)
    given_tags = normalize_tags(tags)
    _check_global_tags(given_tags, "tags")
    global_tags = {**env_tags, **given_tags}
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
    if storage is None:
        storage = _storage_from_env(environ)
    storage = storage_for_calls(storage, calls, cycle_time)
    probe_list = _probes_from_env(environ) if probes is None else _probe_list(probes)
    meter = Multimeter(*probe_list, cycle_time=cycle_time, storage=storage)
    meter.set_tags(global_tags)
    return Config(meter, enabled, global_tags, sample_rate, exit_timeout, handle_sigterm, calls)


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


def configure(
    *,
    storage: Storage | None = None,
    probes: Iterable[Probe | str] | None = None,
    cycle_time: float | None = None,
    tags: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    calls: str | None = None,
) -> Multimeter:
    """Build (or replace) the process-global multimeter and return it.

    Arguments left out come from the environment variables (see the README),
    then from the defaults: the ``resource`` probe, a one-second cycle, JSON
    Lines batch files under ``./multimeter-results/``, measuring enabled.
    ``tags`` are added to every measurement, merged over ``MULTIMETER_TAGS``.
    ``probes`` takes probe objects and probe names (``resource``, ``psutil``,
    ``system``, ``tracemalloc``, ``gc``, ``nvml``), mixed as you like.
    ``calls``: ``"each"`` stores one result per ``@measured`` call,
    ``"aggregate"`` per function and cycle the count, errors, duration and CPU
    sums and a duration histogram (see the README, "Many calls: aggregate mode").

    Raises:
        ValueError: naming the bad argument or environment variable and the allowed values.
    """
    global _current
    config = build(
        storage=storage,
        probes=probes,
        cycle_time=cycle_time,
        tags=tags,
        enabled=enabled,
        calls=calls,
    )
    with measuring_off(), _lock:  # code it runs may be measured (instrument())
        _current = config
    _lifecycle.install_sigterm_handler()
    return config.multimeter


def current() -> Config:
    """The global configuration, built from the environment on first use.

    A bad environment variable here (no explicit ``configure()`` call) is logged
    once, naming the variable, and measuring is switched off: the program runs on.
    """
    config = _current
    if config is not None:
        return config
    return _implicit()


def _implicit() -> Config:
    global _current
    # Measuring off while the configuration is built: it reads os.environ and more,
    # which instrument() may have measured (measuring would need this very lock).
    with measuring_off(), _lock:
        if _current is not None:
            return _current
        try:
            config = build()
        except ValueError as error:
            logger.error(
                "multimeter is switched off: bad configuration in the environment",
                error=str(error),
            )
            config = Config(Multimeter(storage=DummyStorage()), enabled=False)
        _current = config
        return config


def peek() -> Config | None:
    """The global configuration if there is one; builds nothing."""
    return _current


def switch_off_for_exit() -> Config | None:
    """The process is ending: measure no new call (what is pending gets the writer to
    itself). Returns the configuration to give back with :func:`switch_back_on`.

    Takes no lock: a SIGTERM's flush runs this while the thread the signal
    interrupted may be inside :func:`configure` or an exit flush of its own, holding
    the configuration's lock until the handler returns (which it never does). One
    assignment of the global is atomic; a ``configure()`` racing the process's end
    loses nothing that the exit would have kept.
    """
    global _current
    with measuring_off():  # code it runs may be measured (instrument())
        config = _current
        if config is not None and config.enabled:
            _current = replace(config, enabled=False)
    return config


def switch_back_on(config: Config | None) -> None:
    """Undo :func:`switch_off_for_exit` (the process did not end after all)."""
    global _current
    with measuring_off(), _lock:  # code it runs may be measured (instrument())
        if config is not None:
            _current = config


def get_multimeter() -> Multimeter:
    """The process-global multimeter (built from the environment on first use)."""
    return current().multimeter


def flush(timeout: float | None = None) -> bool:
    """Wait until every finished measurement is stored.

    Returns ``True`` when all were stored (or kept in a storage's spool),
    ``False`` when the timeout passed first or a storage failed (the failure
    is logged). Never waits on a writer thread that died: a new one takes over.
    """
    return _process.state.writer.flush(timeout)


def reset() -> None:
    """Forget the global configuration (tests use this)."""
    global _current
    with measuring_off(), _lock:  # code it runs may be measured (instrument())
        _current = None
