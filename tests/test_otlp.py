"""OTLPStorage: measurements as OpenTelemetry metrics through the official OTLP/HTTP
exporter, checked by a local receiver that decodes every request with the official
``opentelemetry-proto`` messages (no collector is packaged for this machine)."""

from __future__ import annotations

import time

import pytest

import multimeter
from multimeter.storages.otlp import OTLPDeliveryError, OTLPStorage
from tests._cli_results import multimeter_command
from tests._otlp import Receiver
from tests._programs import run_code
from tests.servers import free_port

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


@pytest.fixture
def receiver():
    with Receiver() as started:
        yield started
    assert [] == started.errors


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def _calls(count: int, storage: OTLPStorage) -> list[multimeter.Result]:
    """``count`` measured calls stored in ``storage``; their results, as stored."""
    from multimeter.testing import InMemoryStorage

    @multimeter.measured(tags={"stage": "test"})
    def work(n: int) -> int:
        _busy(0.002)
        return n

    captured = InMemoryStorage()
    multimeter.configure(storage=captured)
    assert list(range(count)) == [work(n) for n in range(count)]
    assert multimeter.flush()
    storage.store_many(captured.results)
    return captured.results


def test_each_call_is_a_call_counter_point_with_its_own_start_and_end(receiver, tmp_path):
    """Every call is one ``multimeter.calls`` point: value 1, from its start to its end."""
    storage = OTLPStorage(receiver.endpoint, spool_directory=tmp_path / "spool")
    results = _calls(5, storage)
    points = receiver.points("multimeter.calls")
    assert 5 == len(points)
    for point, result in zip(points, results, strict=True):
        assert ("sum", 1.0, 1, True) == (
            point.kind,
            point.value,
            point.temporality,
            point.monotonic,
        )
        assert result.start.timestamp() * 1e9 == pytest.approx(point.start_ns, abs=1000)
        assert result.end.timestamp() * 1e9 == pytest.approx(point.time_ns, abs=1000)
        assert {"stage": "test", "multimeter.function": "work"} == point.attributes
    assert 0 == len(storage.spool)


def test_cpu_seconds_are_delta_counters_equal_to_the_stored_figures(receiver, tmp_path):
    """``multimeter.process.cpu_user`` points add up to the call's CPU seconds, in seconds."""
    storage = OTLPStorage(receiver.endpoint, spool_directory=tmp_path / "spool")
    results = _calls(3, storage)
    points = receiver.points("multimeter.process.cpu_user")
    assert 3 == len(points)
    for point, result in zip(points, results, strict=True):
        assert ("s", 1) == (point.unit, point.temporality)
        assert result.summary()["cpu_user_s"] == pytest.approx(point.value, rel=1e-9, abs=1e-12)
        assert point.start_ns < point.time_ns
    max_rss = receiver.points("multimeter.process.max_rss")
    assert ["gauge"] * 3 == [p.kind for p in max_rss]
    assert all(p.unit == "By" and p.value > 1e6 for p in max_rss)


def test_resource_attributes_name_the_service_host_process_and_run(receiver, tmp_path, monkeypatch):
    """OTEL_SERVICE_NAME is the service; host, pid and run come from the measuring process."""
    import os
    import socket

    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    storage = OTLPStorage(receiver.endpoint, spool_directory=tmp_path / "spool")
    results = _calls(1, storage)
    resource = receiver.points("multimeter.calls")[0].resource
    assert "checkout" == resource["service.name"]
    assert socket.gethostname() == resource["host.name"]
    assert os.getpid() == resource["process.pid"]
    assert results[0].meta_data["run"] == resource["multimeter.run"]


def test_an_unreachable_endpoint_spools_and_push_delivers_exactly_once(tmp_path, monkeypatch):
    """While the endpoint is down, batches wait in the spool; push() sends each once."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.3")
    port = free_port()
    down = OTLPStorage(f"http://127.0.0.1:{port}/v1/metrics", spool_directory=tmp_path / "spool")
    _calls(4, down)
    _calls(3, down)
    assert 2 == len(down.spool)
    assert [] == list((tmp_path / "spool").glob("*.line"))  # InfluxDB's push leaves them alone
    with Receiver() as receiver:
        up = OTLPStorage(receiver.endpoint, spool_directory=tmp_path / "spool")
        report = up.push()
        assert (2, 0, [], []) == tuple(report)
        assert 7 == len(receiver.points("multimeter.calls"))
        assert 0 == len(up.spool)
        assert (0, 0, [], []) == tuple(up.push())  # nothing is sent twice
        assert 7 == len(receiver.points("multimeter.calls"))


def test_a_rejected_batch_is_set_aside_not_retried(tmp_path):
    """An endpoint answering 400 rejects the batch: store_many raises, the batch is set aside."""
    with Receiver(status=400) as receiver:
        storage = OTLPStorage(receiver.endpoint, spool_directory=tmp_path / "spool")
        with pytest.raises(OTLPDeliveryError, match="rejected"):
            _calls(2, storage)
        assert [400] == receiver.answered
    assert 0 == len(storage.spool)
    assert 1 == len(list((tmp_path / "spool" / "rejected").glob("*.jsonl")))


def test_a_program_sends_its_calls_to_the_otlp_endpoint_of_the_standard_variables(tmp_path):
    """MULTIMETER_STORAGE=otlp with OTEL_EXPORTER_OTLP_ENDPOINT: every call arrives, once."""
    program = """
        import multimeter

        @multimeter.measured
        def handle(n):
            return n * 2

        assert [0, 2, 4, 6, 8, 10] == [handle(n) for n in range(6)]
    """
    with Receiver() as receiver:
        ran = run_code(
            program,
            MULTIMETER_STORAGE="otlp",
            MULTIMETER_DIR=str(tmp_path),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.base,
            OTEL_SERVICE_NAME="shop",
        )
        assert 0 == ran.returncode, ran.stderr
        assert "" == ran.stdout
        calls = receiver.points("multimeter.calls")
    assert 6 == len(calls)
    assert {"shop"} == {p.resource["service.name"] for p in calls}
    assert {"handle"} == {p.attributes["multimeter.function"] for p in calls}


def test_a_program_whose_endpoint_is_down_loses_nothing_and_push_replays_it(tmp_path):
    """The program exits normally; its calls wait in the spool; `multimeter push` sends them."""
    program = """
        import multimeter

        @multimeter.measured
        def handle(n):
            return n

        for n in range(9):
            handle(n)
    """
    settings = {
        "MULTIMETER_STORAGE": "otlp",
        "MULTIMETER_SPOOL_DIR": str(tmp_path / "spool"),
        "OTEL_EXPORTER_OTLP_TIMEOUT": "0.3",
    }
    down = f"http://127.0.0.1:{free_port()}"
    ran = run_code(program, OTEL_EXPORTER_OTLP_ENDPOINT=down, **settings)
    assert 0 == ran.returncode, ran.stderr
    assert list((tmp_path / "spool").glob("*.jsonl"))
    with Receiver() as receiver:
        pushed = multimeter_command("push", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.base, **settings)
        assert 0 == pushed.returncode, pushed.stderr
        assert pushed.stdout.startswith("delivered ")
        assert 9 == len(receiver.points("multimeter.calls"))
    assert [] == list((tmp_path / "spool").glob("*.jsonl"))


def test_a_forked_child_sends_through_a_connection_of_its_own(receiver, tmp_path):
    """A child forked after the parent sent keeps nothing of its connection; both deliver."""
    import os

    storage = OTLPStorage(receiver.endpoint, spool_directory=tmp_path / "spool")
    _calls(1, storage)
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            _calls(2, storage)
            code = 0 if 0 == len(storage.spool) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    _calls(1, storage)
    assert 4 == len(receiver.points("multimeter.calls"))
    assert 2 == len({p.resource["process.pid"] for p in receiver.points("multimeter.calls")})


def test_every_data_point_lies_in_its_call_and_carries_its_tags(receiver, tmp_path):
    """Each measure of each call is one data point inside the call's time, with its tags."""
    storage = OTLPStorage(receiver.endpoint, spool_directory=tmp_path / "spool")
    before_ns = time.time_ns()
    results = _calls(3, storage)
    after_ns = time.time_ns()
    points = receiver.points()
    measures = {m.key for m in results[0].schema.measures}
    expected = {f"multimeter.{key}" for key in measures} | {"multimeter.calls"}
    assert expected == {p.metric for p in points}
    assert 3 * len(expected) == len(points)  # one point per call (a short call has one)
    for point in points:
        assert {"stage": "test", "multimeter.function": "work"} == point.attributes
        assert before_ns <= point.time_ns <= after_ns
        if point.kind == "sum":  # a counter: what happened from its start to its time
            assert before_ns <= point.start_ns <= point.time_ns
        else:  # a gauge: a value at its time
            assert ("gauge", 0) == (point.kind, point.start_ns)
        assert {"service.name", "host.name", "process.pid", "multimeter.run"} <= set(point.resource)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"endpoint": "localhost:4318"}, "endpoint must be an http"),
        ({"endpoint": "ftp://127.0.0.1/x"}, "endpoint must be an http"),
        ({"endpoint": 5}, "endpoint must be an http"),
        ({"timeout": float("inf")}, "timeout must be a finite number"),
        ({"timeout": 0}, "timeout must be a finite number"),
        ({"headers": "x=y"}, "headers must be a mapping of str to str"),
        ({"headers": {"x": 1}}, "headers must be a mapping of str to str"),
        ({"spool_directory": 5}, "spool_directory must be a path"),
        ({"drain_spool": "no"}, "drain_spool must be True or False"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings, message, tmp_path):
    """An endpoint without a scheme would send every result to the spool, forever."""
    settings.setdefault("spool_directory", tmp_path)
    with pytest.raises(ValueError, match=message):
        OTLPStorage(**settings)
