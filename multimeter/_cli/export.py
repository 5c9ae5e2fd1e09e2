"""``multimeter export``: results converted to JSON, line protocol or CSV.

JSON and line protocol are written by the storages' own formats
(:class:`~multimeter.JsonFormat`, :class:`~multimeter.LineFormat`), so what is
exported loads back with :func:`multimeter.load_result`. Where the output goes:

- no ``-o`` (or ``-o -``), or ``-o`` naming a FIFO or a device: stdout, or that
  stream, written into. JSON: one document per line (JSON Lines: one line for one
  result); line protocol: the results one after the other; CSV: the points (the
  marks need a file: a line on stderr says how many were left out).
- ``-o FILE`` with one result: that file (replaced, atomically; a symbolic link's
  target is). CSV: ``FILE`` holds the points and ``FILE`` with ``.marks.csv``
  instead of ``.csv`` the marks; several results go to one CSV with an
  ``identifier`` column first.
- ``-o DIR`` (an existing directory, or any path when there are several
  results) for JSON and line protocol: one file per result,
  ``DIR/<identifier>.json`` (or ``.line``), never replacing a file (a taken
  name gets ``~2``, ...), as :class:`~multimeter.FileStorage` stores them.
"""

from __future__ import annotations

import argparse
import codecs
import functools
import itertools
import os
import pathlib
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import IO, Any

from multimeter._cli._common import CommandError, add_debug
from multimeter._cli._csv import CsvWriter, measure_keys
from multimeter._cli._output import STDOUT, is_stream, writing
from multimeter._cli._summary import check_paths
from multimeter._cli.show import stdout_gone
from multimeter._loading import load_results, result_files
from multimeter.result import Result
from multimeter.storages._json import result_text
from multimeter.storages.file import FileFormat, FileStorage, JsonFormat, LineFormat

FORMATS = ("json", "line", "csv")
_FILE_FORMATS: dict[str, Callable[[], FileFormat]] = {"json": JsonFormat, "line": LineFormat}


def add_parser(commands: Any, name: str) -> None:
    """Declare ``export``."""
    parser = commands.add_parser(
        name,
        help="convert results to JSON, line protocol or CSV",
        description=(
            "Converts result files (and directories of them, recursively) to JSON, InfluxDB"
            " line protocol or CSV (one row per point: datetime, then one column per measure;"
            " the marks in OUT.marks.csv). Without -o (or with -o -) the output goes to"
            " stdout, and to OUT itself where it is a FIFO or a device; with several"
            " results, JSON and line protocol go to a directory, one file per result, and"
            " CSV to one file with an identifier column."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="result files or directories")
    parser.add_argument(
        "--format",
        metavar="FORMAT",
        help="json, line or csv (default: from the extension of -o)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=STDOUT,
        metavar="OUT",
        help="a file, a directory, a FIFO or device, or - for stdout (default)",
    )
    add_debug(parser)
    parser.set_defaults(handler=main)


def main(arguments: argparse.Namespace) -> int:
    """Export the results; 0 when everything was written."""
    output: str = arguments.output
    chosen = _format(arguments.format, None if output == STDOUT else output)
    given = check_paths(arguments.paths)
    for path in given:
        if path.is_dir() and next(result_files(path), None) is None:
            raise CommandError(f"no results under {str(path)!r}")
    results = _results(given)
    first = list(itertools.islice(results, 2))
    if not first:
        raise CommandError(f"no results in {', '.join(map(str, given))}")
    if chosen == "csv":
        if len(first) > 1:
            results.close()  # read again, twice
        return _csv(given, first, output)
    several = len(first) > 1
    everything = itertools.chain(first, results)
    file_format = _FILE_FORMATS[chosen]()
    if is_stream(output):
        try:
            with writing(output) as stream:
                _to_stream(everything, chosen, file_format, stream)
        except BrokenPipeError:  # the reader went away (| head)
            stdout_gone()
            return 1
        return 0
    target = pathlib.Path(output)
    if several or target.is_dir() or output.endswith(os.sep):
        if target.exists() and not target.is_dir():
            raise CommandError(
                f"{output!r} is a file: several results go to a directory, one file each"
            )
        storage = FileStorage(target, file_format)
        count = 0
        for result in everything:
            _checked(functools.partial(storage.store, result), result)
            count += 1
        print(f"wrote {count} result file(s) to {target}{os.sep}", file=sys.stderr)
        return 0
    (result,) = first
    with writing(output) as stream:
        _checked(lambda: file_format.save_result_to_stream(result, stream), result)
    print(f"wrote {target}", file=sys.stderr)
    return 0


def _format(given: str | None, output: str | None) -> str:
    """The format asked for, or the one the output's extension names."""
    if given is None:
        suffix = pathlib.PurePath(output).suffix.lstrip(".") if output else ""
        if suffix not in FORMATS:
            raise CommandError("say which format: --format json, line or csv")
        return suffix
    if given not in FORMATS:
        raise CommandError(f"unknown format {given!r}: choose one of {', '.join(FORMATS)}")
    return given


def _results(paths: Sequence[pathlib.Path]) -> Generator[Result, None, None]:
    """The results of ``paths``; a file that cannot be read is a CommandError naming it."""
    for path in paths:
        try:
            yield from load_results(path)
        except ValueError as error:  # ResultFileError names the file and what is wrong
            raise CommandError(str(error)) from error
        except OSError as error:
            raise CommandError(f"cannot read {error.filename or path}: {error.strerror}") from error


def _checked(write: Callable[[], None], result: Result) -> None:
    """Run ``write``; a result the format cannot hold is a CommandError naming it."""
    try:
        write()
    except ValueError as error:
        raise CommandError(f"result {result.identifier!r} cannot be exported: {error}") from error
    except BrokenPipeError:  # stdout's reader went away (| head): not a write error
        raise
    except OSError as error:
        raise CommandError(f"cannot write {error.filename or ''}: {error.strerror}") from error


def _to_stream(
    results: Iterator[Result], chosen: str, file_format: FileFormat, stream: IO[bytes]
) -> None:
    """The results one after the other (JSON: one document per line)."""
    for result in results:
        if chosen == "json":
            text = result_text(result) + "\n"  # one line: JSON escapes line breaks
            stream.write(text.encode("utf-8", "backslashreplace"))
        else:
            _checked(functools.partial(file_format.save_result_to_stream, result, stream), result)


def _csv(paths: Sequence[pathlib.Path], first: list[Result], output: str) -> int:
    """Write the points (and marks, to a file) as CSV; several results are read twice
    (the columns first)."""
    several = len(first) > 1
    if several:
        columns = measure_keys(_results(paths))
        results: Iterator[Result] = _results(paths)
    else:
        columns = measure_keys(first)
        results = iter(first)
    if is_stream(output):
        try:
            with writing(output) as stream:
                writer = _write_csv(stream, None, columns, several, results)
        except BrokenPipeError:  # the reader went away (| head)
            stdout_gone()
            return 1
        if writer.marks_left_out:
            print(
                f"multimeter export: {writer.marks_left_out} mark(s) not written:"
                " give -o FILE.csv to get them in FILE.marks.csv",
                file=sys.stderr,
            )
        return 0
    target = pathlib.Path(output)
    if target.is_dir():
        raise CommandError(f"{output!r} is a directory: CSV goes to one file, e.g. -o results.csv")
    stem = target.name[:-4] if target.name.endswith(".csv") else target.name
    marks = target.with_name(stem + ".marks.csv")
    with writing(output) as points_stream, writing(str(marks)) as marks_stream:
        _write_csv(points_stream, marks_stream, columns, several, results)
    print(f"wrote {target} and {marks}", file=sys.stderr)
    return 0


def _write_csv(
    points: IO[bytes],
    marks: IO[bytes] | None,
    columns: list[str],
    several: bool,
    results: Iterator[Result],
) -> CsvWriter:
    """Write ``results`` as CSV to the binary streams (UTF-8, left open); returns the
    writer (it counts the marks left out where ``marks`` is ``None``)."""
    encoded = codecs.getwriter("utf-8")
    writer = CsvWriter(
        encoded(points),
        encoded(marks) if marks is not None else None,
        columns,
        identifier=several,
    )
    for result in results:
        writer.add(result)
    return writer
