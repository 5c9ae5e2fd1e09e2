"""Store results as OpenTelemetry metrics, over OTLP/HTTP, in any backend.

Needs the optional dependencies: ``pip install 'multimeter[otel]'``; they are
imported only when an :class:`OTLPStorage` is made. Results are sent through
the official exporter (``opentelemetry-exporter-otlp-proto-http``), which reads
the standard ``OTEL_EXPORTER_OTLP_*`` variables; ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the service. What cannot be delivered waits
in the spool, as for InfluxDB, and ``multimeter push`` sends it later.

How a result becomes metrics (:func:`to_metrics_data`):

- Resource attributes: the service (``service.name``), ``host.name``,
  ``process.pid`` and ``multimeter.run`` of the process that measured.
- Each measure is a metric named ``multimeter.<measure key>``
  (``multimeter.process.cpu_user``): a figure per second (CPU seconds, page
  faults, bytes read) becomes a delta, monotonic counter of what happened in
  each point's interval (CPU seconds, faults, bytes), from the previous point
  (or the start) to the point; any other figure (``process.max_rss``,
  ``proc.rss``) a gauge at the point's time.
- ``multimeter.calls``: a counter of ``@measured`` calls, 1 per call from its
  start to its end, with ``error.type`` where the call raised.
- Data point attributes: the result's tags, and ``multimeter.function`` (a
  ``@measured`` call) or ``multimeter.measurement`` (the identifier of a
  ``measure()`` result). Marks are not sent.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from multimeter._log import safe_log
from multimeter._url import is_http_url
from multimeter.result import Result, datetime_to_us
from multimeter.storages._json import result_from_document, result_text
from multimeter.storages._spool import Outcome, PushReport, Spool
from multimeter.storages._spool import push as push_spool
from multimeter.storages.base import Storage

__all__ = ["OTLPDeliveryError", "OTLPStorage", "to_metrics_data"]

_DEFAULT_SPOOL = pathlib.Path("multimeter-results") / "spool"
#: Spooled OTLP batches: results as JSON Lines (InfluxDB's are ``.line``).
SPOOL_SUFFIX = ".jsonl"
#: Answers after which the same data may succeed later (else it is rejected).
_RETRYABLE_STATUS = frozenset((408, 429, 500, 502, 503, 504))
_SCOPE = "multimeter"
_UNITS = {"B": "By", "B/s": "By", "s/s": "s", "1/s": "1", "%": "%"}


class OTLPDeliveryError(OSError):
    """Raised by :meth:`OTLPStorage.store` when data is not stored: neither
    delivered nor kept in the spool (lost, logged), or rejected by the endpoint
    (set aside in ``<spool>/rejected/``, logged). ``multimeter.flush()`` then
    returns ``False``."""


def _rate(unit: str) -> bool:
    return unit.endswith("/s")


def _unit(unit: str) -> str:
    """The UCUM unit OpenTelemetry uses for an amount (a rate's per-second part gone)."""
    if unit in _UNITS:
        return _UNITS[unit]
    return unit[: -len("/s")] if _rate(unit) else unit


def to_metrics_data(results: Iterable[Result], service: Any = None) -> Any:
    """``results`` as an OpenTelemetry SDK ``MetricsData`` (see the module's doc);
    ``service`` is the resource the process's attributes are merged into
    (default: ``Resource.create()``: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``)."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from multimeter._version import __version__

    base = service if service is not None else Resource.create()
    # (host, pid, run) -> metric name -> (unit, description, is a counter, points)
    groups: dict[tuple[str, str, str], dict[str, tuple[str, str, bool, list[Any]]]] = {}
    for result in results:
        meta = result.meta_data
        key = (meta.get("host", ""), meta.get("pid", ""), meta.get("run", ""))
        metrics = groups.setdefault(key, {})
        attributes: dict[str, Any] = dict(result.tags)
        function = meta.get("function")
        if function is not None:
            attributes["multimeter.function"] = function
        else:
            attributes["multimeter.measurement"] = result.identifier
        data = result.data()
        times = data.times_us
        if not times:
            continue
        start = result.start
        origin = datetime_to_us(start) if start is not None else times[0]
        units = {m.key: m.metric for m in result.schema.measures}
        for key_name, column, missing in data.columns:
            metric = units.get(key_name)
            unit = metric.unit if metric is not None else ""
            counter = _rate(unit)
            name = f"multimeter.{key_name}"
            entry = metrics.get(name)
            if entry is None:
                description = metric.description if metric is not None else ""
                entry = metrics[name] = (_unit(unit), description, counter, [])
            points = entry[3]
            previous = origin
            for index, moment in enumerate(times):
                value = column[index]
                if index in missing or value is None or value != value:
                    previous = moment
                    continue
                if counter:
                    value = value * max(moment - previous, 0) / 1e6
                points.append(
                    NumberDataPoint(
                        attributes=attributes,
                        start_time_unix_nano=previous * 1000 if counter else 0,  # gauges: none
                        time_unix_nano=moment * 1000,
                        value=float(value),
                    )
                )
                previous = moment
        if function is not None:
            entry = metrics.get("multimeter.calls")
            if entry is None:
                entry = metrics["multimeter.calls"] = (
                    "{call}",
                    "Calls of measured functions that ended",
                    True,
                    [],
                )
            call_attributes = attributes
            if meta.get("outcome") == "raise":
                error = meta.get("exception_type", "")
                call_attributes = {**attributes, "error.type": error.rsplit(".", 1)[-1]}
            entry[3].append(
                NumberDataPoint(
                    attributes=call_attributes,
                    start_time_unix_nano=origin * 1000,
                    time_unix_nano=times[-1] * 1000,
                    value=1,
                )
            )
    scope = InstrumentationScope(_SCOPE, __version__)
    resource_metrics = []
    for (host, pid, run), metrics in groups.items():
        own: dict[str, Any] = {"host.name": host}
        if pid.isdigit():
            own["process.pid"] = int(pid)
        if run:
            own["multimeter.run"] = run
        made = []
        for name, (unit, description, counter, points) in metrics.items():
            if not points:
                continue
            kind: Any = (
                Sum(points, AggregationTemporality.DELTA, is_monotonic=True)
                if counter
                else Gauge(points)
            )
            made.append(Metric(name=name, description=description, unit=unit, data=kind))
        if made:
            resource_metrics.append(
                ResourceMetrics(
                    resource=base.merge(Resource(own)),
                    scope_metrics=[ScopeMetrics(scope=scope, metrics=made, schema_url="")],
                    schema_url="",
                )
            )
    return MetricsData(resource_metrics=resource_metrics)


class OTLPStorage(Storage):
    """Sends results as OpenTelemetry metrics to an OTLP/HTTP endpoint (a
    collector, or a backend that takes OTLP: Grafana, Datadog, Honeycomb, ...).

    Sent through the official ``OTLPMetricExporter`` (HTTP, protobuf), which
    retries what may succeed later (connection errors, 429, 5xx) within its
    timeout. When :meth:`store` returns, the results were delivered or, if the
    endpoint could not be reached, written to the spool directory (as JSON
    Lines of results), to be sent later by ``multimeter push`` (or by the next
    successful delivery, with ``drain_spool=True``). Data the endpoint rejects
    (another 4xx) is logged and set aside in ``<spool>/rejected/``; it is not
    retried. Data not stored makes :meth:`store` raise
    :class:`OTLPDeliveryError` (``@measured`` calls never see it).

    Args:
        endpoint: The metrics URL (``.../v1/metrics``); default: the exporter's
            (``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, else
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/metrics``, else
            ``http://localhost:4318/v1/metrics``).
        headers: HTTP headers (an API key); default:
            ``OTEL_EXPORTER_OTLP_(METRICS_)HEADERS``.
        timeout: Seconds per delivery, the exporter's retries included;
            default: ``OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT``, else 10.
        service_name: ``service.name``; default: ``OTEL_SERVICE_NAME``, else
            the SDK's default.
        spool_directory: Where undelivered data goes (default
            ``multimeter-results/spool``).
        drain_spool: After a successful delivery, also send what waits in the spool.

    Raises:
        ValueError: for a bad timeout or an empty service name.
        ImportError: when the ``otel`` extra is not installed.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        service_name: str | None = None,
        spool_directory: str | os.PathLike[str] | None = None,
        drain_spool: bool = True,
    ) -> None:
        if endpoint is not None and not is_http_url(endpoint):
            raise ValueError(
                f"endpoint must be an http(s)://host[:port][/path] URL, got {endpoint!r}"
            )
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or not timeout > 0
        ):
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        if service_name is not None and (not isinstance(service_name, str) or not service_name):
            raise ValueError(f"service_name must be a non-empty str, got {service_name!r}")
        if headers is not None and (
            not isinstance(headers, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise ValueError(f"headers must be a mapping of str to str, got {headers!r}")
        if spool_directory is not None and not isinstance(spool_directory, (str, os.PathLike)):
            raise ValueError(f"spool_directory must be a path, got {spool_directory!r}")
        if not isinstance(drain_spool, bool):
            raise ValueError(f"drain_spool must be True or False, got {drain_spool!r}")
        try:
            import requests
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise ImportError(
                "OTLPStorage needs the OpenTelemetry exporter: pip install 'multimeter[otel]'"
            ) from error
        self._resource = Resource.create({SERVICE_NAME: service_name} if service_name else None)
        self._status = threading.local()  # the last HTTP status this thread got
        extra_headers = dict(headers) if headers else None

        def connect() -> tuple[Any, Any]:
            session = requests.Session()
            session.hooks["response"].append(self._seen)
            exporter = OTLPMetricExporter(
                endpoint=endpoint, headers=extra_headers, timeout=timeout, session=session
            )
            return session, exporter

        self._connect = connect
        # A forked child gets an exporter of its own (no connection shared with its parent).
        self._pid = os.getpid()
        self._session, self._exporter = connect()
        #: Where the exporter sends (as it resolved the variables; shown in logs).
        self.endpoint: str = str(getattr(self._exporter, "_endpoint", endpoint))
        self._drain = drain_spool
        self._push_lock = threading.Lock()
        self.spool = Spool(
            spool_directory if spool_directory is not None else _DEFAULT_SPOOL, SPOOL_SUFFIX
        )
        self._spooled = len(self.spool) > 0  # left over from an earlier run

    def _seen(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._status.code = response.status_code

    # -- storing --------------------------------------------------------------

    def store(self, result: Result) -> None:
        """Deliver ``result`` (or spool it); see :meth:`store_many`."""
        self.store_many([result])

    def store_many(self, results: Sequence[Result]) -> None:
        """Deliver ``results`` in one request, or spool them when the endpoint is away.

        Raises:
            OTLPDeliveryError: when they are not stored: rejected, or neither
                delivered nor spooled.
        """
        if not results:
            return
        text = "".join(result_text(r) + "\n" for r in results)
        source = ", ".join(r.identifier for r in results[:3])
        outcome = self._send(text, source, [])
        if outcome is None:
            outcome = self._keep(text)
        elif outcome is Outcome.DELIVERED and self._drain and self._spooled:
            self._drain_spool()
        if outcome is Outcome.LOST:
            raise OTLPDeliveryError(f"{len(results)} result(s) neither delivered nor spooled")
        if outcome is Outcome.REJECTED:
            raise OTLPDeliveryError(
                f"{len(results)} result(s) rejected by {self.endpoint}, set aside in"
                f" {self.spool.rejected_directory}"
            )

    def spool_results(self, results: Sequence[Result]) -> None:
        """Write results to the spool without trying the endpoint (used at exit).

        Raises:
            OTLPDeliveryError: when the spool cannot be written (logged).
        """
        if results:
            text = "".join(result_text(r) + "\n" for r in results)
            if self._keep(text) is Outcome.LOST:
                raise OTLPDeliveryError(f"{len(results)} result(s) could not be spooled")

    def _keep(self, text: str) -> Outcome:
        try:
            self.spool.put(text)
        except OSError as error:
            safe_log(
                "error",
                "writing to the spool failed: data lost",
                spool=str(self.spool.directory),
                error=repr(error),
                results=text.count("\n"),
            )
            return Outcome.LOST
        self._spooled = True
        return Outcome.SPOOLED

    def _send(self, text: str, source: str, set_aside: list[pathlib.Path]) -> Outcome | None:
        """``DELIVERED``; ``REJECTED`` (logged, set aside, its place added to
        ``set_aside``); or ``None``: the endpoint could not be reached (logged)."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        try:
            lines = [line for line in text.split("\n") if line]  # only \n ends a line
            results = [result_from_document(json.loads(line)) for line in lines]
            data = to_metrics_data(results, self._resource)
        except Exception as error:  # noqa: BLE001 - bad data must not stop the others
            return self._reject(text, f"cannot be sent as OTLP: {error!r}", source, set_aside)
        self._status.code = None
        try:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._session, self._exporter = self._connect()
            done = self._exporter.export(data)
        except Exception as error:  # noqa: BLE001 - a dead endpoint must not break anything
            done, code = None, None
            reason = repr(error)
        else:
            code = self._status.code
            reason = f"HTTP {code}" if code is not None else "not reachable"
        if done is MetricExportResult.SUCCESS:
            return Outcome.DELIVERED
        if code is not None and 400 <= code < 500 and code not in _RETRYABLE_STATUS:
            return self._reject(text, f"the endpoint answered {reason}", source, set_aside)
        safe_log(
            "warning",
            "OTLP endpoint unreachable",
            endpoint=self.endpoint,
            error=reason,
            spool=str(self.spool.directory),
            source=source,
        )
        return None

    def _reject(
        self, text: str, reason: str, source: str, set_aside: list[pathlib.Path]
    ) -> Outcome:
        safe_log(
            "error", "OTLP data rejected", endpoint=self.endpoint, reason=reason, source=source
        )
        try:
            set_aside.append(self.spool.reject(text, reason))
        except OSError as error:
            safe_log("error", "setting rejected data aside failed", error=repr(error))
            return Outcome.LOST
        return Outcome.REJECTED

    def _drain_spool(self) -> None:
        """Push the spool after a delivery; what goes wrong there is logged."""
        try:
            self._spooled = self.push().left > 0
        except Exception as error:  # noqa: BLE001 - the data in hand was delivered
            safe_log("error", "sending the spool failed", error=repr(error))

    # -- the spool ------------------------------------------------------------

    def push(self) -> PushReport:
        """Send every spooled batch, oldest first; remove exactly those delivered
        (the rules of :meth:`InfluxDBStorage.push
        <multimeter.storages.influx.InfluxDBStorage.push>`)."""
        with self._push_lock:
            return push_spool(self.spool, self._send, safe_log)

    def close(self) -> None:
        """Close the HTTP connections; a later delivery opens new ones."""
        try:
            self._session.close()
        except Exception as error:  # noqa: BLE001 - closing must not fail
            safe_log("warning", "closing the OTLP session failed", error=repr(error))

    def __repr__(self) -> str:
        return f"OTLPStorage(endpoint={self.endpoint!r})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("OTLPStorage holds an HTTP session; it is not pickled")
