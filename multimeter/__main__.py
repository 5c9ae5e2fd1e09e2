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
            " _TOKEN, _ORG and _BUCKET. Batches the server rejects are set aside in"
            " <spool>/rejected/, batches that cannot be read in <spool>/unreadable/, each"
            " with a .reason file. Exit status 0 only when every batch was delivered;"
            " 1 when a batch was rejected, set aside as unreadable or left in the spool"
            " (the server is away); 2 for a bad configuration."
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
            report = storage.push()
        print(
            f"delivered {report.delivered} batch(es); {report.left} left in"
            f" {storage.spool.directory}"
        )
        for path in report.rejected:
            print(
                f"rejected by the server, set aside: {path} (reason: {path.with_suffix('.reason')})"
            )
        for path in report.unreadable:
            print(f"cannot be read, set aside: {path} (reason: {path.with_suffix('.reason')})")
        return 0 if report.complete else 1
    return 2  # pragma: no cover - argparse refuses other commands


if __name__ == "__main__":
    sys.exit(main())
