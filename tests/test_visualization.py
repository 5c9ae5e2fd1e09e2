"""``multimeter visualization``: the compose file, the dashboards, and the commands.

This machine has no Docker engine, so the commands run against a fake ``docker``
on ``PATH`` (it records its arguments and answers like the real one); its
``compose up`` starts small local HTTP servers that answer like InfluxDB 2 and
Grafana on the ports the test chose, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import pathlib
import pty
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from multimeter import visualization
from multimeter._visualization import _example
from multimeter.storages.influx import to_line_protocol
from tests._programs import run_python
from tests.servers import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESOURCES = pathlib.Path(visualization.__file__).parent / "_visualization" / "resources"
DASHBOARDS = sorted((RESOURCES / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_UID = "multimeter-influxdb"

FAKE_DOCKER = """\
#!{python}
# A fake docker: records each call, answers like docker 27 with the compose plugin.
import json, os, pathlib, signal, subprocess, sys, time

state = pathlib.Path(os.environ["FAKE_DOCKER_STATE"])
mode = os.environ.get("FAKE_DOCKER_MODE", "ok")
argv = sys.argv[1:]
env = {{k: v for k, v in os.environ.items() if k.startswith("MULTIMETER_VISU_")}}
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps({{"argv": argv, "env": env}}) + "\\n")

def alive(service):
    pid_file = state / (service + ".pid")
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except OSError:
        return False
    return True

def halt(service):
    pid_file = state / (service + ".pid")
    if pid_file.exists():
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):  # as docker stop: return once the container is gone
                time.sleep(0.025)
                os.kill(pid, 0)
        except OSError:
            pass
        pid_file.unlink()

if argv == ["info"]:
    if mode == "no-engine":
        sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
                         " Is the docker daemon running?\\n")
        sys.exit(1)
    print("Server Version: 27.3.1")
    sys.exit(0)
if argv[:1] != ["compose"]:
    sys.stderr.write("docker: unknown command\\n")
    sys.exit(1)
if mode == "no-compose":
    sys.stderr.write("docker: 'compose' is not a docker command.\\n")
    sys.exit(1)
rest = argv[1:]
if rest == ["version"]:
    print("Docker Compose version v2.29.7")
    sys.exit(0)
assert rest[0] == "-p" and rest[2] == "-f", rest
compose_file = pathlib.Path(rest[3])
if not compose_file.is_file():
    sys.stderr.write(f"open {{compose_file}}: no such file or directory\\n")
    sys.exit(1)
command, options = rest[4], rest[5:]
services = [o for o in options if not o.startswith("-")] or ["influxdb", "grafana"]
if command == "up":
    ports = {{"influxdb": env["MULTIMETER_VISU_INFLUXDB_PORT"],
              "grafana": env["MULTIMETER_VISU_GRAFANA_PORT"]}}
    for service in services:
        if not alive(service):
            process = subprocess.Popen(
                [sys.executable, os.environ["FAKE_SERVICE"], service, ports[service], str(state)],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            (state / (service + ".pid")).write_text(str(process.pid))
            print(f"Container multimeter-visu-{{service}}-1  Started", file=sys.stderr)
elif command in ("stop", "down"):
    for service in ("influxdb", "grafana"):
        halt(service)
elif command == "ps":
    for service in ("influxdb", "grafana"):
        if alive(service):
            print(service)
sys.exit(0)
"""

FAKE_SERVICE = """\
# Answers like InfluxDB 2 or Grafana on 127.0.0.1:PORT, writing what it got to STATE.
import http.server, json, pathlib, sys

service, port, state = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
health_calls = [0]
tokens = [0]

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, document=None):
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self, body):
        with open(state / f"{service}-requests.jsonl", "a") as log:
            log.write(json.dumps({"method": self.command, "path": self.path,
                                  "authorization": self.headers.get("Authorization"),
                                  "body": body}) + "\\n")

    def do_GET(self):
        self.record(None)
        health_calls[0] += 1
        if service == "influxdb" and self.path == "/health":
            # not ready at first, as a container that is still starting
            ready = health_calls[0] > 2
            self.answer(200 if ready else 503, {"status": "pass" if ready else "fail"})
        elif service == "grafana" and self.path == "/api/health":
            self.answer(200, {"database": "ok", "version": "12.0.2"})
        else:
            self.answer(404, {"message": "not found"})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if self.path.startswith("/api/v2/write"):
            self.record(None)
            with open(state / "written.line", "a") as written:
                written.write(raw)
            self.answer(204)
            return
        body = json.loads(raw)
        self.record(body)
        if self.path == "/api/v2/setup":
            if (state / "set-up").exists():
                self.answer(422, {"code": "conflict", "message": "onboarding already done"})
                return
            (state / "set-up").write_text("yes")
            self.answer(201, {"auth": {"token": "operator-token"}, "org": {"id": "org1"},
                              "bucket": {"id": "bucket1"}, "user": {"id": "user1"}})
        elif self.path == "/api/v2/authorizations":
            if self.headers.get("Authorization") != "Token operator-token":
                self.answer(401, {"code": "unauthorized", "message": "unauthorized access"})
                return
            tokens[0] += 1
            self.answer(201, {"id": f"auth{tokens[0]}", "token": f"token-{tokens[0]}"})
        else:
            self.answer(404, {"message": "not found"})

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class FakeDocker:
    """A ``docker`` on PATH, its call log, and the servers its ``compose up`` started."""

    def __init__(self, root: pathlib.Path) -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        self.home = root / "home"
        for directory in (self.bin, self.state, self.home):
            directory.mkdir()
        docker = self.bin / "docker"
        docker.write_text(FAKE_DOCKER.format(python=sys.executable))
        docker.chmod(0o755)
        (root / "fake_service.py").write_text(FAKE_SERVICE)
        self.service_script = root / "fake_service.py"
        self.mode = "ok"
        self.influxdb_port = free_port()
        self.grafana_port = free_port()
        self.config = self.home / ".multimeter" / "visu.config.json"
        self.data = self.home / "visu-data"

    def run(
        self, *arguments: str, stdin: str | None = None, terminal: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m multimeter.visualization ARGUMENTS`` with only the fake docker on PATH."""
        environment = {
            "PATH": str(self.bin),
            "HOME": str(self.home),
            "FAKE_DOCKER_STATE": str(self.state),
            "FAKE_DOCKER_MODE": self.mode,
            "FAKE_SERVICE": str(self.service_script),
            "PYTHONPATH": str(pathlib.Path(__file__).resolve().parent.parent),
        }
        command = ["-m", "multimeter.visualization", *arguments]
        return run_python(*command, env=environment, input=stdin, stdin=terminal, timeout=120)

    def install(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "install",
            "--dir", str(self.data),
            "--influxdb-port", str(self.influxdb_port),
            "--grafana-port", str(self.grafana_port),
            "--timeout", "60",
            *extra,
        )  # fmt: skip

    def calls(self) -> list[list[str]]:
        """The arguments of every docker call so far, compose's -p/-f left out."""
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        calls = []
        for line in log.read_text().splitlines():
            argv = json.loads(line)["argv"]
            if argv[:2] == ["compose", "-p"]:
                argv = ["compose", *argv[5:]]
            calls.append(argv)
        return calls

    def requests(self, service: str) -> list[dict[str, Any]]:
        log = self.state / f"{service}-requests.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def stop_services(self) -> None:
        for pid_file in self.state.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)


@pytest.fixture
def docker(tmp_path: pathlib.Path) -> Iterator[FakeDocker]:
    """A fake docker whose services are stopped at the end of the test."""
    fake = FakeDocker(tmp_path)
    yield fake
    fake.stop_services()


def _queries(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "query" and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(document, list):
        for item in document:
            yield from _queries(item)


def _datasources(document: Any) -> Iterator[dict[str, Any]]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "datasource" and isinstance(value, dict):
                yield value
            else:
                yield from _datasources(value)
    elif isinstance(document, list):
        for item in document:
            yield from _datasources(item)


# --- the compose file and the Grafana files -------------------------------------------


def test_the_compose_file_is_valid_for_docker_compose(tmp_path):
    """Debian's docker-compose accepts the compose file (no top-level 'name:')."""
    binary = shutil.which("docker-compose")
    assert binary is not None, "install Debian's docker-compose (see the README quick start)"
    environment = {
        **os.environ,
        "MULTIMETER_VISU_UID": "1000",
        "MULTIMETER_VISU_GID": "1000",
        "MULTIMETER_VISU_DATA_DIR": str(tmp_path),
        "MULTIMETER_VISU_PASSWORD": "secret",
        "MULTIMETER_VISU_ORG": "kantai",
        "MULTIMETER_VISU_BUCKET": "multimeter",
    }
    compose_file = RESOURCES / "docker-compose.yml"
    checked = subprocess.run(
        [binary, "-f", str(compose_file), "config", "-q"],
        env=environment, capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert 0 == checked.returncode, checked.stderr
    resolved = subprocess.run(
        [binary, "-f", str(compose_file), "config"],
        env=environment, capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    document = yaml.safe_load(resolved.stdout)
    ports = {name: service["ports"] for name, service in document["services"].items()}
    published = [port for service_ports in ports.values() for port in service_ports]
    assert {"influxdb", "grafana"} == set(ports)
    assert all(
        str(port).startswith("127.0.0.1:") or port.get("host_ip") == "127.0.0.1"
        for port in published
    ), published


def test_the_compose_file_requires_the_data_directory(tmp_path):
    """Without the settings the tool passes, docker-compose refuses the file."""
    binary = shutil.which("docker-compose")
    assert binary is not None
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MULTIMETER_VISU")}
    checked = subprocess.run(
        [binary, "-f", str(RESOURCES / "docker-compose.yml"), "config", "-q"],
        env=environment, capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert 0 != checked.returncode


def test_the_compose_file_pins_its_images():
    """InfluxDB 2.x and Grafana by exact version, never 'latest'."""
    services = yaml.safe_load((RESOURCES / "docker-compose.yml").read_text())["services"]
    images = {name: service["image"] for name, service in services.items()}
    assert re.fullmatch(r"influxdb:2\.\d+\.\d+", images["influxdb"])
    assert re.fullmatch(r"grafana/grafana:1\d\.\d+\.\d+", images["grafana"])


def test_the_provisioned_datasource_is_the_one_the_dashboards_use():
    """One InfluxDB datasource (Flux, token from the environment), uid as in the dashboards."""
    document = yaml.safe_load(
        (RESOURCES / "grafana/provisioning/datasources/multimeter.yaml").read_text()
    )
    [datasource] = document["datasources"]
    assert DATASOURCE_UID == datasource["uid"]
    assert "influxdb" == datasource["type"]
    assert "Flux" == datasource["jsonData"]["version"]
    assert "${MULTIMETER_VISU_GRAFANA_TOKEN}" == datasource["secureJsonData"]["token"]
    providers = yaml.safe_load(
        (RESOURCES / "grafana/provisioning/dashboards/multimeter.yaml").read_text()
    )["providers"]
    assert ["/var/lib/multimeter-dashboards"] == [p["options"]["path"] for p in providers]


def test_every_resource_file_goes_into_the_wheel():
    """pyproject's package-data patterns cover each file the tool copies at install."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["multimeter"]
    package = RESOURCES.parent.parent
    files = [path for path in RESOURCES.rglob("*") if path.is_file()]
    assert len(files) >= 5
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns), relative


def test_there_are_two_dashboards():
    """'Measurements' and 'Functions'."""
    titles = {json.loads(path.read_text())["title"] for path in DASHBOARDS}
    assert {"multimeter: Measurements", "multimeter: Functions"} == titles


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_a_dashboard_carries_what_grafana_requires(path):
    """uid, title, panels with ids, positions, units and targets, templating, annotations."""
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["templating"]["list"]
    assert len(dashboard["panels"]) >= 5
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["fieldConfig"]["defaults"]["unit"]
        assert panel["targets"] and all(target["query"] for target in panel["targets"])
    marks = [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
    assert marks and all(a["target"]["query"] for a in marks)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_every_datasource_reference_is_the_provisioned_one(path):
    """Panels, targets, variables and annotations all name the provisioned datasource."""
    references = [
        ref for ref in _datasources(json.loads(path.read_text())) if ref.get("type") != "grafana"
    ]
    assert len(references) > 10
    assert all({"type": "influxdb", "uid": DATASOURCE_UID} == ref for ref in references)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_every_flux_query_names_the_bucket(path):
    """Each query reads the bucket of the installation (filled in at install)."""
    queries = list(_queries(json.loads(path.read_text())))
    assert queries
    for query in queries:
        assert f'bucket: "{visualization.BUCKET_PLACEHOLDER}"' in query, query


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_every_flux_query_imports_what_it_uses_and_balances_its_brackets(path):
    """A query that calls strings.* or schema.* imports the package; (), [] and {} pair up."""
    for query in _queries(json.loads(path.read_text())):
        for package, name in (("strings", "strings"), ("schema", "influxdata/influxdb/schema")):
            assert (f"{package}." in query) == (f'import "{name}"' in query), query
        for opening, closing in ("()", "[]", "{}"):
            assert query.count(opening) == query.count(closing), query


def test_the_measurements_dashboard_selects_measurement_and_tag_values():
    """Template variables for the measurement, a tag key and its values; panels use them."""
    dashboard = json.loads((RESOURCES / "grafana/dashboards/measurements.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert ["measurement", "tag", "value"] == list(variables)
    assert variables["value"]["multi"] and variables["value"]["includeAll"]
    for panel in dashboard["panels"]:
        [target] = panel["targets"]
        assert 'r._measurement == "${measurement}"' in target["query"]
        assert "=~ /^${value:regex}$/" in target["query"]


def _fields_in_real_results() -> set[str]:
    lines = _example.example_lines(_example.example_results(rows=2000, rounds=2))
    fields = set()
    for line in lines.splitlines():
        series_and_fields = line.rsplit(" ", 1)[0]
        field_text = series_and_fields.split(" ", 1)[1]
        fields.update(part.split("=", 1)[0] for part in field_text.split(","))
    return fields


def test_the_dashboards_query_the_fields_multimeter_writes():
    """The field keys the queries name are written by the line encoder (mark, call, process.*)."""
    written = _fields_in_real_results()
    assert {"mark", "call", "process.cpu_user", "process.max_rss"} <= written
    queries = "\n".join(q for path in DASHBOARDS for q in _queries(json.loads(path.read_text())))
    named = set(re.findall(r'r\._field == "([^"]+)"', queries))
    assert (
        named - {"calls.count", "calls.errors", "calls.duration_max", "python.heap_peak"} <= written
    )
    patterns = re.findall(r"r\._field =~ /(.+?)/\)", queries)
    for field in ("process.cpu_user", "process.page_faults_no_io", "process.max_rss"):
        assert any(re.search(pattern, field) for pattern in patterns), field


def test_the_example_data_is_a_real_result_in_the_line_format():
    """Core-API points and marks, and @measured calls (one raising), as InfluxDBStorage writes."""
    results = _example.example_results(rows=2000, rounds=6)
    lines = _example.example_lines(results)
    assert "".join(to_line_protocol(result) for result in results) == lines
    assert f'{_example.IDENTIFIER},example=etl mark="parsed" ' in lines
    assert 'mark="example_lookup:raise KeyError"' in lines
    functions = {r.meta_data.get("function") for r in results}
    assert {None, "example_parse", "example_total", "example_lookup"} == functions


# --- the commands, against the fake docker ----------------------------------------------


def test_install_start_stop_status_remove(docker):
    """The whole life of an installation, with the docker calls each command makes."""
    installed = docker.install("--bucket", "perf", "--org", "acme")
    assert 0 == installed.returncode, installed.stderr
    compose_ups = [call for call in docker.calls() if call[:2] == ["compose", "up"]]
    assert [["compose", "up", "-d", "influxdb"], ["compose", "up", "-d", "grafana"]] == compose_ups
    assert f"http://127.0.0.1:{docker.grafana_port}" in installed.stdout

    # InfluxDB was set up through its API, then two tokens made with the operator token
    requests = [(r["method"], r["path"].split("?")[0]) for r in docker.requests("influxdb")]
    posts = [request for request in requests if request[0] == "POST"]
    assert [
        ("POST", "/api/v2/setup"),
        ("POST", "/api/v2/authorizations"),
        ("POST", "/api/v2/authorizations"),
        ("POST", "/api/v2/write"),
    ] == posts
    setup = docker.requests("influxdb")[requests.index(("POST", "/api/v2/setup"))]["body"]
    assert ("admin", "acme", "perf") == (setup["username"], setup["org"], setup["bucket"])
    assert len(setup["password"]) >= 20

    # the configuration: private, with the generated password and the tokens
    assert 0o600 == stat.S_IMODE(docker.config.stat().st_mode)
    config = json.loads(docker.config.read_text())
    assert setup["password"] == config["admin_password"]
    assert ("token-1", "token-2") == (config["grafana_token"], config["write_token"])
    assert "installed" == config["state"]
    assert setup["password"] not in installed.stdout + installed.stderr
    assert "token-" not in installed.stdout + installed.stderr

    # Grafana got the read token; the dashboards name the bucket
    grafana_up = next(
        json.loads(line)
        for line in (docker.state / "calls.jsonl").read_text().splitlines()
        if json.loads(line)["argv"][-1:] == ["grafana"]
    )
    assert "token-1" == grafana_up["env"]["MULTIMETER_VISU_GRAFANA_TOKEN"]
    assert "127.0.0.1" == grafana_up["env"]["MULTIMETER_VISU_LISTEN"]
    for dashboard in (docker.data / "grafana" / "dashboards").glob("*.json"):
        for query in _queries(json.loads(dashboard.read_text())):
            assert 'from(bucket: "perf")' in query or 'bucket: "perf"' in query

    # the example data arrived, and it is what the example file in the data dir says
    written = (docker.state / "written.line").read_text()
    assert written == (docker.data / "example.line").read_text()
    assert 'mark="example_lookup:enter"' in written

    status = docker.run("status")
    assert 0 == status.returncode, status.stderr
    assert re.search(r"influxdb\s+running\s+ready", status.stdout)
    assert re.search(r"grafana\s+running\s+ready", status.stdout)
    assert setup["password"] not in status.stdout
    assert setup["password"] in docker.run("status", "--show-password").stdout

    stopped = docker.run("stop")
    assert 0 == stopped.returncode, stopped.stderr
    assert ["compose", "stop"] == docker.calls()[-1]
    after_stop = docker.run("status")
    assert 1 == after_stop.returncode
    assert re.search(r"influxdb\s+not running", after_stop.stdout)

    started = docker.run("start", "--timeout", "60")
    assert 0 == started.returncode, started.stderr
    assert ["compose", "up", "-d"] == docker.calls()[-1]
    assert 0 == docker.run("status").returncode

    removed = docker.run("remove", "--yes")
    assert 0 == removed.returncode, removed.stderr
    assert ["compose", "down", "--volumes", "--remove-orphans"] == docker.calls()[-1]
    assert not docker.data.exists()
    assert not docker.config.exists()


def test_env_prints_export_lines_and_the_token_only_when_asked(docker):
    """`env` gives the MULTIMETER_INFLUXDB_* settings; --show-token adds the write token."""
    assert 0 == docker.install().returncode
    plain = docker.run("env")
    assert 0 == plain.returncode
    assert f"export MULTIMETER_INFLUXDB_URL=http://127.0.0.1:{docker.influxdb_port}" in plain.stdout
    assert "export MULTIMETER_INFLUXDB_BUCKET=multimeter" in plain.stdout
    assert "export MULTIMETER_INFLUXDB_ORG=kantai" in plain.stdout
    assert "token-2" not in plain.stdout
    shown = docker.run("env", "--show-token")
    assert "export MULTIMETER_INFLUXDB_TOKEN=token-2" in shown.stdout.splitlines()
    sourced = subprocess.run(
        ["/bin/sh", "-c", shown.stdout + '\nprintf %s "$MULTIMETER_INFLUXDB_TOKEN"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "token-2" == sourced.stdout


def test_install_refuses_an_existing_installation(docker):
    """A second install changes nothing and says what to do."""
    assert 0 == docker.install().returncode
    before = docker.config.read_text()
    calls_before = len(docker.calls())
    again = docker.install()
    assert 2 == again.returncode
    assert "already installed" in again.stderr and 1 == len(again.stderr.splitlines())
    assert before == docker.config.read_text()
    assert calls_before == len(docker.calls())


def test_install_without_docker_says_so(docker):
    """No docker on PATH: one line saying to install it, exit status 1, nothing created."""
    (docker.bin / "docker").unlink()
    result = docker.install()
    assert 1 == result.returncode
    assert ["docker is not installed"] == [
        line.split(": ", 1)[1].split(" (")[0] for line in result.stderr.splitlines()
    ]
    assert "Traceback" not in result.stderr
    assert not docker.config.exists() and not docker.data.exists()


def test_install_without_compose_says_so(docker):
    """docker without its compose plugin (and no docker-compose): one line, exit status 1."""
    docker.mode = "no-compose"
    result = docker.install()
    assert 1 == result.returncode
    assert 1 == len(result.stderr.splitlines())
    assert "docker compose is not available" in result.stderr
    assert not docker.config.exists()


def test_install_falls_back_to_docker_compose(docker):
    """Without the compose plugin, a working docker-compose (v1) on PATH is used instead."""
    docker.mode = "no-compose"
    legacy = docker.bin / "docker-compose"
    legacy.write_text(
        '#!/bin/sh\necho "$*" >> "$FAKE_DOCKER_STATE/docker-compose.log"\n'
        'FAKE_DOCKER_MODE=ok exec "${0%/*}/docker" compose "$@"\n'
    )
    legacy.chmod(0o755)
    result = docker.install()
    assert 0 == result.returncode, result.stderr
    used = (docker.state / "docker-compose.log").read_text().splitlines()
    assert "version" == used[0]
    assert any(line.endswith("up -d influxdb") for line in used)


def test_install_with_the_engine_stopped_says_so(docker):
    """`docker info` fails: one line saying to start the engine, exit status 1."""
    docker.mode = "no-engine"
    result = docker.install()
    assert 1 == result.returncode
    assert 1 == len(result.stderr.splitlines())
    assert "the Docker engine is not running" in result.stderr
    assert "Cannot connect to the Docker daemon" in result.stderr
    assert not docker.config.exists()
    assert not [call for call in docker.calls() if "up" in call]


def test_install_refuses_a_taken_port(docker):
    """A port in use on 127.0.0.1: one line naming it and the option, nothing started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", docker.grafana_port))
        taken.listen()
        result = docker.install()
    assert 1 == result.returncode
    assert [
        f"multimeter visualization install: port {docker.grafana_port} on 127.0.0.1 is taken:"
        " stop what uses it or choose another port with --grafana-port"
    ] == result.stderr.splitlines()
    assert not [call for call in docker.calls() if "up" in call]
    assert not docker.config.exists()


def test_start_refuses_a_port_taken_while_stopped(docker):
    """Something took InfluxDB's port while the containers were stopped: one line, no 'up'."""
    assert 0 == docker.install().returncode
    assert 0 == docker.run("stop").returncode
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", docker.influxdb_port))
        taken.listen()
        result = docker.run("start")
    assert 1 == result.returncode
    assert [
        f"multimeter visualization start: port {docker.influxdb_port} on 127.0.0.1 is taken:"
        " stop what uses it (the installation's port), then start again"
    ] == result.stderr.splitlines()
    assert ["compose", "ps", "--services", "--filter", "status=running"] == docker.calls()[-1]


def test_install_refuses_a_bad_bucket_name(docker):
    """A bucket name InfluxDB or a Flux string could not take: one line, exit status 2."""
    result = docker.install("--bucket", 'my"bucket')
    assert 2 == result.returncode
    assert "--bucket 'my\"bucket' is not allowed" in result.stderr
    assert [] == docker.calls()


def test_install_refuses_to_publish_on_another_address(docker):
    """--listen takes a loopback address or 0.0.0.0, nothing else."""
    result = docker.install("--listen", "192.0.2.7")
    assert 2 == result.returncode
    assert "--listen 192.0.2.7: use a loopback address" in result.stderr
    assert [] == docker.calls()


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--influxdb-port", "0", "--influxdb-port 0 is not a port; allowed: 1 to 65535"),
        ("--grafana-port", "70000", "--grafana-port 70000 is not a port; allowed: 1 to 65535"),
        ("--timeout", "-1", "--timeout -1 is not valid; allowed: seconds > 0"),
        ("--timeout", "nan", "--timeout nan is not valid; allowed: seconds > 0"),
    ],
)
def test_install_refuses_a_port_or_timeout_out_of_range(docker, option, value, said):
    """Port 0 would publish a random port, 70000 made bind() raise: one line, exit status 2,
    before docker is asked anything."""
    result = docker.install(option, value)
    assert 2 == result.returncode
    assert [f"multimeter visualization install: {said}"] == result.stderr.splitlines()
    assert [] == docker.calls()


def test_start_refuses_a_timeout_out_of_range(docker):
    """start --timeout 0: one line, exit status 2, nothing started."""
    assert 0 == docker.install().returncode
    calls = len(docker.calls())
    result = docker.run("start", "--timeout", "0")
    assert 2 == result.returncode
    assert "--timeout 0 is not valid" in result.stderr
    assert calls == len(docker.calls())


def test_remove_without_a_terminal_or_yes_refuses(docker):
    """With no terminal to ask on and no --yes, nothing is removed."""
    assert 0 == docker.install().returncode
    result = docker.run("remove", stdin="y\n")
    assert 2 == result.returncode
    assert "pass --yes" in result.stderr
    assert docker.config.exists() and docker.data.exists()
    assert not [call for call in docker.calls() if "down" in call]


@pytest.mark.parametrize(("answer", "removed"), [("n", False), ("y", True)])
def test_remove_asks_on_the_terminal(docker, answer, removed):
    """On a terminal, remove asks; only 'y' deletes the data."""
    assert 0 == docker.install().returncode
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())
        result = docker.run("remove", terminal=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert "delete all its data in" in result.stdout
    assert removed == (not docker.data.exists())
    assert removed == (not docker.config.exists())
    assert (0 if removed else 2) == result.returncode


def test_commands_without_an_installation_say_so(docker):
    """start/stop/status/env/remove before install: one line, exit status 2."""
    for command in ("start", "stop", "status", "env", "remove"):
        result = docker.run(command)
        assert 2 == result.returncode, command
        assert [
            f"multimeter visualization {command}: no visualization is installed"
            f" ({docker.config} does not exist): run 'multimeter visualization install' first"
        ] == result.stderr.splitlines()


def test_the_multimeter_command_forwards_to_the_tool(docker):
    """`multimeter visualization ...` is the same tool (options after the sub-command too)."""
    result = run_python("-m", "multimeter", "visualization", "env", "-c", docker.config)
    assert 2 == result.returncode
    assert result.stderr.startswith("multimeter visualization env: no visualization is installed")
    helped = run_python("-m", "multimeter", "visualization", "--help", check=True)
    assert "install" in helped.stdout and "remove" in helped.stdout


def test_readiness_waits_until_the_timeout_and_says_for_what():
    """No server: after the timeout, an error naming the service, the URL and the last error."""
    from multimeter._visualization import _http

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    port = free_port()
    with pytest.raises(_http.HttpError, match=r"influxdb did not become ready within 3 s"):
        _http.wait_until_ready(
            "influxdb", f"http://127.0.0.1:{port}/health", _http.influxdb_ready, 3.0,
            clock=lambda: now[0], sleep=sleep,
        )  # fmt: skip
    assert 3.0 <= now[0] <= 3.0 + _http.POLL_INTERVAL_S


def test_requests_go_to_loopback_only():
    """The tool never contacts another host."""
    from multimeter._visualization import _http

    with pytest.raises(_http.HttpError, match="only loopback"):
        _http.request("GET", "http://192.0.2.1:8086/health")
