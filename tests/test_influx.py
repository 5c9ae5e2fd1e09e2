"""InfluxDBStorage against a real VictoriaMetrics and local fault-injecting servers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import multimeter
from multimeter.result import Result
from multimeter.storages.influx import DeliveryError, InfluxDBStorage, to_line_protocol
from tests import _programs
from tests._programs import run_program
from tests.servers import FaultProxy, FaultServer, Influxd, VictoriaMetrics, free_port

TOKEN = "s3cret-token-value"
T0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc)

needs_victoria = pytest.mark.skipif(
    VictoriaMetrics.binary is None, reason="victoria-metrics is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    server.start()
    yield server
    server.stop()


needs_influxd = pytest.mark.skipif(
    Influxd.binary is None, reason="influxd is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def influxd(tmp_path_factory):
    server = Influxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    server.create_database("multimeter")
    yield server
    server.stop()


@pytest.fixture
def spool(tmp_path):
    return tmp_path / "spool"


def _result(identifier: str) -> Result:
    result = Result(identifier=identifier, tags={"stage": "etl"})
    result.append(T0, {"process.cpu_user": 0.5, "process.max_rss": 1000.0})
    result.append(T0 + timedelta(seconds=1), {"process.cpu_user": 0.75, "process.max_rss": 2000.0})
    result.add_mark(T0, "load:enter")
    return result


def test_a_missing_token_raises_value_error():
    """token=None is refused, as documented."""
    with pytest.raises(ValueError, match="token"):
        InfluxDBStorage(None)


def test_the_token_is_not_in_the_repr():
    """repr() shows where data goes, never the token."""
    storage = InfluxDBStorage(TOKEN, url="http://127.0.0.1:9")
    assert TOKEN not in repr(storage)
    assert "127.0.0.1:9" in repr(storage)


@needs_victoria
def test_store_delivers_points_tags_and_marks(victoria, spool):
    """When store() returns, the values are on the server, with the result's tags."""
    storage = InfluxDBStorage(TOKEN, url=victoria.url, spool_directory=spool)
    storage.store(_result("delivered"))
    series = {s["metric"]["__name__"]: s for s in victoria.export("delivered_.*")}
    assert [0.5, 0.75] == series["delivered_process.cpu_user"]["values"]
    assert [1778051289000, 1778051290000] == series["delivered_process.cpu_user"]["timestamps"]
    assert "etl" == series["delivered_process.cpu_user"]["metric"]["stage"]
    assert "delivered_mark" in series
    assert not spool.exists()


@needs_victoria
def test_measured_calls_go_to_one_measurement_per_function(victoria, spool, monkeypatch):
    """MULTIMETER_STORAGE=influxdb: all calls of a function under one name, none overwritten."""
    monkeypatch.setenv("MULTIMETER_STORAGE", "influxdb")
    monkeypatch.setenv("MULTIMETER_INFLUXDB_URL", victoria.url)
    monkeypatch.setenv("MULTIMETER_INFLUXDB_TOKEN", TOKEN)
    monkeypatch.setenv("MULTIMETER_SPOOL_DIR", str(spool))
    multimeter.configure()

    @multimeter.measured(name="influx_work", tags={"stage": "etl"})
    def work(i):
        return i

    for i in range(50):
        work(i)
    assert multimeter.flush(30)
    series = victoria.export("influx_work_process.cpu_user")
    assert 1 == len(series)  # one series for all 50 calls of this process
    assert 50 == len(series[0]["values"])
    labels = series[0]["metric"]
    assert ("etl", str(os.getpid())) == (labels["stage"], labels["pid"])


def test_per_call_lines_carry_the_call_and_distinct_nanoseconds():
    """Two calls in the same microsecond still land on different timestamps."""
    lines = []
    for number in (7, 8):
        result = Result(
            identifier=f"work-1-ab-{number}", meta_data={"function": "work", "pid": "1"}
        )
        result.append(T0, {"a.b": 1.0})
        lines.append(to_line_protocol(result).splitlines()[0])
    assert lines[0].endswith("007") and lines[1].endswith("008")
    assert 'call="work-1-ab-7"' in lines[0]


def _call(number: int, lane: str | None, start: datetime, end: datetime) -> Result:
    """A @measured-like result: enter mark, one point and exit mark at the end."""
    meta = {"function": "work", "host": "box", "pid": "1"}
    if lane is not None:
        meta["lane"] = lane
    result = Result(identifier=f"work-1-ab-{number}", meta_data=meta)
    result.add_mark(start, "work:enter")
    result.append(end, {"process.cpu_user": 0.5})
    result.add_mark(end, "work:exit")
    return result


def _series_and_timestamps(text: str) -> list[tuple[str, str]]:
    """(series, timestamp) of every line: what InfluxDB uses to tell points apart."""
    return [(line.split(" ")[0], line.rsplit(" ", 1)[1]) for line in text.splitlines()]


def test_the_lane_is_a_tag_of_the_series():
    """A result with lane meta data: series = function + host + pid + lane + tags."""
    line = to_line_protocol(_call(1, "3", T0, T0)).splitlines()[0]
    assert "work,host=box,lane=3,pid=1" == line.split(" ")[0]
    assert 'call="work-1-ab-1"' in line


def test_no_two_lines_of_one_call_share_a_timestamp():
    """The final point and the exit mark (same microsecond) get distinct nanoseconds."""
    pairs = _series_and_timestamps(to_line_protocol(_call(1, "0", T0, T0)))
    assert 3 == len(set(pairs))


def test_over_a_thousand_concurrent_calls_never_share_a_series_and_timestamp():
    """1,200 calls in flight at once (one lane each): every line keeps its own slot."""
    text = "".join(to_line_protocol(_call(n, str(n - 1), T0, T0)) for n in range(1, 1201))
    pairs = _series_and_timestamps(text)
    assert 3 * 1200 == len(pairs)
    assert len(pairs) == len(set(pairs))


def test_calls_one_after_another_on_a_lane_never_share_a_timestamp():
    """A lane's next call starts a microsecond after the last ended: no slot is shared."""
    step = timedelta(microseconds=1)
    calls = [_call(n, "0", T0 + 2 * n * step, T0 + (2 * n + 1) * step) for n in range(1, 1500)]
    pairs = _series_and_timestamps("".join(map(to_line_protocol, calls)))
    assert len(pairs) == len(set(pairs))
    assert {"work,host=box,lane=0,pid=1"} == {series for series, _ in pairs}


@needs_victoria
def test_an_outage_spools_and_push_delivers_each_point_exactly_once(victoria, spool, tmp_path):
    """Server stopped mid-run: data spooled; after restart `multimeter push` delivers it once."""
    storage = InfluxDBStorage(TOKEN, url=victoria.url, spool_directory=spool, retries=2)
    storage.store(_result("outage-before"))
    victoria.stop()
    try:
        started = time.monotonic()
        storage.store(_result("outage-during"))
        assert time.monotonic() - started < 10
        assert 1 == len(list(spool.glob("*.line")))
    finally:
        victoria.start()
    for _ in range(2):  # running push twice never duplicates a point
        pushed = _programs.multimeter_command(
            "push",
            timeout=60,
            MULTIMETER_INFLUXDB_URL=victoria.url,
            MULTIMETER_INFLUXDB_TOKEN=TOKEN,
            MULTIMETER_SPOOL_DIR=str(spool),
        )
        assert 0 == pushed.returncode, pushed.stderr
    assert [] == list(spool.glob("*.line"))
    series = {s["metric"]["__name__"]: s for s in victoria.export("outage-during_.*")}
    assert [0.5, 0.75] == series["outage-during_process.cpu_user"]["values"]
    assert TOKEN not in pushed.stdout + pushed.stderr


def _push(server_url: str, spool: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `multimeter push` console command against ``server_url``."""
    environment = _programs.environment(
        MULTIMETER_INFLUXDB_URL=server_url,
        MULTIMETER_INFLUXDB_TOKEN=TOKEN,
        MULTIMETER_INFLUXDB_ORG="kantai",
        MULTIMETER_INFLUXDB_BUCKET="multimeter",
        MULTIMETER_SPOOL_DIR=str(spool),
    )
    command = [str(Path(sys.executable).parent / "multimeter"), "push"]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def _make_unreadable(path: Path, kind: str) -> None:
    """A spool batch that cannot be read as UTF-8 text, of the given kind."""
    if kind == "not UTF-8":
        path.write_bytes(b"m x=1 1\n\xff\xfe\n")
    elif kind == "a directory":
        path.mkdir()
    else:
        path.write_text("m x=1 1\n")
        path.chmod(0)


UNREADABLE = [
    "not UTF-8",
    "a directory",
    pytest.param(
        "no permission",
        marks=pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file"),
    ),
]


@needs_influxd
@pytest.mark.parametrize("kind", UNREADABLE)
def test_push_sets_an_unreadable_batch_aside_and_delivers_the_later_ones(kind, influxd, spool):
    """An unreadable batch goes to unreadable/ with a reason; later batches still go."""
    spool.mkdir()
    _make_unreadable(spool / "00000000000000000001-1-0.line", kind)
    measurement = "after_" + kind.replace(" ", "_").replace("-", "_")
    (spool / "00000000000000000002-1-0.line").write_text(f"{measurement} x=1 1000\n")
    pushed = _push(influxd.url, spool)
    assert 0 != pushed.returncode
    series = influxd.query(f'SELECT "x" FROM "{measurement}"', "multimeter")
    assert [[1000, 1.0]] == series[0]["values"]
    set_aside = spool / "unreadable" / "00000000000000000001-1-0.line"
    assert str(set_aside) in pushed.stderr
    assert set_aside.exists()
    assert set_aside.with_suffix(".reason").read_text().strip()
    assert [] == list(spool.glob("*.line*"))


@needs_influxd
def test_push_fails_when_the_server_rejects_a_batch(influxd, spool):
    """A batch influxd cannot parse: set aside in rejected/, named, exit status not 0."""
    spool.mkdir()
    (spool / "00000000000000000001-1-0.line").write_text("not line protocol at all\n")
    pushed = _push(influxd.url, spool)
    assert 1 == pushed.returncode
    assert str(spool / "rejected") in pushed.stderr
    assert 1 == len(list((spool / "rejected").glob("*.line")))


def test_push_fails_while_the_server_is_away(spool):
    """Nothing delivered: the batch stays in the spool and the exit status is not 0."""
    spool.mkdir()
    (spool / "00000000000000000001-1-0.line").write_text("m x=1 1\n")
    pushed = _push(f"http://127.0.0.1:{free_port()}", spool)
    assert 1 == pushed.returncode
    assert "1 left in" in pushed.stdout
    assert 1 == len(list(spool.glob("*.line")))


@needs_influxd
def test_a_delivery_that_drains_an_unreadable_batch_is_still_a_success(influxd, spool, logs):
    """store() after an outage: an unreadable spooled batch is set aside, not raised."""
    spool.mkdir()
    (spool / "00000000000000000001-1-0.line").write_bytes(b"\xff\n")
    (spool / "00000000000000000002-1-0.line").write_text("drained_later x=2 2000\n")
    storage = InfluxDBStorage(TOKEN, url=influxd.url, spool_directory=spool)
    storage.store(_result("drains"))
    series = influxd.query('SELECT "x" FROM "drained_later"', "multimeter")
    assert [[2000, 2.0]] == series[0]["values"]
    assert 1 == len(list((spool / "unreadable").glob("*.line")))
    assert [] == list(spool.glob("*.line"))


def test_server_errors_are_retried_then_spooled(spool, logs):
    """500: bounded retries with backoff, then the data waits in the spool."""
    server = FaultServer(500)
    try:
        storage = InfluxDBStorage(TOKEN, url=server.url, spool_directory=spool, retries=3)
        storage.store(_result("five-hundred"))
    finally:
        server.close()
    assert 3 == server.requests
    files = list(spool.glob("*.line"))
    assert 1 == len(files)
    assert "five-hundred,stage=etl" in files[0].read_text()
    assert TOKEN not in files[0].read_text()


def test_rejections_are_logged_redacted_and_set_aside_not_retried(spool, logs):
    """401: one attempt, the server's message logged without the token, data kept aside."""
    server = FaultServer(401, echo_authorization=True)
    try:
        storage = InfluxDBStorage(TOKEN, url=server.url, spool_directory=spool, retries=3)
        with pytest.raises(DeliveryError, match="rejected"):
            storage.store(_result("unauthorized"))
    finally:
        server.close()
    assert 1 == server.requests
    errors = [e for e in logs if e["log_level"] == "error"]
    assert 1 == len(errors)
    assert "401" in errors[0]["reason"]
    assert "refused for Token ***" in errors[0]["reason"]
    assert all(TOKEN not in str(event) for event in logs)
    rejected = list((spool / "rejected").glob("*.line"))
    assert 1 == len(rejected)
    assert [] == list(spool.glob("*.line"))
    assert TOKEN not in rejected[0].with_suffix(".reason").read_text()


AWKWARD_TOKENS = ["back\\slash-token", "quo\"te'token-value", "per%cent/token+value"]


def _token_forms(token: str) -> set[str]:
    """The token as it would look raw, repr()-escaped, JSON-escaped or URL-quoted."""
    escaped = token.replace("\\", "\\\\")
    return {
        token,
        escaped,
        escaped.replace("'", "\\'"),
        escaped.replace('"', '\\"'),
        json.dumps(token)[1:-1],
        urllib.parse.quote(token, safe=""),
        urllib.parse.quote_plus(token),
    }


def _leaked(token: str, logs: list[dict], files: list[Path]) -> list[str]:
    """Every log field and file text that carries the token in any form."""
    texts = [str(value) for event in logs for value in event.values()]
    texts += [repr(value) for event in logs for value in event.values()]
    texts += [path.read_text() for path in files]
    return [text for text in texts for form in _token_forms(token) if form in text]


@pytest.mark.parametrize(
    ("status", "retries", "event", "field", "reason"),
    [
        (401, 1, "InfluxDB rejected the data", "reason", "401 Unauthorized"),
        (500, 2, "InfluxDB unreachable", "error", "500 Internal Server Error"),
    ],
    ids=["rejected", "retried then spooled"],
)
@pytest.mark.parametrize("token", AWKWARD_TOKENS)
def test_an_answer_echoing_the_token_leaks_it_nowhere(
    token, status, retries, event, field, reason, spool, logs
):
    """A 401 (rejected) or 500 (retried, spooled) echoing the Authorization header:
    no form of the token in any log field or file, and the message stays readable."""
    server = FaultServer(status, echo_authorization=True)
    try:
        storage = InfluxDBStorage(token, url=server.url, spool_directory=spool, retries=retries)
        storage.deliver(to_line_protocol(_result("echoed")), source="test")
    finally:
        server.close()
    assert [] == _leaked(token, logs, list(spool.rglob("*.*")))
    logged = [e for e in logs if e["event"] == event]
    assert f"{reason}: refused for Token ***" == logged[0][field]


#: Tokens no HTTP client can send (a line break, a character beyond Latin-1): the
#: client's error quotes the header, so the token in a bytes or str repr, in a repr.
UNSENDABLE_TOKENS = [
    "ab\"c'd\nefTOKENSECRET",
    "\u00fcn\u00ef\u20accode\"'\\\r\nTOKENSECRET",
    "ab\"c'd\u20acTOKENSECRET",
]


def _every_form(token: str) -> set[str]:
    """The token raw, as str and bytes reprs (each quote kind), JSON or URL-quoted, and
    the same forms of each form (a repr inside a repr)."""
    forms = {token}
    for _ in range(2):
        for form in list(forms):
            forms |= _token_forms(form)
            forms |= {repr(form)[1:-1], form.encode("unicode_escape").decode("ascii")}
            forms |= {json.dumps(form, ensure_ascii=False)[1:-1]}
            for encoding in ("utf-8", "latin-1"):
                with contextlib.suppress(UnicodeEncodeError):
                    forms.add(repr(form.encode(encoding))[2:-1])
                    forms.add(repr(form.encode(encoding) + b"'\"")[2:-4])
    return forms


@pytest.mark.parametrize("token", UNSENDABLE_TOKENS, ids=["newline", "non-ascii", "euro"])
def test_a_token_the_client_cannot_send_leaks_nowhere(token, spool, logs):
    """InfluxDB unreachable because the header cannot be sent: no form of the token logged."""
    storage = InfluxDBStorage(
        token, url=f"http://127.0.0.1:{free_port()}", spool_directory=spool, retries=1
    )
    storage.deliver(to_line_protocol(_result("unsendable")), source="test")

    texts = [str(value) for event in logs for value in event.values()]
    texts += [repr(value) for event in logs for value in event.values()]
    assert ["InfluxDB unreachable"] == [event["event"] for event in logs]
    assert [] == [text for text in texts if "TOKENSECRET" in text]
    assert [] == [text for text in texts for form in _every_form(token) if form in text]
    assert "***" in logs[0]["error"]


def test_a_program_with_a_token_of_both_quotes_and_a_newline_never_logs_it(tmp_path):
    """A program measuring into an unreachable InfluxDB: its log holds no part of the token."""
    completed = run_program(
        tmp_path,
        f"""
        import os
        os.environ["MULTIMETER_STORAGE"] = "influxdb"
        os.environ["MULTIMETER_INFLUXDB_URL"] = "http://127.0.0.1:{free_port()}"
        os.environ["MULTIMETER_INFLUXDB_TOKEN"] = {UNSENDABLE_TOKENS[0]!r}
        import multimeter

        @multimeter.measured
        def work(i):
            return i

        for i in range(3):
            work(i)
        """,
        timeout=120,
    )
    log = completed.stdout + completed.stderr

    assert "InfluxDB unreachable" in log
    assert "TOKENSECRET" not in log
    assert [] == [form for form in _every_form(UNSENDABLE_TOKENS[0]) if form in log]
    spooled = "".join(path.read_text() for path in (tmp_path / "results" / "spool").glob("*.line"))
    assert 3 == len({line.split('call="')[1].split('"')[0] for line in spooled.splitlines()})


def test_a_one_character_token_does_not_garble_the_messages(spool, logs):
    """Token "a": redacted where it stands, not in every word that has an a."""
    server = FaultServer(401, echo_authorization=True)
    try:
        storage = InfluxDBStorage("a", url=server.url, spool_directory=spool, retries=1)
        storage.deliver(to_line_protocol(_result("garbled")), source="a batch")
    finally:
        server.close()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert "InfluxDB rejected the data" == errors[0]["event"]
    assert "401 Unauthorized: refused for Token ***" == errors[0]["reason"]
    assert (server.url, "*** batch") == (errors[0]["url"], errors[0]["source"])  # every field
    reason_file = next((spool / "rejected").glob("*.reason"))
    assert "401 Unauthorized: refused for Token ***\n" == reason_file.read_text()


def test_a_slow_server_times_out_and_spools(spool):
    """A server slower than the timeout: the result is spooled within a bounded time."""
    server = FaultServer(204, delay=3.0)
    try:
        storage = InfluxDBStorage(
            TOKEN, url=server.url, spool_directory=spool, retries=1, timeout=0.5
        )
        started = time.monotonic()
        storage.store(_result("slow"))
        assert time.monotonic() - started < 2.5
    finally:
        server.close()
    assert 1 == len(list(spool.glob("*.line")))


def test_an_unwritable_spool_is_logged_once_and_raises(logs):
    """Dead server and a spool that cannot be written: logged, then DeliveryError."""
    storage = InfluxDBStorage(
        TOKEN, url="http://127.0.0.1:9", spool_directory="/sys/multimeter-spool", retries=1
    )
    with pytest.raises(DeliveryError, match="neither delivered nor spooled"):
        storage.store(_result("nowhere"))
    errors = [e for e in logs if e["log_level"] == "error"]
    assert 1 == len(errors)
    assert "/sys/multimeter-spool" in errors[0]["spool"]


def _lost_storage(tmp_path: Path) -> InfluxDBStorage:
    """A storage whose server is away and whose spool cannot be made (under a file)."""
    (tmp_path / "a-file").write_text("")
    return InfluxDBStorage(
        TOKEN,
        url=f"http://127.0.0.1:{free_port()}",
        spool_directory=tmp_path / "a-file" / "spool",
        retries=1,
    )


def test_flush_is_false_when_data_is_neither_delivered_nor_spooled(tmp_path):
    """Server away and no spool: the data is lost, and flush() says so."""
    multimeter.configure(storage=_lost_storage(tmp_path))
    multimeter.measured(lambda: None)()
    assert multimeter.flush(30) is False


def test_flush_is_true_when_the_spool_keeps_what_the_server_did_not_take(spool):
    """Server away, spool writable: the data waits on disk, which counts as stored."""
    storage = InfluxDBStorage(
        TOKEN, url=f"http://127.0.0.1:{free_port()}", spool_directory=spool, retries=1
    )
    multimeter.configure(storage=storage)
    multimeter.measured(lambda: None)()
    assert multimeter.flush(30) is True
    assert 1 == len(list(spool.glob("*.line")))


def test_flush_is_false_when_the_server_rejects_the_data(spool):
    """A 400 sets the data aside in rejected/; it is not stored, so flush() is False."""
    server = FaultServer(400)
    try:
        multimeter.configure(storage=InfluxDBStorage(TOKEN, url=server.url, spool_directory=spool))
        multimeter.measured(lambda: None)()
        assert multimeter.flush(30) is False
    finally:
        server.close()
    assert 1 == len(list((spool / "rejected").glob("*.line")))


def test_spooling_at_exit_raises_when_the_spool_cannot_be_written(tmp_path):
    """spool_results() (used at exit) says when the data could not be kept."""
    with pytest.raises(DeliveryError):
        _lost_storage(tmp_path).spool_results([_result("at-exit")])


def test_the_core_api_logs_a_delivery_error_and_does_not_raise(tmp_path, logs):
    """Measurement.end() with data lost: logged, never raised into the measured code."""
    from multimeter import Multimeter, ResourceProbe

    meter = Multimeter(ResourceProbe(), cycle_time=0.1, storage=_lost_storage(tmp_path))
    measurement = meter.measure("lost")
    measurement.start()
    measurement.end()
    assert "storing the result failed" == logs[-1]["event"]
    assert "DeliveryError" in logs[-1]["error"]


def test_influxdb_storage_from_the_environment_needs_a_token(monkeypatch):
    """MULTIMETER_STORAGE=influxdb without a token: configure() names the variable."""
    monkeypatch.setenv("MULTIMETER_STORAGE", "influxdb")
    with pytest.raises(ValueError, match="MULTIMETER_INFLUXDB_TOKEN"):
        multimeter.configure()


def test_influxdb_client_variables_are_the_fallback(monkeypatch, tmp_path):
    """INFLUXDB_V2_URL/TOKEN/ORG fill in what MULTIMETER_INFLUXDB_* leave out."""
    monkeypatch.setenv("MULTIMETER_STORAGE", "influxdb")
    monkeypatch.setenv("INFLUXDB_V2_TOKEN", TOKEN)
    monkeypatch.setenv("INFLUXDB_V2_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("INFLUXDB_V2_ORG", "acme")
    monkeypatch.setenv("MULTIMETER_DIR", str(tmp_path))
    storage = multimeter.configure().storage
    assert isinstance(storage, InfluxDBStorage)
    assert "acme" in repr(storage) and "127.0.0.1:9" in repr(storage)
    assert tmp_path / "spool" == storage.spool.directory


@needs_influxd
def test_influxdb_keeps_nanoseconds_and_every_concurrent_call(influxd, spool, monkeypatch):
    """Exact InfluxDB semantics: 8 threads x 100 calls of one function, no point overwritten."""
    import threading

    monkeypatch.setenv("MULTIMETER_STORAGE", "influxdb")
    monkeypatch.setenv("MULTIMETER_INFLUXDB_URL", influxd.url)
    monkeypatch.setenv("MULTIMETER_INFLUXDB_TOKEN", TOKEN)
    monkeypatch.setenv("MULTIMETER_SPOOL_DIR", str(spool))
    multimeter.configure()

    @multimeter.measured(name="concurrent")
    def work(i):
        return i

    threads = [threading.Thread(target=lambda: [work(i) for i in range(100)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert multimeter.flush(60)
    rows = influxd.query('SELECT "call", "process.cpu_user" FROM "concurrent"', "multimeter")
    calls = {row[1] for row in rows[0]["values"] if row[2] is not None}
    assert 800 == len(calls)
    marks = influxd.query('SELECT count("mark") FROM "concurrent"', "multimeter")
    assert 1600 == marks[0]["values"][0][1]  # enter and exit of every call


@needs_influxd
def test_influxdb_keeps_every_point_and_mark_of_1200_calls_in_flight_at_once(influxd, spool):
    """1,200 overlapping async calls of one function: all on the server, one lane per call."""
    import asyncio

    multimeter.configure(
        storage=InfluxDBStorage(TOKEN, url=influxd.url, spool_directory=spool), cycle_time=60
    )

    @multimeter.measured(name="in_flight")
    async def work(go):
        await go.wait()

    async def main():
        go = asyncio.Event()
        tasks = [asyncio.ensure_future(work(go)) for _ in range(1200)]
        await asyncio.sleep(0)  # every call has started and waits
        go.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert multimeter.flush(60)
    points = influxd.query('SELECT count("process.cpu_user") FROM "in_flight"', "multimeter")
    marks = influxd.query('SELECT count("mark") FROM "in_flight"', "multimeter")
    lanes = influxd.query('SHOW TAG VALUES FROM "in_flight" WITH KEY = "lane"', "multimeter")
    assert (1200, 2400) == (points[0]["values"][0][1], marks[0]["values"][0][1])
    assert 1200 == len(lanes[0]["values"] if lanes else [])  # peak concurrency: 1,200


@needs_influxd
def test_bad_data_is_rejected_with_the_servers_message_and_set_aside(influxd, spool, logs):
    """influxd answers 400 for a line it cannot parse: logged with its message, kept aside."""
    storage = InfluxDBStorage(TOKEN, url=influxd.url, spool_directory=spool)
    assert not storage.deliver("not line protocol at all\n", source="test")
    errors = [e for e in logs if e["log_level"] == "error"]
    assert "400" in errors[0]["reason"]
    assert "unable to parse" in errors[0]["reason"]
    assert 1 == len(list((spool / "rejected").glob("*.line")))


@needs_influxd
def test_a_server_that_recovers_gets_the_data_exactly_once(influxd, spool):
    """Two 500s from a proxy in front of influxd, then success: retried, stored once."""
    proxy = FaultProxy(influxd.url, failures=2)
    try:
        storage = InfluxDBStorage(TOKEN, url=proxy.url, spool_directory=spool, retries=3)
        storage.store(_result("recovers"))
    finally:
        proxy.close()
    assert 3 == proxy.requests
    series = influxd.query('SELECT "process.cpu_user" FROM "recovers"', "multimeter")
    assert [0.5, 0.75] == [row[1] for row in series[0]["values"]]
    assert not spool.exists()


@needs_victoria
def test_a_later_successful_write_drains_the_spool(victoria, spool):
    """After an outage, the next delivered result also takes the spooled data along."""
    InfluxDBStorage(TOKEN, url="http://127.0.0.1:9", spool_directory=spool, retries=1).store(
        _result("drained-earlier")
    )
    assert 1 == len(list(spool.glob("*.line")))
    InfluxDBStorage(TOKEN, url=victoria.url, spool_directory=spool).store(_result("drained-now"))
    assert [] == list(spool.glob("*.line"))
    assert 2 == len(victoria.export("drained-earlier_process.*"))


def test_two_pushers_never_send_the_same_batch(spool):
    """A batch is claimed by rename before sending: only one pusher gets it."""
    from multimeter.storages._spool import Spool

    queue = Spool(spool)
    path = queue.put("m x=1 1\n")
    first = queue.claim(path)
    assert first is not None
    assert queue.claim(path) is None
    assert [] == list(queue.batches())  # claimed by a live process: not listed
    queue.release(first, path)
    assert [path] == list(queue.batches())


def test_a_result_influxdb_cannot_take_is_left_out_of_a_batch_not_the_others(spool, logs):
    """store_many(): one bad identifier is logged and raised; the rest is still sent."""
    server = FaultServer(204)
    try:
        storage = InfluxDBStorage(TOKEN, url=server.url, spool_directory=spool)
        with pytest.raises(ValueError, match="1 result"):
            storage.store_many([_result("_reserved"), _result("fine")])
        with pytest.raises(ValueError, match="reserved"):
            storage.store(_result("_reserved"))
    finally:
        server.close()
    assert 1 == server.requests
    errors = [e for e in logs if e["log_level"] == "error"]
    assert "_reserved" == errors[0]["identifier"]


def test_the_push_console_command_is_installed():
    """`multimeter push` exists next to the interpreter (pip installs the entry point)."""
    command = Path(sys.executable).parent / "multimeter"
    completed = subprocess.run(
        [str(command), "push", "--help"], capture_output=True, text=True, timeout=60
    )
    assert 0 == completed.returncode
    assert "spool" in completed.stdout


@needs_influxd
def test_a_program_that_stores_in_influxdb_exits_quietly(influxd, spool):
    """Configure, measure, flush, exit: nothing on stderr (the client is closed in time)."""
    code = f"""
        import multimeter
        from multimeter.storages.influx import InfluxDBStorage

        multimeter.configure(
            storage=InfluxDBStorage({TOKEN!r}, url={influxd.url!r}, spool_directory={str(spool)!r})
        )

        @multimeter.measured(name="quiet_exit")
        def work(i):
            return i

        for i in range(3):
            work(i)
        assert multimeter.flush(30)
    """
    completed = _programs.run_code(code, timeout=60)
    assert (0, "") == (completed.returncode, completed.stderr)
    marks = influxd.query('SELECT count("mark") FROM "quiet_exit"', "multimeter")
    assert 6 == marks[0]["values"][0][1]


def test_a_closed_storage_still_delivers(spool):
    """close() (or leaving `with`) closes the client; a later store() opens its own."""
    server = FaultServer(204)
    try:
        with InfluxDBStorage(TOKEN, url=server.url, spool_directory=spool) as storage:
            storage.store(_result("before-close"))
        storage.store(_result("after-close"))
    finally:
        server.close()
    assert 2 == server.requests
    assert not spool.exists()


def test_a_slow_server_at_exit_costs_the_exit_timeout_and_loses_nothing(tmp_path):
    """Exit waits MULTIMETER_EXIT_TIMEOUT, then what is still pending goes to the spool."""
    server = FaultServer(204, delay=20.0)
    spool = tmp_path / "spool"
    code = """
        import multimeter
        @multimeter.measured(name="at_exit")
        def work(i):
            return i
        for i in range(20):
            work(i)
    """
    try:
        started = time.monotonic()
        completed = _programs.run_code(
            code,
            timeout=60,
            MULTIMETER_STORAGE="influxdb",
            MULTIMETER_INFLUXDB_URL=server.url,
            MULTIMETER_INFLUXDB_TOKEN=TOKEN,
            MULTIMETER_SPOOL_DIR=str(spool),
            MULTIMETER_EXIT_TIMEOUT="1",
        )
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert 0 == completed.returncode, completed.stderr
    assert elapsed < 15  # the server would take 20 s per request
    spooled = "".join(p.read_text() for p in spool.glob("*.line"))
    calls = {line.split('call="')[1].split('"')[0] for line in spooled.splitlines()}
    assert 20 == len(calls)
