"""A local OTLP/HTTP metrics receiver for the tests: no collector is packaged for this
machine, so this one decodes every request with the official ``opentelemetry-proto``
messages, as a collector does, and keeps what it got.

    with Receiver() as receiver:
        ...send to receiver.endpoint...
        receiver.points("multimeter.calls")  # every data point of that metric
"""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)


def value_of(any_value: Any) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind is not None else None


def attributes(key_values: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list as a dict."""
    return {kv.key: value_of(kv.value) for kv in key_values}


@dataclass(frozen=True)
class DataPoint:
    """One data point as the receiver decoded it, with where it came from."""

    metric: str
    kind: str  # "gauge" or "sum"
    unit: str
    value: float
    start_ns: int
    time_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    temporality: int = 0  # sums: 1 delta, 2 cumulative
    monotonic: bool = False


class Receiver:
    """An OTLP/HTTP receiver on 127.0.0.1 (a free port): answers ``status`` (200 by
    default) to every ``POST /v1/metrics`` and keeps each request it could decode."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[ExportMetricsServiceRequest] = []
        self.answered: list[int] = []
        #: What could not be decoded (a test expects none).
        self.errors: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportMetricsServiceRequest()
                try:
                    assert self.path == "/v1/metrics", self.path
                    assert self.headers.get("Content-Type") == "application/x-protobuf"
                    request.ParseFromString(body)  # raises for anything but a valid message
                    status = receiver.status
                except Exception as error:  # noqa: BLE001 - kept for the test to see
                    receiver.errors.append(repr(error))
                    status = 400
                with receiver._lock:
                    receiver.answered.append(status)
                    if status == 200:
                        receiver.requests.append(request)
                answer = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        #: The metrics URL, as OTEL_EXPORTER_OTLP_METRICS_ENDPOINT takes it.
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/metrics"
        #: The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it.
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def points(self, metric: str | None = None) -> list[DataPoint]:
        """Every data point received (of ``metric``), in the order received."""
        found = []
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for m in scope_metrics.metrics:
                        if metric is not None and m.name != metric:
                            continue
                        kind = m.WhichOneof("data")
                        data = getattr(m, kind)
                        for p in data.data_points:
                            value = getattr(p, p.WhichOneof("value"))
                            found.append(
                                DataPoint(
                                    m.name,
                                    kind,
                                    m.unit,
                                    value,
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    attributes(p.attributes),
                                    resource,
                                    getattr(data, "aggregation_temporality", 0),
                                    getattr(data, "is_monotonic", False),
                                )
                            )
        return found
