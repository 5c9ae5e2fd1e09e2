"""What the sub-commands share: their error type and how a failure is printed."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import NoReturn

from multimeter._log import LOGGER_NAME

#: Control characters (C0, DEL, C1): a terminal acts on them (escape sequences set
#: the title, clear the screen, colour the text; a line break splits a line).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class CommandError(Exception):
    """A failure the user can act on: printed as one line, no traceback.

    ``status`` is the exit status (2 for bad input, as argparse uses).
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def printable(text: str) -> str:
    """``text`` as it is safe to print to a terminal: each control character
    escaped as Python writes it (``\\x1b``, ``\\n``, ``\\t``). For any text a
    command prints that it did not make itself (a stored identifier, tag, run or
    function name, a file name).

    >>> printable("run\\x1b]0;pwned\\x07 1\\n")
    'run\\\\x1b]0;pwned\\\\x07 1\\\\n'
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)


def fail(command: str, message: str, status: int) -> int:
    """Print ``multimeter COMMAND: MESSAGE`` on stderr (control characters escaped);
    return ``status``."""
    print(f"multimeter {command}: {printable(message)}", file=sys.stderr)
    return status


class _Stderr(logging.StreamHandler):
    """The handler the command line adds (once) to the ``multimeter`` logger."""


def logs_to_stderr(*, without: str | None = None) -> None:
    """Here multimeter is the program: its log lines from info up go to stderr
    (stdout is the command's output, or the measured program's). ``without``:
    leave out lines whose ``error`` field holds that text. Nothing changes where
    the program configured structlog: the lines follow that configuration."""
    standard = logging.getLogger(LOGGER_NAME)
    if any(isinstance(handler, _Stderr) for handler in standard.handlers):
        return
    handler = _Stderr(sys.stderr)
    handler.setFormatter(logging.Formatter("multimeter %(levelname)s: %(message)s"))
    if without is not None:
        text = without

        def keep(record: logging.LogRecord) -> bool:
            fields = getattr(record, "multimeter", None) or {}
            return text not in str(fields.get("error", ""))

        handler.addFilter(keep)
    standard.addHandler(handler)
    if standard.level == logging.NOTSET or standard.level > logging.INFO:
        standard.setLevel(logging.INFO)


def format_bytes(value: float) -> str:
    """Bytes in IEC units, as every surface prints them: ``512 B``, ``3.0 KiB``,
    ``28.4 MiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def result_paths(paths: list[str]) -> list[str]:
    """The PATHs given, or else where results are written: ``MULTIMETER_DIR``, or
    ``./multimeter-results`` (as pytest and coverage find their data)."""
    if paths:
        return paths
    from multimeter import _env

    directory = _env.get(_env.DIR) or _env.DEFAULT_DIR
    if not os.path.isdir(directory):
        raise CommandError(
            f"no PATH given, and no results in {directory!r} (MULTIMETER_DIR, or"
            f" ./{_env.DEFAULT_DIR}): give result files or directories"
        )
    return [directory]


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
