"""``multimeter export``: not built yet (issue 10)."""

from __future__ import annotations

import argparse
from typing import Any

from multimeter._cli._common import CommandError, add_debug


def add_parser(commands: Any, name: str) -> None:
    """Declare ``export``."""
    parser = commands.add_parser(name, help="(not built yet)")
    add_debug(parser)
    parser.set_defaults(handler=main)


def main(arguments: argparse.Namespace) -> int:
    """Not built yet."""
    raise CommandError("not built yet")
