"""Talking to the visualization's InfluxDB and Grafana over HTTP, on loopback only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

#: Seconds between two readiness checks.
POLL_INTERVAL_S = 0.5
_REQUEST_TIMEOUT_S = 10.0
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class HttpError(Exception):
    """A request failed or the server's answer was not what was expected."""


def _check_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host not in _LOOPBACK_HOSTS:
        raise HttpError(f"{url}: only loopback addresses are contacted")


def request(
    method: str,
    url: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    token: str | None = None,
    content_type: str = "application/json",
) -> Any:
    """Send a request to a loopback URL; the decoded JSON answer (``None`` when empty).

    ``body`` is sent as JSON, ``data`` as it is. The token goes into the
    ``Authorization`` header and never into a message.
    """
    _check_loopback(url)
    payload = data if body is None else json.dumps(body).encode("utf-8")
    headers = {"Accept": "application/json"}
    if payload is not None:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Token {token}"
    prepared = urllib.request.Request(url, data=payload, headers=headers, method=method)
    try:
        with urllib.request.urlopen(prepared, timeout=_REQUEST_TIMEOUT_S) as answer:
            text = answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise HttpError(f"{method} {url}: {error.code} {_message(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise HttpError(f"{method} {url}: {reason}") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise HttpError(f"{method} {url}: the answer is not JSON") from None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        document = json.loads(error.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return str(error.reason)
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return str(document["message"])
    return str(error.reason)


def wait_until_ready(
    name: str,
    url: str,
    is_ready: Callable[[Any], bool],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll ``url`` until ``is_ready(answer)``; raise :class:`HttpError` after ``timeout`` s."""
    deadline = clock() + timeout
    last = "no answer yet"
    while True:
        try:
            if is_ready(request("GET", url)):
                return
            last = "not ready yet"
        except HttpError as error:
            last = str(error)
        if clock() >= deadline:
            raise HttpError(f"{name} did not become ready within {timeout:g} s ({last})")
        sleep(POLL_INTERVAL_S)


def influxdb_ready(answer: Any) -> bool:
    """InfluxDB's ``/health`` says ``"status": "pass"``."""
    return isinstance(answer, dict) and answer.get("status") == "pass"


def grafana_ready(answer: Any) -> bool:
    """Grafana's ``/api/health`` says ``"database": "ok"``."""
    return isinstance(answer, dict) and answer.get("database") == "ok"


class InfluxSetup:
    """InfluxDB 2's first-time setup and tokens through its HTTP API (``/api/v2``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def setup(self, username: str, password: str, org: str, bucket: str) -> tuple[str, str, str]:
        """``POST /api/v2/setup``: the operator token, the org id and the bucket id."""
        answer = request(
            "POST",
            f"{self.url}/api/v2/setup",
            body={"username": username, "password": password, "org": org, "bucket": bucket},
        )
        try:
            return (
                str(answer["auth"]["token"]),
                str(answer["org"]["id"]),
                str(answer["bucket"]["id"]),
            )
        except (KeyError, TypeError):
            raise HttpError("InfluxDB's setup answer lacks the token, org or bucket") from None

    def create_token(
        self,
        operator_token: str,
        org_id: str,
        bucket_id: str,
        actions: tuple[str, ...],
        description: str,
    ) -> str:
        """``POST /api/v2/authorizations``: a token with ``actions`` on the bucket alone."""
        permissions = [
            {"action": action, "resource": {"type": "buckets", "id": bucket_id, "orgID": org_id}}
            for action in actions
        ]
        answer = request(
            "POST",
            f"{self.url}/api/v2/authorizations",
            body={"orgID": org_id, "description": description, "permissions": permissions},
            token=operator_token,
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            raise HttpError("InfluxDB's authorization answer lacks the token")
        return str(answer["token"])

    def write(self, token: str, org: str, bucket: str, lines: str) -> None:
        """``POST /api/v2/write``: line protocol with nanosecond timestamps."""
        query = urllib.parse.urlencode({"org": org, "bucket": bucket, "precision": "ns"})
        request(
            "POST",
            f"{self.url}/api/v2/write?{query}",
            data=lines.encode("utf-8"),
            token=token,
            content_type="text/plain; charset=utf-8",
        )
