"""Store results in InfluxDB (or anything that takes its ``/api/v2/write``).

Needs the optional dependency: ``pip install 'multimeter[influxdb]'``; it is
imported only when an :class:`InfluxDBStorage` is made.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import pathlib
import random
import re
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from multimeter import _process
from multimeter._log import safe_log
from multimeter._url import is_http_url
from multimeter.result import Result
from multimeter.storages._line import (
    distinct_timestamps_ns,
    encode_marks,
    encode_points,
    quote_string,
    series_prefix,
)
from multimeter.storages._spool import Outcome, PushReport, Spool
from multimeter.storages._spool import push as push_spool
from multimeter.storages.base import Storage

__all__ = ["DeliveryError", "InfluxDBStorage", "PushReport", "to_line_protocol"]


class DeliveryError(OSError):
    """Raised by :meth:`InfluxDBStorage.store` when data is not stored: it was neither
    delivered nor kept in the spool (lost, already logged), or the server rejected it
    (set aside in ``<spool>/rejected/``, already logged). So ``multimeter.flush()``
    returns ``False`` for it."""


_Outcome = Outcome  # what became of a batch of line protocol


_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_DEFAULT_SPOOL = pathlib.Path("multimeter-results") / "spool"


def to_line_protocol(result: Result) -> str:
    """The lines InfluxDBStorage sends for ``result``.

    A result of the documented API is written as its identifier's measurement
    (measures as fields, tags as tags, marks as ``mark`` lines). A result of a
    ``@measured`` call (it has ``function`` meta data) is written to one
    measurement per function, named after it, with the tags ``host``, ``pid``
    and ``lane`` (when the result has ``lane`` meta data) added, and the call's
    identifier as the string field ``call``.

    Calls on one lane never overlap and each starts in a later microsecond than
    the one before ended, so it is enough that the lines of one call never share
    a timestamp: points are written at ``microsecond * 1000`` and marks from
    ``microsecond * 1000 + 1`` on (a nanosecond further while a slot is taken).
    A function thus has as many series per process as its peak concurrency.
    Results without ``lane`` (older files) keep the earlier layout: no lane tag,
    the call number (mod 1000) in the nanoseconds of every timestamp.
    """
    function = result.meta_data.get("function")
    if function is None:
        prefix = series_prefix(result.identifier, result.tags)
        return "".join(encode_points(result, prefix) + encode_marks(result, prefix))
    tags = dict(result.tags)
    tags.setdefault("host", result.meta_data.get("host", ""))
    tags.setdefault("pid", result.meta_data.get("pid", ""))
    measurement = re.sub(r"[^A-Za-z0-9._-]", "_", function).lstrip("_.") or "call"
    extra = f",call={quote_string(result.identifier)}"
    lane = result.meta_data.get("lane")
    if lane is not None:
        tags["lane"] = str(lane)  # wins over a user tag "lane": it keeps the calls apart
        prefix = series_prefix(measurement, tags)
        points_ns, marks_ns = distinct_timestamps_ns(result)
        return "".join(
            encode_points(result, prefix, extra_fields=extra, timestamps_ns=points_ns)
            + encode_marks(result, prefix, extra_fields=extra, timestamps_ns=marks_ns)
        )
    prefix = series_prefix(measurement, tags)
    number = result.identifier.rsplit("-", 1)[-1]
    offset = int(number) % 1000 if number.isdigit() else 0
    return "".join(
        encode_points(result, prefix, extra_fields=extra, offset_ns=offset)
        + encode_marks(result, prefix, extra_fields=extra, offset_ns=offset)
    )


class _Rejected(Exception):
    """The server refused the data (4xx other than 429): retrying will not help."""


#: Tokens shorter than this are redacted only where they stand alone, so that a
#: token such as ``a`` cannot garble every word that contains it. Runs of this many
#: characters that no escaping changes are redacted on their own too.
_SHORT_TOKEN = 8
#: What str, bytes and JSON reprs and URL quoting all leave as it is.
_UNESCAPED_RUN = re.compile(r"[A-Za-z0-9._~-]+")


class _Redactor:
    """Replaces a token with ``***`` in text: raw, or escaped as a str or bytes repr
    (either quote kind), JSON, ``unicode_escape`` or URL quoting would escape it, also
    escaped twice (a repr inside a repr). A run of at least ``_SHORT_TOKEN`` characters
    of the token that no escaping changes is replaced too, so that a form not listed
    here (the token cut at a line break, say) does not show its longest parts."""

    def __init__(self, token: str) -> None:
        forms = {token}
        for _ in range(2):
            for form in list(forms):
                forms |= _escaped_forms(form)
        forms |= {run for run in _UNESCAPED_RUN.findall(token) if len(run) >= _SHORT_TOKEN}
        forms.discard("")
        alternatives = "|".join(map(re.escape, sorted(forms, key=len, reverse=True)))
        if len(token) < _SHORT_TOKEN:
            alternatives = f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])"
        self._pattern = re.compile(alternatives)

    def __call__(self, text: str) -> str:
        return self._pattern.sub("***", text)


def _escaped_forms(text: str) -> set[str]:
    """``text`` as each kind of escaping writes it (without the quotes around it)."""
    forms = {
        text.encode("unicode_escape").decode("ascii"),
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote(text),
        urllib.parse.quote_plus(text),
    }
    escaped = text.replace("\\", "\\\\")  # backslashes doubled, nothing else
    forms |= {escaped, escaped.replace("'", "\\'"), escaped.replace('"', '\\"')}  # "": HTTP
    forms |= _repr_forms([repr(c)[1:-1] for c in text], text)
    for encoding in ("utf-8", "latin-1"):  # http.client sends headers as Latin-1
        with contextlib.suppress(UnicodeEncodeError):
            data = text.encode(encoding)
            forms |= _repr_forms([repr(bytes([b]))[2:-1] for b in data], data.decode("latin-1"))
    return forms


def _repr_forms(escapes: list[str], characters: str) -> set[str]:
    """A repr's text from each character's escape, with ``'`` or ``"`` escaped or not
    (a repr escapes the quote it is written in)."""
    forms = set()
    for single in ("'", "\\'"):
        for double in ('"', '\\"'):
            quoted = {"'": single, '"': double}
            forms.add("".join(quoted.get(c, e) for c, e in zip(characters, escapes, strict=True)))
    return forms


def _describe(error: BaseException) -> str:
    """What went wrong, for the log: an HTTP answer as its status, reason and the
    server's JSON message only (never headers, which may echo the request's, nor
    the raw body); anything else as its repr(). Not redacted yet."""
    status = getattr(error, "status", None)
    if isinstance(status, int):
        text = f"{status} {getattr(error, 'reason', '') or ''}".rstrip()
        message = _server_message(getattr(error, "body", None))
        return f"{text}: {message}" if message else text
    return repr(error)


def _server_message(body: Any) -> str | None:
    """The ``message`` (InfluxDB 1: ``error``) of a JSON error body, or ``None``."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    message = document.get("message", document.get("error"))  # InfluxDB 2, InfluxDB 1
    return message if isinstance(message, str) else None


class _Connections:
    """The connections of this process (a part of its ``multimeter._process`` state),
    and whether the interpreter is exiting. A forked child carries them on (a
    storage made before the fork is used in the child too)."""

    def __init__(self) -> None:
        self.open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self.exiting = False

    def after_fork_in_child(self) -> _Connections:
        """The child's: these."""
        return self


def _connections() -> _Connections:
    return _process.current().part(_Connections)


class _Connection:
    """The influxdb-client objects of one storage.

    Closed by :meth:`close` or at interpreter exit as soon as no request uses
    them; after that, each request opens its own client and closes it when done.
    So no client is left for the interpreter's teardown, where its ``__del__``
    fails noisily ("Exception ignored ... TypeError") once the modules it needs
    are gone. The exit hook runs before (or after) the writer's final flush;
    either way the flush's requests close what they open.
    """

    def __init__(self, connect: Callable[[], tuple[Any, Any]]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._client, self._write_api = connect()
        self._users = 0
        self._closing = False
        _connections().open.add(self)

    @contextlib.contextmanager
    def write_api(self) -> Iterator[Any]:
        """The client's synchronous write API, for one request."""
        with self._lock:
            if self._write_api is None:
                self._client, self._write_api = self._connect()
            self._users += 1
            write_api = self._write_api
        try:
            yield write_api
        finally:
            del write_api
            with self._lock:
                self._users -= 1
                if self._users == 0 and (self._closing or _connections().exiting):
                    self._drop()

    def close(self) -> None:
        """Close the client now, or when the request in progress is done."""
        with self._lock:
            self._closing = True
            if self._users == 0:
                self._drop()

    def close_if_idle(self) -> None:
        """Close the client unless a request uses it (that one closes it at exit)."""
        with self._lock:
            if self._users == 0:
                self._drop()

    def _drop(self) -> None:
        client = self._client
        self._client = self._write_api = None
        if client is not None:
            client.close()


def _close_connections_at_exit() -> None:
    connections = _connections()
    connections.exiting = True
    for connection in list(connections.open):
        connection.close_if_idle()


atexit.register(_close_connections_at_exit)


class InfluxDBStorage(Storage):
    """Stores results in InfluxDB, through the official ``influxdb-client``.

    When :meth:`store` returns, the result has been delivered, or, if the
    server cannot be reached (connection refused, timeout, 5xx, 429) after
    ``retries`` attempts with exponential backoff, written to the spool
    directory as line protocol, to be sent later by ``multimeter push``. Data
    the server rejects (other 4xx: bad data, 401, 403) is logged with the
    server's message and set aside in ``<spool>/rejected/``; it is not retried.
    Data that is not stored (rejected, or neither delivered nor spooled) makes
    :meth:`store` raise :class:`DeliveryError` after it was logged, so
    ``multimeter.flush()`` returns ``False`` (``@measured`` and
    ``Measurement.end()`` never raise it into the measured code). The token
    never appears in logs, ``repr()`` or files.

    Args:
        token: The authentication token (required).
        url: The InfluxDB URL.
        org: The organisation that owns the data.
        bucket: The bucket to write to.
        spool_directory: Where undelivered data goes (default
            ``multimeter-results/spool``).
        retries: Attempts per batch before it is spooled.
        timeout: Seconds per HTTP request.
        drain_spool: After a successful write, also send what waits in the spool.

    Raises:
        ValueError: for a missing token or URL, or bad retries/timeout.
        ImportError: when ``influxdb-client`` is not installed.
    """

    def __init__(
        self,
        token: str | None,
        url: str = "http://localhost:8086",
        org: str = "kantai",
        bucket: str = "multimeter",
        *,
        spool_directory: str | os.PathLike[str] | None = None,
        retries: int = 3,
        timeout: float = 10.0,
        drain_spool: bool = True,
    ) -> None:
        if token is None or not isinstance(token, str) or not token:
            raise ValueError("token must be set to an InfluxDB API token (a non-empty str)")
        if not is_http_url(url):
            raise ValueError(f"url must be an http(s)://host[:port] URL, got {url!r}")
        for setting, value in (("org", org), ("bucket", bucket)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{setting} must be a non-empty str, got {value!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
            raise ValueError(f"retries must be an int >= 1, got {retries!r}")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        try:
            import influxdb_client
            from influxdb_client.client.write_api import SYNCHRONOUS
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise ImportError(
                "InfluxDBStorage needs influxdb-client: pip install 'multimeter[influxdb]'"
            ) from error
        self._redact = _Redactor(token)
        self._url = url
        self._org = org
        self._bucket = bucket
        self._retries = retries
        self._drain = drain_spool
        self._push_lock = threading.Lock()
        self.spool = Spool(spool_directory if spool_directory is not None else _DEFAULT_SPOOL)

        def connect() -> tuple[Any, Any]:
            client = influxdb_client.InfluxDBClient(
                url=url, token=token, org=org, timeout=int(timeout * 1000), retries=False
            )
            return client, client.write_api(write_options=SYNCHRONOUS)

        self._connection = _Connection(connect)
        self._spooled = len(self.spool) > 0  # left over from an earlier run

    # -- storing --------------------------------------------------------------

    def store(self, result: Result) -> None:
        """Deliver ``result`` (or spool it); returns when one of the two is done.

        Raises:
            ValueError: when the result cannot be written as line protocol (e.g. an
                identifier starting with ``_``, which InfluxDB reserves).
            DeliveryError: when the data is not stored: rejected by the server, or
                neither delivered nor spooled.
        """
        text = to_line_protocol(result)
        if text:
            self._check(self._deliver(text, result.identifier), 1)

    def store_many(self, results: Sequence[Result]) -> None:
        """Deliver several results in one request (the background writer batches).

        A result that cannot be written as line protocol is logged and left out;
        the others still go, then ``ValueError`` is raised for the ones left out.

        Raises:
            DeliveryError: when the batch is not stored (see :meth:`store`).
            ValueError: when some results could not be written as line protocol.
        """
        parts, left_out = self._encode(results)
        text = "".join(parts)
        if text:
            source = ", ".join(r.identifier for r in results[:3])
            self._check(self._deliver(text, source), len(results) - len(left_out))
        if left_out:
            raise ValueError(
                f"{len(left_out)} result(s) cannot be written as line protocol:"
                f" {', '.join(left_out[:5])}"
            )

    def spool_results(self, results: Sequence[Result]) -> None:
        """Write results to the spool without trying the server (used at exit).

        Raises:
            DeliveryError: when the spool cannot be written (logged).
        """
        parts, _ = self._encode(results)
        text = "".join(parts)
        if text:
            if self._save(self.spool.put, text, self.spool.directory) is None:
                raise DeliveryError(f"{len(results)} result(s) could not be spooled")
            self._spooled = True

    def _check(self, outcome: _Outcome, count: int) -> None:
        if outcome is _Outcome.LOST:
            raise DeliveryError(f"{count} result(s) neither delivered nor spooled (see the log)")
        if outcome is _Outcome.REJECTED:
            raise DeliveryError(
                f"{count} result(s) rejected by InfluxDB, set aside in"
                f" {self.spool.rejected_directory}"
            )

    def _log(self, level: str, event: str, **fields: Any) -> None:
        """Log through the library's logger, the token redacted from the event and from
        every field (what a server answered or an exception says may quote it)."""
        redact = self._redact
        safe_log(
            level,
            redact(event),
            **{k: redact(v) if isinstance(v, str) else v for k, v in fields.items()},
        )

    def _encode(self, results: Sequence[Result]) -> tuple[list[str], list[str]]:
        """(the line protocol of each result that has one, identifiers of those that fail)."""
        parts = []
        left_out = []
        for result in results:
            try:
                parts.append(to_line_protocol(result))
            except ValueError as error:
                left_out.append(result.identifier)
                self._log(
                    "error",
                    "result cannot be written as line protocol",
                    identifier=result.identifier,
                    error=str(error),
                )
        return parts, left_out

    def deliver(self, text: str, *, source: str = "") -> bool:
        """Send line protocol; spool it when that fails. Returns whether it was delivered.

        Never raises: what is rejected or lost is logged. After a successful
        delivery, batches waiting in the spool are sent too (with
        ``drain_spool=True``, the default), so an outage heals by itself.
        """
        return self._deliver(text, source) is _Outcome.DELIVERED

    def _deliver(self, text: str, source: str) -> _Outcome:
        outcome = self._send(text, source)
        if outcome is None:
            if self._save(self.spool.put, text, self.spool.directory) is None:
                return _Outcome.LOST
            self._spooled = True
            return _Outcome.SPOOLED
        if outcome is _Outcome.DELIVERED and self._drain and self._spooled:
            self._drain_spool()
        return outcome

    def _drain_spool(self) -> None:
        """Push the spool after a delivery; what goes wrong there is logged, and never
        makes the delivery that triggered it count as failed."""
        try:
            self._spooled = self.push().left > 0
        except Exception as error:  # noqa: BLE001 - the data in hand was delivered
            self._log(
                "error",
                "sending the spool failed",
                spool=str(self.spool.directory),
                error=repr(error),
            )

    def _send(
        self, text: str, source: str, set_aside: list[pathlib.Path] | None = None
    ) -> _Outcome | None:
        """``DELIVERED``; ``REJECTED`` (logged and set aside, where it went added to
        ``set_aside``); or ``None``: the server could not be reached (logged), the
        caller keeps the data."""
        try:
            self._send_with_retries(text)
            return _Outcome.DELIVERED
        except _Rejected as rejection:
            reason = self._redact(str(rejection))
            self._log(
                "error", "InfluxDB rejected the data", url=self._url, reason=reason, source=source
            )
            path = self._save(
                lambda data: self.spool.reject(data, reason), text, self.spool.rejected_directory
            )
            if path is not None and set_aside is not None:
                set_aside.append(path)
            return _Outcome.REJECTED
        except Exception as error:  # noqa: BLE001 - a dead server must not break anything
            self._log(
                "warning",
                "InfluxDB unreachable",
                url=self._url,
                error=self._redact(_describe(error)),
                spool=str(self.spool.directory),
                source=source,
            )
            return None

    def _send_with_retries(self, text: str) -> None:
        with self._connection.write_api() as write_api:
            self._write_with_retries(write_api, text)

    def _write_with_retries(self, write_api: Any, text: str) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        delay = 0.1
        for attempt in range(1, self._retries + 1):
            try:
                write_api.write(
                    bucket=self._bucket,
                    org=self._org,
                    record=text,
                    write_precision=WritePrecision.NS,
                )
                return
            except ApiException as error:
                if (error.status or 0) not in _RETRYABLE_STATUS:
                    raise _Rejected(_describe(error)) from None
                if attempt == self._retries:
                    raise
            except Exception:
                if attempt == self._retries:
                    raise
            time.sleep(delay * (1 + random.random()))
            delay *= 2

    def _save(
        self, write: Callable[[str], pathlib.Path], text: str, where: pathlib.Path
    ) -> pathlib.Path | None:
        """Write ``text`` with ``write``; the file, or ``None`` (logged) when that failed."""
        try:
            return write(text)
        except OSError as error:
            self._log(
                "error",
                "writing to the spool failed: data lost",
                spool=str(where),
                error=repr(error),
                lines=text.count("\n"),
            )
            return None

    # -- the spool ------------------------------------------------------------

    def push(self) -> PushReport:
        """Send every spooled batch, oldest first; remove exactly those delivered.

        Stops at the first batch that cannot be delivered (the server is still
        away). A rejected batch is set aside in ``rejected/``, a batch that cannot
        be read (not UTF-8, not a file, no permission) in ``unreadable/``, both with
        a ``.reason`` file, and pushing goes on. Each batch is claimed (renamed)
        before it is sent, so two pushers, in this process or another, never send
        the same batch. Never raises for one bad batch.
        """
        with self._push_lock:
            return push_spool(self.spool, self._send, self._log)

    # -- housekeeping ------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client (once a request in progress is done).

        The storage stays usable: a later request opens a client for itself and
        closes it when done.
        """
        self._connection.close()

    def __repr__(self) -> str:
        return (
            f"InfluxDBStorage(url={self._url!r}, org={self._org!r}, bucket={self._bucket!r},"
            " token='***')"
        )

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("InfluxDBStorage holds a connection and a token; it is not pickled")
