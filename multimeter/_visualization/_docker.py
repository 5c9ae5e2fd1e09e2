"""Finding Docker and its compose tool, and running compose for the visualization."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

#: How long a probing command (``docker info``, ``compose version``) may take.
PROBE_TIMEOUT_S = 30.0


class DockerError(Exception):
    """Docker is missing, its engine is not running, or a compose command failed."""


def _run(command: Sequence[str], *, timeout: float | None = PROBE_TIMEOUT_S) -> tuple[int, str]:
    try:
        completed = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return 124, f"no answer within {timeout:g} s"
    except OSError as error:
        return 127, str(error)
    return completed.returncode, (completed.stderr or completed.stdout).strip()


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def _stderr() -> int | None:
    """Our stderr's descriptor (compose's progress goes there, not into our output)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def find_compose() -> list[str]:
    """The compose command: ``docker compose`` (the plugin), else ``docker-compose``.

    Raises :class:`DockerError` saying what to install when neither is there.
    """
    docker = shutil.which("docker")
    if docker is None:
        raise DockerError(
            "docker is not installed (not found on PATH): install Docker Engine with its"
            " compose plugin, then run this again"
        )
    status, _ = _run([docker, "compose", "version"])
    if status == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        status, _ = _run([legacy, "version"])
        if status == 0:
            return [legacy]
    raise DockerError(
        "docker compose is not available (neither the 'docker compose' plugin nor"
        " 'docker-compose' works): install the compose plugin, then run this again"
    )


def check_engine() -> None:
    """Raise :class:`DockerError` unless the Docker engine answers ``docker info``."""
    docker = shutil.which("docker") or "docker"
    status, message = _run([docker, "info"])
    if status != 0:
        raise DockerError(
            f"the Docker engine is not running or not reachable ({_first_line(message)}):"
            " start it (e.g. 'sudo systemctl start docker') or make sure you may use its"
            " socket (the 'docker' group), then run this again"
        )


class Compose:
    """Runs ``<compose> -p PROJECT -f FILE ...`` with the visualization's environment."""

    def __init__(
        self,
        command: Sequence[str],
        project: str,
        compose_file: os.PathLike[str] | str,
        environment: Mapping[str, str],
    ) -> None:
        self.command = list(command)
        self.project = project
        self.compose_file = str(compose_file)
        self.environment = {**os.environ, **environment}

    def _argv(self, *arguments: str) -> list[str]:
        return [*self.command, "-p", self.project, "-f", self.compose_file, *arguments]

    def run(self, *arguments: str) -> None:
        """Run a compose command, its output on our stderr; raise :class:`DockerError` if it fails.

        No time limit: ``up`` may be pulling images.
        """
        try:
            completed = subprocess.run(
                self._argv(*arguments),
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=_stderr(),
                check=False,
            )
        except OSError as error:
            raise DockerError(f"cannot run {self.command[0]}: {error}") from None
        if completed.returncode != 0:
            raise DockerError(
                f"'compose {' '.join(arguments)}' failed with exit status"
                f" {completed.returncode} (its messages are above)"
            )

    def running_services(self) -> set[str]:
        """The services whose containers are running now."""
        try:
            completed = subprocess.run(
                self._argv("ps", "--services", "--filter", "status=running"),
                env=self.environment,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DockerError(f"cannot ask compose which containers run: {error}") from None
        if completed.returncode != 0:
            raise DockerError(
                f"cannot ask compose which containers run: {_first_line(completed.stderr)}"
            )
        return {line.strip() for line in completed.stdout.splitlines() if line.strip()}
