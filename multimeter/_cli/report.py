"""``multimeter report PATH... [-o report.html]``: one self-contained HTML report.

The page holds everything (uPlot, the styles, the script and the data as JSON),
so it opens offline and makes no network request. The path written is printed
on stderr; stdout stays empty, unless ``-o -`` puts the page there. Where the page
goes (a file replaced atomically, a FIFO or device written into): ``_output.py``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from multimeter._cli._common import CommandError, add_debug, result_paths
from multimeter._cli._output import STDOUT
from multimeter._cli.show import stdout_gone
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
        "paths",
        nargs="*",
        metavar="PATH",
        help="result files or directories (default: MULTIMETER_DIR, or ./multimeter-results)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"the HTML file to write, or - for stdout (default: ./{DEFAULT_OUTPUT})",
    )
    add_debug(parser)
    parser.set_defaults(handler=main)


def main(arguments: argparse.Namespace) -> int:
    """Write the report; print its path on stderr (nothing for stdout)."""
    from multimeter._report import write_report

    output = arguments.output
    if output != STDOUT:
        path = pathlib.Path(output)
        if path.is_dir():
            raise CommandError(f"{output!r} is a directory: give -o a file name")
        if not path.parent.is_dir():
            raise CommandError(f"no such directory for the report: {str(path.parent)!r}")
    try:
        write_report(result_paths(arguments.paths), output)
    except ResultFileError as error:  # damage that only reading the whole file shows
        raise CommandError(str(error)) from error
    except BrokenPipeError:  # stdout's reader went away (| head)
        stdout_gone()
        return 1
    except OSError as error:  # a result file that cannot be read (any more)
        raise CommandError(f"{error.strerror or error}: {error.filename!r}", 1) from error
    if output != STDOUT:
        print(f"multimeter report: wrote {pathlib.Path(output).absolute()}", file=sys.stderr)
    return 0
