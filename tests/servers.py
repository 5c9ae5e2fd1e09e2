"""Real servers for the tests, on 127.0.0.1 and free ports, started and stopped here."""

from __future__ import annotations

import json
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A port free now; another process (an xdist worker) may take it before the server
    binds it, so the servers below start again on a new port when theirs exits at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


class VictoriaMetrics:
    """Debian's victoria-metrics, which accepts InfluxDB's /api/v2/write unchanged."""

    binary = shutil.which("victoria-metrics")

    def __init__(self, data: pathlib.Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._data = data
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for _ in range(3):
            if self._started():
                return
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
        raise RuntimeError("victoria-metrics did not come up")

    def _started(self) -> bool:
        assert self.binary is not None
        self._process = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self._data}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                if _get(f"{self.url}/health", 1.0).strip() == b"OK":
                    return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(30)
            self._process = None

    def export(self, metric_regex: str) -> list[dict[str, Any]]:
        """Every series whose name matches, with values and timestamps (ms)."""
        _get(f"{self.url}/internal/force_flush")
        query = urllib.parse.urlencode(
            {"match[]": f'{{__name__=~"{metric_regex}"}}', "start": "0", "end": "4000000000"}
        )
        body = _get(f"{self.url}/api/v1/export?{query}").decode()
        return [json.loads(line) for line in body.splitlines() if line.strip()]


def _forward(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, bytes(error.read())


class _Relay:
    """A loopback HTTP server whose POSTs are answered by ``answer(path, body, headers)``."""

    def __init__(self, answer: Any) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                status, body = answer(self.path, self.rfile.read(length), dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Influxd:
    """Debian's influxd 1.6 (exact InfluxDB semantics), reached through a test-only shim
    that maps InfluxDB 2's ``/api/v2/write?bucket=DB`` onto 1.x's ``/write?db=DB``."""

    binary = shutil.which("influxd")

    def __init__(self, data: pathlib.Path) -> None:
        self.port = free_port()
        self._native = f"http://127.0.0.1:{self.port}"
        self._data = data
        self._process: subprocess.Popen[bytes] | None = None
        self._shim: _Relay | None = None
        self.url = ""

    def start(self) -> None:
        for _ in range(3):
            if self._started():
                self._shim = _Relay(self._shim_answer)
                self.url = self._shim.url
                return
            self.port = free_port()
            self._native = f"http://127.0.0.1:{self.port}"
        raise RuntimeError("influxd did not come up")

    def _started(self) -> bool:
        assert self.binary is not None
        environment = {
            "INFLUXDB_META_DIR": str(self._data / "meta"),
            "INFLUXDB_DATA_DIR": str(self._data / "data"),
            "INFLUXDB_DATA_WAL_DIR": str(self._data / "wal"),
            "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{self.port}",
            "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{free_port()}",
            "INFLUXDB_REPORTING_DISABLED": "true",
            "INFLUXDB_HTTP_LOG_ENABLED": "false",
            "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false",
            "PATH": "/usr/bin:/bin",
        }
        self._process = subprocess.Popen(
            [self.binary, "-config", "/dev/null"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                urllib.request.urlopen(f"{self._native}/ping", timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def _shim_answer(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        database = query.get("bucket", [""])[0]
        precision = query.get("precision", ["ns"])[0]
        target = f"{self._native}/write?" + urllib.parse.urlencode(
            {"db": database, "precision": precision}
        )
        return _forward(target, body, {"Content-Type": "text/plain"})

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"', "")

    def query(self, statement: str, database: str) -> list[dict[str, Any]]:
        """The series of an InfluxQL query, with nanosecond times."""
        data = urllib.parse.urlencode({"q": statement, "db": database, "epoch": "ns"}).encode()
        status, body = _forward(f"{self._native}/query", data, {})
        assert status == 200, body
        results = json.loads(body)["results"][0]
        return list(results.get("series", []))

    def stop(self) -> None:
        if self._shim is not None:
            self._shim.close()
            self._shim = None
        if self._process is not None:
            self._process.terminate()
            self._process.wait(30)
            self._process = None


class FaultProxy:
    """Forwards writes to ``upstream``, but answers the first ``failures`` with ``status``
    (after ``delay`` seconds): a server that recovers."""

    def __init__(self, upstream: str, failures: int, status: int = 500, delay: float = 0.0) -> None:
        self.requests = 0
        self.failures = failures

        def answer(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            self.requests += 1
            if self.requests <= self.failures:
                time.sleep(delay)
                return status, b'{"code":"unavailable","message":"injected fault"}'
            keep = {
                k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type")
            }
            return _forward(upstream + path, body, keep)

        self._relay = _Relay(answer)
        self.url = self._relay.url

    def close(self) -> None:
        self._relay.close()


class FaultServer:
    """Answers every write with a chosen status (after an optional delay) and counts them."""

    def __init__(self, status: int, delay: float = 0.0, echo_authorization: bool = False) -> None:
        self.requests = 0

        def answer(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            self.requests += 1
            time.sleep(delay)
            message = "refused"
            if echo_authorization:
                message += f" for {headers.get('Authorization')}"
            return status, json.dumps({"code": "error", "message": message}).encode()

        self._relay = _Relay(answer)
        self.url = self._relay.url

    def close(self) -> None:
        self._relay.close()
