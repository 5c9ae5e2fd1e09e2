"""Reading stored results back: result files, batch files, directories of them."""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import re
from collections.abc import Iterator

from multimeter._log import logger
from multimeter.result import Result
from multimeter.storages._format import reading
from multimeter.storages._jsonl import EXTENSION, Decoder
from multimeter.storages.file import FileFormat, JsonFormat, LineFormat, ResultFileError

_FORMATS: dict[str, FileFormat] = {".json": JsonFormat(), ".line": LineFormat()}
_ALLOWED = ".json, .line and .jsonl"
_BATCH_NAME = re.compile(r"(calls-.*)-(\d+)\.jsonl")
#: What result files end with (a file named only that is hidden and passed over).
_EXTENSIONS = (EXTENSION, *_FORMATS)


def load_result(path: str | os.PathLike[str]) -> Result:
    """Load one result: a file written by :class:`~multimeter.FileStorage`, or a
    batch file of :class:`~multimeter.storages.jsonl.JsonLinesStorage` that holds
    exactly one.

    The format is chosen by the extension: ``.json``, ``.line`` or ``.jsonl``.

    Raises:
        ValueError: for another extension, or a batch file that holds no result
            or several (read those with :func:`load_results`).
        ResultFileError: (a ``ValueError``) for a file that is not a result of its
            format: damaged, truncated, not UTF-8, or data of the wrong shape. The
            message names the file and what is wrong.
        OSError: when the file cannot be opened or read.
    """
    path = pathlib.Path(path)
    if path.suffix == EXTENSION:
        results = list(itertools.islice(_batch_file(path, PendingMarks(), skip_damaged=False), 2))
        if len(results) != 1:
            count = "no result" if not results else "more than one result"
            raise ValueError(
                f"{str(path)!r} holds {count}: read a batch file with multimeter.load_results()"
            )
        return results[0]
    file_format = _FORMATS.get(path.suffix)
    if file_format is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r}: allowed extensions are {_ALLOWED}"
        )
    with open(path, "rb") as stream:
        try:
            return file_format.load_result_from_stream(stream)
        except ResultFileError as error:
            raise ResultFileError(error.reason, str(path)) from error


def load_results(path: str | os.PathLike[str], *, skip_damaged: bool = False) -> Iterator[Result]:
    """The results in a file, or in every result file under a directory (recursively).

    Reads what multimeter writes: ``.json`` and ``.line`` files (one result each)
    and ``.jsonl`` batch files (many calls each); other files are passed over.
    Results come in the order of the files (names sorted, a process's batch files
    in the order it wrote them) and, within a batch file, in the order of its
    lines. A measured call gets the marks of the calls made inside it, as when it
    is stored on its own, where those calls are in the files read (they come
    before it, in the same or an earlier file of the same process). Files are
    read one line at a time: memory holds one line and the marks of the calls
    that are waiting for the call they were made in.

    A batch file's last line without its line break (what a crash in the middle
    of a write leaves) is passed over. Anything else that cannot be read raises
    :class:`~multimeter.ResultFileError` naming the file (and the line), unless
    ``skip_damaged`` is true: then the damaged lines (or files) are passed over
    and one warning per file says how many and why. The batches of an InfluxDB spool
    (``<20-digit time>-<pid>-<n>.line``, for ``multimeter push``) are not results
    and are passed over, and so is the pytest plugin's ``pytest-summary.json``.

    >>> for result in multimeter.load_results("multimeter-results"):  # doctest: +SKIP
    ...     print(result.identifier, result.duration)

    Raises:
        ValueError: for a single file with another extension.
        ResultFileError: for a damaged file or line (see ``skip_damaged``).
        OSError: when a file or directory cannot be read.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {str(path)!r}")
    files = result_files(path) if path.is_dir() else iter([path])
    pending = PendingMarks()
    for file in files:
        if file.suffix == EXTENSION:
            yield from _batch_file(file, pending, skip_damaged)
            continue
        try:
            result = load_result(file)
        except ResultFileError as error:
            if not skip_damaged:
                raise
            logger.warning("skipped a damaged result file", path=str(file), reason=error.reason)
            continue
        yield result


class PendingMarks:
    """The marks waiting for calls not read yet, of one process (by its token): one
    object for all the files of a reading, passed to each file's ``Decoder``."""

    __slots__ = ("marks", "token")

    def __init__(self) -> None:
        self.token = ""
        self.marks: dict[int, list[tuple[int, str]]] = {}

    def of(self, token: str) -> dict[int, list[tuple[int, str]]]:
        """The marks of ``token``'s calls; those of another process are dropped (its
        files are read one after the other, so a call they wait for is not stored)."""
        if token != self.token:
            self.token, self.marks = token, {}
        return self.marks


def _batch_file(path: pathlib.Path, pending: PendingMarks, skip_damaged: bool) -> Iterator[Result]:
    """The results of one batch file, line by line."""
    decoder: Decoder | None = None
    damaged, first_reason = 0, ""
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.endswith(b"\n"):
                break  # a partial last line: the write was cut short
            try:
                with reading(f"line {number}"):
                    value = json.loads(raw)
                    if decoder is None:
                        decoder = Decoder(value, pending)
                        continue
                    results = list(decoder.line(value))
            except ResultFileError as error:
                if not skip_damaged:
                    raise ResultFileError(error.reason, str(path)) from error
                damaged, first_reason = damaged + 1, first_reason or error.reason
                if decoder is None:
                    break  # no header: nothing in the file can be read
                continue
            yield from results
    if damaged:
        logger.warning(
            "skipped damaged lines of a batch file",
            path=str(path),
            lines=damaged,
            first=first_reason,
        )


#: An InfluxDB spool batch (``storages/_spool.py``): many results in line protocol, for
#: ``multimeter push``, not a result file.
_SPOOL_BATCH = re.compile(r"\d{20}-\d+-\d+\.line")
#: The pytest plugin's summary of a run (``multimeter/_testrun/summary.py``): rows, not a result.
_PYTEST_SUMMARY = "pytest-summary.json"


def result_files(directory: pathlib.Path) -> Iterator[pathlib.Path]:
    """The result files under ``directory``, in reading order (hidden files and
    InfluxDB spool batches left out).

    Raises:
        OSError: when a directory cannot be read.
    """
    for root, folders, names in os.walk(directory, onerror=_raise):
        folders.sort()
        wanted = [
            name
            for name in names
            if name.endswith(_EXTENSIONS)
            and not name.startswith(".")
            and not (name.endswith(".line") and _SPOOL_BATCH.fullmatch(name))
            and name != _PYTEST_SUMMARY
        ]
        base = pathlib.Path(root)
        for name in sorted(wanted, key=_order):
            yield base / name


def _order(name: str) -> tuple[str, int]:
    """Batch files of a process by number (``-10`` after ``-9``), others by name."""
    match = _BATCH_NAME.fullmatch(name) if name.endswith(EXTENSION) else None
    return (match[1], int(match[2])) if match else (name, 0)


def _raise(error: OSError) -> None:
    raise error
