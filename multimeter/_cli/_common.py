"""What the sub-commands share: their error type and how a failure is printed."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class CommandError(Exception):
    """A failure the user can act on: printed as one line, no traceback.

    ``status`` is the exit status (2 for bad input, as argparse uses).
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def fail(command: str, message: str, status: int) -> int:
    """Print ``multimeter COMMAND: MESSAGE`` on stderr; return ``status``."""
    print(f"multimeter {command}: {message}", file=sys.stderr)
    return status


def add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the sub-command as well as before it."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an unexpected error",
    )


def one_line_errors(parser: argparse.ArgumentParser, name: str) -> None:
    """Usage errors of ``parser`` as one line (``multimeter NAME: ...``) and exit
    status 2, instead of argparse's usage lines."""

    def error(message: str) -> NoReturn:
        fail(name, f"{message} (see multimeter {name} --help)", 2)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]  # this parser's only
