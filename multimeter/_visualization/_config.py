"""The visualization's configuration file: where it lives, what it holds, kept private.

The file holds the admin password and the InfluxDB tokens, so it is created with
mode 0600 (its directory 0700 when it is made) and replaced atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
from typing import Any

#: Where multimeter keeps the visualization's configuration and data by default.
HOME_DIR = pathlib.Path.home() / ".multimeter"
DEFAULT_CONFIG = HOME_DIR / "visu.config.json"
DEFAULT_DATA_DIR = HOME_DIR / "docker-data"
#: The compose project name: the containers are ``multimeter-visu-influxdb-1`` etc.
PROJECT = "multimeter-visu"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or not one of ours."""


@dataclasses.dataclass(frozen=True)
class VisuConfig:
    """What ``install`` set up; ``start``, ``stop``, ``status``, ``env`` and ``remove`` read it.

    ``state`` is ``installing`` until ``install`` has finished, then ``installed``.
    """

    data_dir: str
    org: str
    bucket: str
    listen: str = "127.0.0.1"
    influxdb_port: int = 8086
    grafana_port: int = 3000
    admin_user: str = "admin"
    admin_password: str = ""
    operator_token: str = ""
    grafana_token: str = ""
    write_token: str = ""
    project: str = PROJECT
    state: str = "installing"

    @property
    def compose_file(self) -> pathlib.Path:
        """The compose file copied into the data directory at install."""
        return pathlib.Path(self.data_dir) / "docker-compose.yml"

    @property
    def influxdb_url(self) -> str:
        """InfluxDB as seen from this machine (loopback)."""
        return f"http://127.0.0.1:{self.influxdb_port}"

    @property
    def grafana_url(self) -> str:
        """Grafana as seen from this machine (loopback)."""
        return f"http://127.0.0.1:{self.grafana_port}"

    def compose_environment(self) -> dict[str, str]:
        """The ``MULTIMETER_VISU_*`` values the compose file refers to."""
        return {
            "MULTIMETER_VISU_UID": str(os.getuid()),
            "MULTIMETER_VISU_GID": str(os.getgid()),
            "MULTIMETER_VISU_DATA_DIR": str(pathlib.Path(self.data_dir).absolute()),
            "MULTIMETER_VISU_LISTEN": self.listen,
            "MULTIMETER_VISU_INFLUXDB_PORT": str(self.influxdb_port),
            "MULTIMETER_VISU_GRAFANA_PORT": str(self.grafana_port),
            "MULTIMETER_VISU_PASSWORD": self.admin_password,
            "MULTIMETER_VISU_ORG": self.org,
            "MULTIMETER_VISU_BUCKET": self.bucket,
            "MULTIMETER_VISU_GRAFANA_TOKEN": self.grafana_token,
        }


def load(path: pathlib.Path) -> VisuConfig:
    """Read the configuration at ``path``; raises :class:`ConfigError` naming the problem."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no visualization is installed ({path} does not exist): run"
            " 'multimeter visualization install' first"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    names = {field.name for field in dataclasses.fields(VisuConfig)}
    if not isinstance(document, dict) or not {"data_dir", "org", "bucket"} <= document.keys():
        raise ConfigError(f"{path} is not a visualization configuration")
    values: dict[str, Any] = {key: value for key, value in document.items() if key in names}
    return VisuConfig(**values)


def save(path: pathlib.Path, config: VisuConfig) -> None:
    """Write ``config`` to ``path`` atomically, readable by the owner only (0600)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    text = json.dumps(dataclasses.asdict(config), indent=2) + "\n"
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
