"""The ``multimeter`` command line (also ``python -m multimeter``).

Each sub-command lives in its own module with two functions: ``add_parser``
(declares its options) and ``main`` (runs it, returns the exit status).
Everything the commands print about themselves goes to stderr unless it is
the command's output (a table, JSON); a failure is one line naming what went
wrong and a non-zero exit status, a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from multimeter._cli._common import CommandError, fail, one_line_errors
from multimeter._version import __version__

#: Sub-command name -> module under ``multimeter._cli`` (imported only when used).
COMMANDS = {
    "run": "run",
    "show": "show",
    "report": "report",
    "export": "export",
    "push": "push",
    "visualization": "visualization",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimeter",
        description="Measure what Python code and programs cost, and look at the results.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    parser.add_argument("--version", action="version", version=f"multimeter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(f"multimeter._cli.{module}").add_parser(commands, name)
    for name, command in commands.choices.items():  # usage errors: one line each
        one_line_errors(command, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    namespace = parser.parse_args(arguments)
    debug = bool(getattr(namespace, "debug", False))
    try:
        status: int = namespace.handler(namespace)
    except CommandError as error:
        if debug:
            raise
        return fail(namespace.command, str(error), error.status)
    except KeyboardInterrupt:
        if debug:
            raise
        return fail(namespace.command, "interrupted", 130)
    except Exception as error:  # one line, not a traceback, unless --debug
        if debug:
            raise
        return fail(
            namespace.command,
            f"{type(error).__name__}: {error} (run with --debug for the traceback)",
            1,
        )
    return status
