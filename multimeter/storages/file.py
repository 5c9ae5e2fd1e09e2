"""Results as files in a directory, in a pluggable :class:`FileFormat`."""

from __future__ import annotations

import errno
import itertools
import os
import pathlib
from contextlib import suppress

from multimeter import _process
from multimeter._log import logger
from multimeter.result import Result
from multimeter.storages._format import FileFormat, ResultFileError
from multimeter.storages._json import JsonFormat
from multimeter.storages._line import LineFormat
from multimeter.storages.base import Storage

__all__ = [
    "FileFormat",
    "FileStorage",
    "JsonFormat",
    "LineFormat",
    "ResultFileError",
    "remove_unfinished_files",
]

_FORBIDDEN = {chr(c) for c in range(32)} | {"\x7f", "/", "\\"}
_MAX_NAME_BYTES = 255
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# What os.link() raises where the file system has no hard links (FAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def remove_unfinished_files() -> int:
    """Remove the temporary files of the stores this process has in progress.

    For the end of the process, after the last results had their chance to be
    stored: a store still writing then leaves no ``.multimeter-*.tmp`` file
    behind. Such a store fails with ``OSError`` and leaves no file at all.
    Files of other processes and finished results are not touched. Returns the
    number of files removed.
    """
    return _process.current().temporary_files.remove_all()


class FileStorage(Storage):
    """Stores each result as one file, ``<save_directory>/<identifier><extension>``.

    Files are written atomically: into a hidden temporary file in the same
    directory (``.multimeter-<pid>-<random>.tmp``, created exclusively), then
    linked under their name, so a reader never sees a partial file and a
    failure leaves none behind. An existing file is never replaced: a result
    whose name is taken (e.g. by an earlier run with the same identifier) is
    stored as ``<identifier>~2<extension>`` (``~3``, ...) and a warning names
    both files. With ``fsync=True`` the data is also flushed to the disk
    before it gets its name (slower; survives a power cut). The directory is
    created when the first result is stored.

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
        if not isinstance(save_directory, (str, os.PathLike)) or str(save_directory) == "":
            raise ValueError(
                f"save_directory must be a directory path (str or os.PathLike),"
                f" got {save_directory!r}"
            )
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
        """Write ``result`` to a new file, atomically; an existing file is never replaced.

        When ``<identifier><extension>`` exists already, the result is stored as
        ``<identifier>~2<extension>`` (or ``~3``, ...) and a warning names both files.

        Raises:
            ValueError: for an identifier that is not a valid file name.
            OSError: when the file cannot be written; no partial file is left.
        """
        path = self.path_for(result.identifier)
        descriptor, temporary = self._create_temporary()
        try:
            with os.fdopen(descriptor, "wb") as stream:
                self._file_format.save_result_to_stream(result, stream)
                if self._fsync:
                    stream.flush()
                    os.fsync(stream.fileno())
            stored = self._publish(temporary, result.identifier, path)
        except BaseException as error:
            tracked = _process.current().temporary_files.discard(temporary)
            with suppress(OSError):
                os.unlink(temporary)
            if not tracked and isinstance(error, FileNotFoundError):
                raise FileNotFoundError(
                    errno.ENOENT,
                    "result not stored: its temporary file was removed by"
                    " remove_unfinished_files() (the process is ending)",
                    temporary,
                ) from error
            raise
        _process.current().temporary_files.discard(temporary)
        if stored != path:
            logger.warning(
                "result file exists already, stored the result under another name",
                existing=str(path),
                path=str(stored),
            )

    def _create_temporary(self) -> tuple[int, str]:
        """A new hidden file in the save directory, open for writing: (descriptor, path)."""
        files = _process.current().temporary_files
        for _ in range(100):
            temporary = os.path.join(self._save_directory, files.new_name())
            try:
                descriptor = os.open(temporary, _CREATE_FLAGS, 0o644)
            except FileNotFoundError:  # the directory is not there (yet, or any more)
                self._save_directory.mkdir(parents=True, exist_ok=True)
            except FileExistsError:  # pragma: no cover - 64 random bits met
                pass
            else:
                if not files.add(temporary):
                    os.close(descriptor)
                    with suppress(OSError):
                        os.unlink(temporary)
                    raise OSError(
                        errno.ESHUTDOWN, "result not stored: the process is ending", temporary
                    )
                return descriptor, temporary
        raise OSError(  # pragma: no cover - a directory that keeps vanishing
            errno.EAGAIN, "cannot create a temporary file", str(self._save_directory)
        )

    def _publish(self, temporary: str, identifier: str, path: pathlib.Path) -> pathlib.Path:
        """Give the finished ``temporary`` file the first free result name; returns it.

        A hard link is atomic and fails where the name is taken, so no file is
        ever replaced, also when other threads or processes store the same
        identifier at the same time.
        """
        for number in itertools.count(1):
            if number > 1:
                path = self._numbered_path(identifier, number)
            try:
                _link_or_reserve(temporary, path)
            except FileExistsError:
                continue
            return path
        raise AssertionError("unreachable")  # pragma: no cover

    def _numbered_path(self, identifier: str, number: int) -> pathlib.Path:
        """``<identifier><extension>``, or ``<identifier>~<number><extension>`` after the first.

        The identifier is shortened where the number would make the name too long.
        """
        path = self.path_for(identifier)
        if number == 1:
            return path
        suffix = f"~{number}{self._file_format.extension}"
        while len(os.fsencode(identifier + suffix)) > _MAX_NAME_BYTES:
            identifier = identifier[:-1]
        return self._save_directory / (identifier + suffix)

    def __repr__(self) -> str:
        return f"FileStorage({str(self._save_directory)!r}, {type(self._file_format).__name__}())"


def _forget(temporary: str) -> None:
    """Remove the temporary name of a published file; the result is stored either way."""
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    except OSError as error:
        logger.warning("cannot remove a temporary file", path=temporary, error=str(error))


def _link_or_reserve(temporary: str, path: pathlib.Path) -> None:
    """Give ``temporary`` the name ``path`` too, or raise ``FileExistsError`` if it is taken.

    Where the file system has no hard links, the name is first reserved by
    creating it exclusively (empty, for a moment) and then replaced by the
    temporary file: still no other file is ever replaced.
    """
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
    else:
        _forget(temporary)
        return
    os.close(os.open(path, _CREATE_FLAGS, 0o644))
    try:
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(path)
        raise
