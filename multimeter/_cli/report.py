"""``multimeter report PATH... [-o report.html]``: one self-contained HTML report.

The page holds everything (uPlot, the styles, the script and the data as JSON),
so it opens offline and makes no network request. The path written is printed
on stderr; stdout stays empty.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from multimeter._cli._common import CommandError, add_debug
from multimeter.storages.file import ResultFileError

#: Where the report goes without ``-o``: in the current directory.
DEFAULT_OUTPUT = "multimeter-report.html"


def add_parser(commands: Any, name: str) -> None:
    """Declare ``report``."""
    parser = commands.add_parser(
        name,
        help="write an HTML report (charts, marks, tags) of result files and directories",
        description=(
            "Write one self-contained HTML file that charts the results under the PATHs:"
            " a chart per metric (zoom: drag; reset: double-click), marks, measured calls,"
            " tags and meta data. Several results are overlaid, aligned on their start; a"
            " directory of many @measured calls gets the per-function summary and a chart"
            " of call durations. The path written is printed on stderr."
        ),
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="a result file or a directory of results"
    )
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"the HTML file to write (default: ./{DEFAULT_OUTPUT})",
    )
    add_debug(parser)
    parser.set_defaults(handler=main)


def main(arguments: argparse.Namespace) -> int:
    """Write the report; print its path on stderr."""
    from multimeter._report import write_report

    output = pathlib.Path(arguments.output)
    if output.is_dir():
        raise CommandError(f"{str(output)!r} is a directory: give -o a file name")
    if not output.parent.is_dir():
        raise CommandError(f"no such directory for the report: {str(output.parent)!r}")
    try:
        written = write_report(arguments.paths, output)
    except ResultFileError as error:  # damage that only reading the whole file shows
        raise CommandError(str(error)) from error
    except OSError as error:
        name = error.filename
        if name is not None and _is_temporary_of(pathlib.Path(name), output):
            name = str(output)  # the user gave the report's path, not the temporary file's
        raise CommandError(f"{error.strerror or error}: {name!r}", 1) from error
    print(f"multimeter report: wrote {pathlib.Path(written).absolute()}", file=sys.stderr)
    return 0


def _is_temporary_of(path: pathlib.Path, output: pathlib.Path) -> bool:
    """Whether ``path`` is the temporary file the report is written through."""
    return path.parent == output.parent and path.name.startswith(f".{output.name}.")
