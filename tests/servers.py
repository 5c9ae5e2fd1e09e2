"""Real servers for the tests, on 127.0.0.1 and free ports, started and stopped here."""

from __future__ import annotations

import json
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
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
        while time.monotonic() < deadline:
            try:
                if _get(f"{self.url}/health", 1.0).strip() == b"OK":
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("victoria-metrics did not come up")

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


class FaultServer:
    """Answers every write with a chosen status (after an optional delay) and counts them."""

    def __init__(self, status: int, delay: float = 0.0, echo_authorization: bool = False) -> None:
        self.status = status
        self.delay = delay
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server.requests += 1
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                time.sleep(server.delay)
                message = "refused"
                if echo_authorization:
                    message += f" for {self.headers.get('Authorization')}"
                body = json.dumps({"code": "error", "message": message}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
