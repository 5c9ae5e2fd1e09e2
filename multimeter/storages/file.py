"""Results as files in a directory, in a pluggable :class:`FileFormat`."""

from __future__ import annotations

import itertools
import os
import pathlib
from contextlib import suppress

from multimeter.result import Result
from multimeter.storages._format import FileFormat
from multimeter.storages._json import JsonFormat
from multimeter.storages._line import LineFormat
from multimeter.storages.base import Storage

__all__ = ["FileFormat", "FileStorage", "JsonFormat", "LineFormat"]

_FORBIDDEN = {chr(c) for c in range(32)} | {"\x7f", "/", "\\"}
_temporary_names = itertools.count()
_token: tuple[int, str] = (0, "")


def _process_token() -> str:
    """``<pid>-<random>``: temporary names of different processes never meet."""
    global _token
    pid = os.getpid()
    if _token[0] != pid:
        _token = (pid, f"{pid}-{os.urandom(3).hex()}")
    return _token[1]


_MAX_NAME_BYTES = 255


class FileStorage(Storage):
    """Stores each result as one file, ``<save_directory>/<identifier><extension>``.

    Files are written atomically: into a hidden temporary file in the same
    directory (``.multimeter-*.tmp``, created exclusively), then renamed, so a
    reader never sees a partial file and a failure leaves none behind. With ``fsync=True`` the
    data is also flushed to the disk before the rename (slower; survives a
    power cut). The directory is created when the first result is stored.

    Args:
        save_directory: The directory for the result files.
        file_format: A :class:`FileFormat`, e.g. :class:`JsonFormat` or :class:`LineFormat`.
        fsync: Flush each file to the disk before it is renamed into place.

    Raises:
        ValueError: for a missing directory or a ``file_format`` that is no FileFormat.
    """

    def __init__(
        self,
        save_directory: str | os.PathLike[str],
        file_format: FileFormat,
        *,
        fsync: bool = False,
    ) -> None:
        if save_directory is None or str(save_directory) == "":
            raise ValueError("save_directory must be set to a directory path")
        if not isinstance(file_format, FileFormat):
            raise ValueError(
                f"file_format must be a FileFormat such as JsonFormat() or LineFormat(),"
                f" got {file_format!r}"
            )
        self._save_directory = pathlib.Path(save_directory)
        self._file_format = file_format
        self._fsync = fsync

    @property
    def save_directory(self) -> pathlib.Path:
        """The directory where results are stored."""
        return self._save_directory

    @property
    def file_format(self) -> FileFormat:
        """The format of the files."""
        return self._file_format

    def path_for(self, identifier: str) -> pathlib.Path:
        """The file a result with ``identifier`` is stored in.

        Raises:
            ValueError: when the identifier is not a valid file name (empty,
                ``.`` or ``..``, path separators, NUL or other control
                characters, too long), so nothing is written outside the directory.
        """
        if not isinstance(identifier, str) or not identifier:
            raise ValueError(f"identifier must be a non-empty str, got {identifier!r}")
        if identifier in (".", "..") or _FORBIDDEN.intersection(identifier):
            raise ValueError(
                f"identifier {identifier!r} is not a valid file name: no path separators,"
                " control characters, '.' or '..'"
            )
        name = identifier + self._file_format.extension
        if len(os.fsencode(name)) > _MAX_NAME_BYTES:
            raise ValueError(f"identifier {identifier[:40]!r}... is too long for a file name")
        path = self._save_directory / name
        if path.parent != self._save_directory:  # pragma: no cover - defence in depth
            raise ValueError(f"identifier {identifier!r} leaves the save directory")
        return path

    def store(self, result: Result) -> None:
        """Write ``result`` to its file, atomically.

        Raises:
            ValueError: for an identifier that is not a valid file name.
            OSError: when the file cannot be written; no partial file is left.
        """
        path = self.path_for(result.identifier)
        temporary = os.path.join(
            self._save_directory, f".multimeter-{_process_token()}-{next(_temporary_names)}.tmp"
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            descriptor = os.open(temporary, flags, 0o644)
        except FileNotFoundError:  # the directory is not there (yet, or any more)
            self._save_directory.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(temporary, flags, 0o644)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                self._file_format.save_result_to_stream(result, stream)
                if self._fsync:
                    stream.flush()
                    os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary)
            raise

    def __repr__(self) -> str:
        return f"FileStorage({str(self._save_directory)!r}, {type(self._file_format).__name__}())"
