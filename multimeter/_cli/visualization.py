"""``multimeter visualization``: InfluxDB 2 and Grafana in Docker.

The tool is :mod:`multimeter.visualization`;
every argument after the sub-command's name goes to the visualization tool as it is.
"""

from __future__ import annotations

import argparse
import traceback
from typing import Any


def add_parser(commands: Any, name: str) -> None:
    """Declare ``visualization``: its arguments are forwarded, ``--help`` included."""
    parser = commands.add_parser(
        name,
        help="run InfluxDB 2 and Grafana in Docker with multimeter's dashboards",
        add_help=False,
        prefix_chars="\0",  # every argument, options included, is left for the tool
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=main)


def main(arguments: argparse.Namespace) -> int:
    """Run ``multimeter.visualization.main`` with the forwarded arguments."""
    from multimeter import visualization

    forwarded = list(arguments.arguments)
    if getattr(arguments, "debug", False) and "--debug" not in forwarded:
        forwarded.insert(0, "--debug")
    try:
        return visualization.main(forwarded)
    except Exception:  # noqa: BLE001 - only with --debug: the tool prints other failures
        traceback.print_exc()
        return 1
