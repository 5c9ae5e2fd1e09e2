"""Command line tool for setting up a docker based visualization.

InfluxDB 2 and Grafana run in Docker (compose), with multimeter's dashboards
provisioned and example data loaded::

    multimeter visualization install        # or: python -m multimeter.visualization install
    multimeter visualization status
    eval "$(multimeter visualization env --show-token)"   # point a program at it
    multimeter visualization stop / start
    multimeter visualization remove         # asks first; --yes to skip the question

``install`` refuses to run over an existing installation. The configuration
file (default ``~/.multimeter/visu.config.json``, ``-c/--config``) holds the
generated admin password and the tokens; it is created with mode 0600, and
neither is printed unless asked (``status --show-password``, ``env --show-token``).
Every failure is one line on stderr and a non-zero exit status: 2 for what the
user asked (an existing or missing installation, a bad name, a declined
``remove``), 1 for what the machine lacks (Docker, its compose tool, a running
engine, a free port) or a service that did not become ready in time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import importlib.resources
import ipaddress
import pathlib
import re
import secrets
import shlex
import shutil
import socket
import sys
from collections.abc import Sequence
from typing import Any

from multimeter import _env
from multimeter._cli._common import CommandError, fail
from multimeter._visualization import _config, _docker, _http
from multimeter._visualization._config import VisuConfig

__all__ = ["env", "install", "main", "remove", "start", "status", "stop"]

#: The file in the data directory that says ``remove`` may delete the directory.
MARKER = ".multimeter-visualization"
#: The placeholder for the bucket in the packaged dashboards.
BUCKET_PLACEHOLDER = "__MULTIMETER_BUCKET__"
SERVICES = ("influxdb", "grafana")
DEFAULT_TIMEOUT_S = 180.0
_REMEDY = "stop what uses it or choose another port with {}"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def _resources() -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("multimeter._visualization"))) / "resources"


def _check_name(option: str, value: str) -> None:
    if not _NAME.match(value):
        raise CommandError(
            f"{option} {value!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )


def _check_listen(address: str) -> None:
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise CommandError(f"--listen {address!r} is not an IPv4 address") from None
    if not (parsed.is_loopback or parsed.is_unspecified):
        raise CommandError(
            f"--listen {address}: use a loopback address (127.0.0.1, the default) or 0.0.0.0"
            " (every interface)"
        )


def _check_port_free(address: str, port: int, remedy: str) -> None:
    """Bind ``address:port`` for a moment: taken ports fail here, not half-way through."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"port {port} on {address} is taken: {remedy}", status=1
                ) from None
            raise CommandError(
                f"cannot use port {port} on {address} ({error.strerror}): {remedy}", status=1
            ) from None


def _docker_ready() -> list[str]:
    try:
        command = _docker.find_compose()
        _docker.check_engine()
    except _docker.DockerError as error:
        raise CommandError(str(error), status=1) from None
    return command


def _compose(config: VisuConfig, command: list[str]) -> _docker.Compose:
    return _docker.Compose(
        command, config.project, config.compose_file, config.compose_environment()
    )


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _wait_for(service: str, config: VisuConfig, timeout: float) -> None:
    if service == "influxdb":
        url, check = f"{config.influxdb_url}/health", _http.influxdb_ready
    else:
        url, check = f"{config.grafana_url}/api/health", _http.grafana_ready
    _say(f"waiting for {service} at {url} (at most {timeout:g} s)")
    _http.wait_until_ready(service, url, check, timeout)


def _copy_files(config: VisuConfig) -> None:
    """Compose file, Grafana provisioning and dashboards (bucket filled in) into the data dir."""
    data = pathlib.Path(config.data_dir)
    resources = _resources()
    for directory in ("influxdb/data", "influxdb/config", "grafana/data", "grafana/dashboards"):
        (data / directory).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(resources / "docker-compose.yml", config.compose_file)
    shutil.copytree(
        resources / "grafana" / "provisioning",
        data / "grafana" / "provisioning",
        dirs_exist_ok=True,
    )
    for template in sorted((resources / "grafana" / "dashboards").glob("*.json")):
        text = template.read_text(encoding="utf-8").replace(BUCKET_PLACEHOLDER, config.bucket)
        (data / "grafana" / "dashboards" / template.name).write_text(text, encoding="utf-8")


def _load_example_data(config: VisuConfig, influx: _http.InfluxSetup) -> int:
    """Measure the example job here and now, write it to the bucket; the number of lines."""
    from multimeter._visualization import _example

    lines = _example.example_lines(_example.example_results())
    (pathlib.Path(config.data_dir) / "example.line").write_text(lines, encoding="utf-8")
    influx.write(config.write_token, config.org, config.bucket, lines)
    return len(lines.splitlines())


def _check_port(option: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise CommandError(f"{option} {port} is not a port; allowed: 1 to 65535")


def _check_timeout(timeout: float) -> None:
    if not 0 < timeout < float("inf"):
        raise CommandError(f"--timeout {timeout:g} is not valid; allowed: seconds > 0")


def install(args: argparse.Namespace) -> int:
    """Install the visualization containers and configure them; returns the exit status.

    Starts InfluxDB 2 first and sets it up through its HTTP API (a generated
    admin password; a read-only token for Grafana and a write token for
    programs, both limited to the bucket), loads example data measured now,
    copies the dashboards with the bucket filled in, starts Grafana, waits
    until both answer, and prints how to use them.

    Raises:
        CommandError: an existing installation, a bad option, Docker missing or
            not running, a port taken, a service that did not become ready.
    """
    config_path = pathlib.Path(args.config_file)
    if config_path.exists():
        raise CommandError(
            f"a visualization is already installed (configuration {config_path}): use start,"
            " stop and status, or remove it first"
        )
    _check_name("--org", args.org)
    _check_name("--bucket", args.bucket)
    _check_listen(args.listen)
    _check_port("--influxdb-port", args.influxdb_port)
    _check_port("--grafana-port", args.grafana_port)
    _check_timeout(args.timeout)
    if args.influxdb_port == args.grafana_port:
        raise CommandError("--influxdb-port and --grafana-port must differ")
    data_dir = pathlib.Path(args.data_dir).expanduser().absolute()
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise CommandError(
            f"the data directory {data_dir} exists and is not empty: choose another with"
            " --dir, or delete it"
        )
    command = _docker_ready()
    _check_port_free(args.listen, args.influxdb_port, _REMEDY.format("--influxdb-port"))
    _check_port_free(args.listen, args.grafana_port, _REMEDY.format("--grafana-port"))

    config = VisuConfig(
        data_dir=str(data_dir),
        org=args.org,
        bucket=args.bucket,
        listen=args.listen,
        influxdb_port=args.influxdb_port,
        grafana_port=args.grafana_port,
        admin_password=secrets.token_urlsafe(18),
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("created by multimeter visualization install\n")
    _config.save(config_path, config)  # from here on, 'remove' can undo what follows
    try:
        _copy_files(config)
        compose = _compose(config, command)
        _say("starting influxdb")
        compose.run("up", "-d", "influxdb")
        _wait_for("influxdb", config, args.timeout)
        influx = _http.InfluxSetup(config.influxdb_url)
        operator, org_id, bucket_id = influx.setup(
            config.admin_user, config.admin_password, config.org, config.bucket
        )
        config = _replace(
            config,
            operator_token=operator,
            grafana_token=influx.create_token(
                operator, org_id, bucket_id, ("read",), "multimeter visualization: Grafana"
            ),
            write_token=influx.create_token(
                operator, org_id, bucket_id, ("read", "write"), "multimeter visualization: programs"
            ),
        )
        _config.save(config_path, config)
        _say("measuring the example data")
        count = _load_example_data(config, influx)
        _say(f"loaded {count} lines of example data into bucket {config.bucket}")
        _say("starting grafana")
        compose = _compose(config, command)
        compose.run("up", "-d", "grafana")
        _wait_for("grafana", config, args.timeout)
    except (_docker.DockerError, _http.HttpError, OSError) as error:
        raise CommandError(
            f"{error}; to undo what was set up, run 'multimeter visualization remove'", status=1
        ) from None
    config = _replace(config, state="installed")
    _config.save(config_path, config)
    print(_instructions(config, config_path))
    return 0


def _replace(config: VisuConfig, **changes: Any) -> VisuConfig:
    return dataclasses.replace(config, **changes)


def _instructions(config: VisuConfig, config_path: pathlib.Path) -> str:
    return "\n".join(
        [
            f"Grafana:  {config.grafana_url}  (user {config.admin_user}; the password:"
            " multimeter visualization status --show-password)",
            "          dashboards 'multimeter: Measurements' and 'multimeter: Functions'",
            f"InfluxDB: {config.influxdb_url}  (org {config.org}, bucket {config.bucket})",
            f"Data in {config.data_dir}; configuration (password, tokens) in {config_path}.",
            "Send a program's results there:",
            '  eval "$(multimeter visualization env --show-token)"',
        ]
    )


def _load(args: argparse.Namespace) -> VisuConfig:
    try:
        return _config.load(pathlib.Path(args.config_file))
    except _config.ConfigError as error:
        raise CommandError(str(error)) from None


def start(args: argparse.Namespace) -> int:
    """Start the containers (recreating them if they were removed) and wait until ready."""
    _check_timeout(args.timeout)
    config = _load(args)
    command = _docker_ready()
    compose = _compose(config, command)
    try:
        running = compose.running_services()
        ports = {"influxdb": config.influxdb_port, "grafana": config.grafana_port}
        for service in SERVICES:
            if service not in running:
                _check_port_free(
                    config.listen,
                    ports[service],
                    "stop what uses it (the installation's port), then start again",
                )
        compose.run("up", "-d")
        for service in SERVICES:
            _wait_for(service, config, args.timeout)
    except (_docker.DockerError, _http.HttpError) as error:
        raise CommandError(str(error), status=1) from None
    print(f"running: Grafana {config.grafana_url}, InfluxDB {config.influxdb_url}")
    return 0


def stop(args: argparse.Namespace) -> int:
    """Stop the containers; the data stays."""
    config = _load(args)
    command = _docker_ready()
    try:
        _compose(config, command).run("stop")
    except _docker.DockerError as error:
        raise CommandError(str(error), status=1) from None
    print("stopped (start again with: multimeter visualization start)")
    return 0


def _confirm(question: str) -> bool:
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        raise CommandError(
            "there is no terminal to ask for confirmation: pass --yes to remove the"
            " containers and delete the data"
        )
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


def remove(args: argparse.Namespace) -> int:
    """Take the containers down and delete the data and the configuration (asks unless --yes)."""
    config_path = pathlib.Path(args.config_file)
    config = _load(args)
    data_dir = pathlib.Path(config.data_dir)
    if not args.yes and not _confirm(
        f"Remove the visualization's containers and delete all its data in {data_dir}?"
    ):
        raise CommandError("nothing removed")
    command = _docker_ready()
    try:
        if config.compose_file.exists():
            _compose(config, command).run("down", "--volumes", "--remove-orphans")
    except _docker.DockerError as error:
        raise CommandError(str(error), status=1) from None
    if (data_dir / MARKER).exists():
        shutil.rmtree(data_dir)
    elif data_dir.exists():
        _say(f"{data_dir} was not made by install (no {MARKER} file): left alone")
    config_path.unlink(missing_ok=True)
    print(f"removed: containers taken down, {data_dir} and {config_path} deleted")
    return 0


def status(args: argparse.Namespace) -> int:
    """Print whether the containers run and answer, the URLs, and the settings.

    Exit status 0 when both services run and are ready, 1 otherwise.
    """
    config = _load(args)
    command = _docker_ready()
    try:
        running = _compose(config, command).running_services()
    except _docker.DockerError as error:
        raise CommandError(str(error), status=1) from None
    checks = {
        "influxdb": (f"{config.influxdb_url}/health", _http.influxdb_ready, config.influxdb_url),
        "grafana": (f"{config.grafana_url}/api/health", _http.grafana_ready, config.grafana_url),
    }
    healthy = config.state == "installed"
    for service in SERVICES:
        url, check, base = checks[service]
        state = "running" if service in running else "not running"
        try:
            ready = service in running and check(_http.request("GET", url))
        except _http.HttpError:
            ready = False
        healthy = healthy and ready
        print(f"{service:<9} {state:<12} {'ready' if ready else 'not ready':<10} {base}")
    password = config.admin_password if args.show_password else "(--show-password prints it)"
    print(f"Grafana user {config.admin_user}, password {password}")
    print(f"org {config.org}, bucket {config.bucket}, data in {config.data_dir}")
    if config.state != "installed":
        print("the installation did not finish: run 'multimeter visualization remove'")
    print("settings for a program (add --show-token to include the token):")
    print(_env_lines(config, show_token=False))
    return 0 if healthy else 1


def _env_lines(config: VisuConfig, *, show_token: bool) -> str:
    values = [
        (_env.STORAGE, "influxdb"),
        (_env.INFLUXDB_URL, config.influxdb_url),
        (_env.INFLUXDB_ORG, config.org),
        (_env.INFLUXDB_BUCKET, config.bucket),
    ]
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values]
    if show_token:
        lines.append(f"export {_env.INFLUXDB_TOKEN}={shlex.quote(config.write_token)}")
    else:
        lines.append(f"# export {_env.INFLUXDB_TOKEN}=... (left out: add --show-token)")
    return "\n".join(lines)


def env(args: argparse.Namespace) -> int:
    """Print the ``MULTIMETER_*`` settings for this InfluxDB as ``export`` lines.

    The token (read and write on the bucket) only with ``--show-token``.
    """
    print(_env_lines(_load(args), show_token=args.show_token))
    return 0


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run InfluxDB 2 and Grafana in Docker with multimeter's dashboards.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        dest="config_file",
        default=str(_config.DEFAULT_CONFIG),
        help="the file where the configuration of the visualization is kept (mode 0600)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: object, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        sub.set_defaults(handler=handler)
        # -c and --debug after the sub-command as well as before it
        sub.add_argument(
            "-c", "--config", dest="config_file", default=argparse.SUPPRESS,
            help="the configuration file (as before the sub-command)",
        )  # fmt: skip
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS,
            help="show the traceback of an unexpected error",
        )  # fmt: skip
        return sub

    def timeout(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT_S,
            help="seconds to wait for each service to become ready",
        )

    sub = command("install", install, "create the containers, set them up, load example data")
    sub.add_argument(
        "-d", "--dir", dest="data_dir", default=str(_config.DEFAULT_DATA_DIR),
        help="the directory where the data is kept (must be empty or absent)",
    )  # fmt: skip
    sub.add_argument("-o", "--org", default="kantai", help="the organization in InfluxDB")
    sub.add_argument(
        "-b", "--bucket", default="multimeter", help="the bucket in InfluxDB for the results"
    )
    sub.add_argument("--influxdb-port", type=int, default=8086, help="InfluxDB's port here")
    sub.add_argument("--grafana-port", type=int, default=3000, help="Grafana's port here")
    sub.add_argument(
        "--listen",
        default="127.0.0.1",
        help="the address the ports are published on: loopback, or 0.0.0.0 for every interface",
    )
    timeout(sub)
    timeout(command("start", start, "start the containers and wait until they answer"))
    command("stop", stop, "stop the containers (the data stays)")
    sub = command("remove", remove, "take the containers down and delete all the data")
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    sub = command("status", status, "whether the containers run and answer, URLs, settings")
    sub.add_argument("--show-password", action="store_true", help="print Grafana's admin password")
    sub = command("env", env, "print the MULTIMETER_INFLUXDB_* settings as export lines")
    sub.add_argument("--show-token", action="store_true", help="include the token")
    return parser


def main(args: Sequence[str] | None = None, *, prog: str = "multimeter visualization") -> int:
    """Main function for the visualization tool: parse ``args`` (default ``sys.argv[1:]``),
    run the sub-command, return the exit status (one line on stderr for a failure)."""
    arguments = list(sys.argv[1:] if args is None else args)
    namespace = _parser(prog).parse_args(arguments)
    name = f"visualization {namespace.command}"
    try:
        result: int = namespace.handler(namespace)
    except CommandError as error:
        if namespace.debug:
            raise
        return fail(name, str(error), error.status)
    except KeyboardInterrupt:
        if namespace.debug:
            raise
        return fail(name, "interrupted", 130)
    except Exception as error:  # one line, not a traceback, unless --debug
        if namespace.debug:
            raise
        return fail(
            name, f"{type(error).__name__}: {error} (run with --debug for the traceback)", 1
        )
    return result


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(prog="python -m multimeter.visualization"))
