"""Command line: ``multimeter push`` (also ``python -m multimeter push``)."""

from __future__ import annotations

import argparse
import sys

from multimeter._config import influxdb_storage_from_env


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="multimeter", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "push",
        help="send the spooled results to InfluxDB and remove exactly what was delivered",
        description=(
            "Sends the batches in the spool directory (MULTIMETER_SPOOL_DIR, default"
            " <MULTIMETER_DIR>/spool) to the InfluxDB configured by MULTIMETER_INFLUXDB_URL,"
            " _TOKEN, _ORG and _BUCKET. Exit status 0 when the spool is empty afterwards."
        ),
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "push":
        try:
            storage = influxdb_storage_from_env()
        except ValueError as error:
            print(f"multimeter push: {error}", file=sys.stderr)
            return 2
        with storage:
            delivered, left = storage.push()
        print(f"delivered {delivered} batch(es); {left} left in {storage.spool.directory}")
        return 0 if left == 0 else 1
    return 2  # pragma: no cover - argparse refuses other commands


if __name__ == "__main__":
    sys.exit(main())
