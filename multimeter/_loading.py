"""Reading stored results back: result files, batch files, directories of them.

Every reader of stored results (here, and ``multimeter show``'s in
``multimeter/_cli/_summary.py``) opens a file with :func:`open_regular` and reads a
batch file's lines with :func:`batch_lines`: only regular files are read (a FIFO
would wait for a writer forever, ``/dev/zero`` never ends), and a line is read in
bounded memory.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import pathlib
import re
import stat
from collections.abc import Iterator
from typing import IO

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
#: The longest line of a batch file that is read (bytes, without its line break): a
#: longer one is damage, read past without being kept (what multimeter writes is far
#: shorter: one call, or one definition, per line).
MAX_LINE_BYTES = 16 << 20
#: The reason given for a longer line.
LINE_TOO_LONG = f"longer than {MAX_LINE_BYTES >> 20} MiB, the most a line may hold"
#: Opening a FIFO does not wait for a writer (open_regular() then refuses it).
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def load_result(path: str | os.PathLike[str]) -> Result:
    """Load one result: a file written by :class:`~multimeter.FileStorage`, or a
    batch file of :class:`~multimeter.storages.jsonl.JsonLinesStorage` that holds
    exactly one.

    The format is chosen by the extension: ``.json``, ``.line`` or ``.jsonl``.

    Raises:
        ValueError: for another extension, or a batch file that holds no result
            or several (read those with :func:`load_results`).
        ResultFileError: (a ``ValueError``) for a file that is not a result of its
            format: damaged, truncated, not UTF-8, or data of the wrong shape, and for
            one that is not a regular file (a FIFO, a device). The message names the
            file and what is wrong.
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
    with open(open_regular(path), "rb") as stream:
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
    and one warning per file says how many and why. Only regular files are read (a
    symbolic link to one is fine): a FIFO, a device or a socket named like a result
    file counts as damaged, and so does a batch file's line longer than
    :data:`MAX_LINE_BYTES`. The batches of an InfluxDB spool
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
        try:
            if file.suffix == EXTENSION:
                yield from _batch_file(file, pending, skip_damaged)
            else:
                yield load_result(file)
        except ResultFileError as error:
            if not skip_damaged:
                raise
            logger.warning("skipped a damaged result file", path=str(file), reason=error.reason)


def open_regular(path: str | os.PathLike[str]) -> int:
    """A descriptor of ``path`` opened for reading, where it is a regular file (or a
    symbolic link to one).

    Raises:
        ResultFileError: naming ``path``, for a FIFO, a device or a socket.
        IsADirectoryError: for a directory.
        OSError: when it cannot be opened.
    """
    descriptor = os.open(path, _READ_FLAGS)
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "something else")
            raise ResultFileError(
                f"not a regular file but {kind} (only regular files are read)", str(path)
            )
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def batch_lines(stream: IO[bytes]) -> Iterator[bytes | None]:
    """The complete lines of a batch file, each with its line break, in bounded
    memory: ``None`` for a line longer than :data:`MAX_LINE_BYTES` (read past, not
    kept). A last line without its line break (what a crash in the middle of a write
    leaves) is left out, unless it is too long."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if line.endswith(b"\n"):
            yield line
        elif len(line) <= MAX_LINE_BYTES:
            return  # the end, or a partial last line
        else:
            while line and not line.endswith(b"\n"):
                line = stream.readline(_CHUNK)
            yield None


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
    with open(open_regular(path), "rb") as stream:
        for number, raw in enumerate(batch_lines(stream), 1):
            try:
                with reading(f"line {number}"):
                    if raw is None:
                        raise ResultFileError(LINE_TOO_LONG)
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
