"""``multimeter push``: send the spooled results to InfluxDB, or to an OTLP endpoint.

What was delivered and what is left is the command's report (stdout); each batch set
aside is an error line on stderr."""

from __future__ import annotations

import argparse
from typing import Any

from multimeter._cli._common import CommandError, add_debug, fail, logs_to_stderr


def add_parser(commands: Any, name: str) -> None:
    """Declare ``push``."""
    parser = commands.add_parser(
        name,
        help=(
            "send the spooled results to InfluxDB (or an OTLP endpoint) and remove exactly"
            " what was delivered"
        ),
        description=(
            "Sends the batches in the spool directory (MULTIMETER_SPOOL_DIR, default "
            "<MULTIMETER_DIR>/spool) to the InfluxDB configured by MULTIMETER_INFLUXDB_URL,"
            " _TOKEN, _ORG and _BUCKET; with MULTIMETER_STORAGE=otlp, the OTLP batches to "
            "the endpoint of the OTEL_EXPORTER_OTLP_* variables. Batches the server rejects"
            " are set aside in <spool>/rejected/, batches that cannot be read in "
            "<spool>/unreadable/, each with a .reason file. Exit status 0 only when every "
            "batch was delivered; 1 when a batch was rejected, set aside as unreadable or "
            "left in the spool (the server is away); 2 for a bad configuration."
        ),
    )
    add_debug(parser)
    parser.set_defaults(handler=main)


def main(arguments: argparse.Namespace) -> int:
    """Push the spool; 0 only when everything was delivered."""
    from multimeter import _env
    from multimeter._config import influxdb_storage_from_env, otlp_storage_from_env

    logs_to_stderr()
    try:
        kind = _env.get(_env.STORAGE)
        otlp = kind is not None and kind.strip().lower() == "otlp"
        storage: Any = otlp_storage_from_env() if otlp else influxdb_storage_from_env()
    except ValueError as error:
        raise CommandError(str(error)) from None
    with storage:
        report = storage.push()
    left = f"{report.left} left in {storage.spool.directory}"
    print(f"delivered {report.delivered} batch(es); {left}")
    set_aside = (("rejected by the server", report.rejected), ("cannot be read", report.unreadable))
    for why, paths in set_aside:
        for path in paths:
            fail("push", f"{why}, set aside: {path} (reason: {path.with_suffix('.reason')})", 1)
    return 0 if report.complete else 1
