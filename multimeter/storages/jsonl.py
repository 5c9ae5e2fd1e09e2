"""Many measured calls as batch files: JSON Lines, one file per process, appended to."""

from __future__ import annotations

import errno
import os
import pathlib
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress

from multimeter import _process
from multimeter._log import safe_log
from multimeter._meta import process_meta_data
from multimeter.calls import CallRecord, CallStorage
from multimeter.result import Result
from multimeter.storages._jsonl import EXTENSION, Encoder

__all__ = ["JsonLinesStorage"]

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_DEFAULT_MAX_FILE_BYTES = 64 * 2**20


class _File:
    """The batch file one process is appending to (never used by another process)."""

    __slots__ = ("descriptor", "encoder", "identity", "lock", "path", "pid", "seq", "size")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.lock = threading.Lock()
        self.descriptor: int | None = None
        self.path = ""  # absolute: the program may change its working directory
        self.identity = (0, 0)  # (device, inode) of the open file
        self.seq = 0
        self.size = 0  # bytes written to the file, all of them whole lines
        self.encoder: Encoder | None = None


class JsonLinesStorage(CallStorage):
    """Stores measured calls in batches, as JSON Lines files with what calls share written once.

    Each process appends to its own files, ``<directory>/calls-<token>-<seq>.jsonl``
    (``<token>``: the pid and 64 random bits, new in every process, forked ones
    too). A file starts with a header (format, version, the process's meta data)
    and defines each schema, function, tag set and meta data once, the first time
    a call needs it; then one short line per call (about 180 bytes for the
    ``resource`` probe's 26 values). Results of other measurements (:meth:`store`)
    get one line each, the ``.json`` document. Once a file has ``max_file_bytes``
    or more, the next batch starts the next file, again with a header: every file
    reads on its own. :func:`multimeter.load_results` reads them back.

    Crashes and full disks: each batch is encoded in memory and appended with one
    ``write`` (repeated for what a short write left), so a crash loses at most
    the batch being written, and its partial last line is skipped by readers. A
    failed write raises ``OSError``; the file is cut back to its last whole line
    and not written again (the next batch starts a new file), so earlier lines
    are never damaged. With ``fsync=True`` each batch is flushed to the disk
    before :meth:`store_calls` returns (slower; survives a power cut).

    Files removed or truncated while the program runs (a cleanup job, logrotate's
    ``copytruncate``): before each batch is written, the file's path is checked
    (one ``os.stat``, as ``logging.handlers.WatchedFileHandler`` does). When it is
    gone, is another file, or is shorter than what was written to it, the batch
    starts a new file, with its header (and the directory made again if needed),
    and a warning says so once; so no later call is lost or unreadable.

    Args:
        directory: Where the files go; created when the first batch is stored.
        max_file_bytes: The size after which the next batch goes to a new file.
        fsync: Flush each batch to the disk.

    >>> storage = JsonLinesStorage("multimeter-results")  # doctest: +SKIP
    >>> multimeter.configure(storage=storage)  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_file_bytes: int = _DEFAULT_MAX_FILE_BYTES,
        fsync: bool = False,
    ) -> None:
        if not isinstance(directory, (str, os.PathLike)) or str(directory) == "":
            raise ValueError(
                f"directory must be a directory path (str or os.PathLike), got {directory!r}"
            )
        if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int):
            raise ValueError(f"max_file_bytes must be an int > 0, got {max_file_bytes!r}")
        if max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be an int > 0, got {max_file_bytes!r}")
        self._directory = pathlib.Path(directory)
        self._max_file_bytes = max_file_bytes
        self._fsync = fsync
        # One entry per process that used this storage object: a forked child makes
        # its own (with its own lock and file) and drops the parent's.
        self._files: dict[int, _File] = {}

    @property
    def directory(self) -> pathlib.Path:
        """The directory of the batch files."""
        return self._directory

    @property
    def max_file_bytes(self) -> int:
        """The size after which the next batch starts a new file."""
        return self._max_file_bytes

    def store_calls(self, records: Sequence[CallRecord]) -> None:
        """Append ``records`` to this process's file, in one write.

        Raises:
            OSError: when the batch could not be written (nothing of it is kept).
            ValueError: for a record whose points do not fit its schema.
        """
        if records:
            self._append(lambda encoder, out: encoder.calls(records, out))

    def store(self, result: Result) -> None:
        """Append ``result`` (of any measurement) as one line.

        Raises:
            OSError: when it could not be written.
        """
        self._append(lambda encoder, out: encoder.result(result, out))

    def close(self) -> None:
        """Close this process's file; a later store starts a new one."""
        file = self._files.get(os.getpid())
        if file is not None:
            with file.lock:
                self._close(file)

    def _file(self) -> _File:
        pid = os.getpid()
        file = self._files.get(pid)
        if file is None:
            file = self._files.setdefault(pid, _File(pid))  # one winner among threads
            for other in [p for p in self._files if p != pid]:
                # The parent's file: its descriptor is the parent's to close.
                self._files.pop(other, None)
        return file

    def _append(self, encode: Callable[[Encoder, list[str]], None]) -> None:
        file = self._file()
        with file.lock:
            if file.descriptor is None:
                self._open(file)
            data = self._encoded(file, encode)
            if file.size and not self._in_place(file):
                # Checked just before the write: every call of the batch was made before
                # the check, so no call made after a removal or truncation is lost.
                self._close(file)
                self._open(file)
                data = self._encoded(file, encode)
            assert file.descriptor is not None
            try:
                _write_all(file.descriptor, data)
                if self._fsync:
                    os.fsync(file.descriptor)
                    if file.size == 0:
                        _fsync_directory(self._directory)
            except BaseException:
                self._abandon(file)
                raise
            file.size += len(data)
            if file.size >= self._max_file_bytes:
                self._close(file)

    def _encoded(self, file: _File, encode: Callable[[Encoder, list[str]], None]) -> bytes:
        """The bytes of one batch for ``file`` (its header first, for a new file)."""
        assert file.encoder is not None
        try:
            out = [file.encoder.header] if file.size == 0 else []
            encode(file.encoder, out)
            out.append("")
            return "\n".join(out).encode("utf-8", "backslashreplace")
        except BaseException:
            self._abandon(file)  # the encoder took in definitions no line will hold
            raise

    def _in_place(self, file: _File) -> bool:
        """Whether ``file`` is still at its path, whole; if not, say so (a warning)."""
        try:
            status = os.stat(file.path)
        except (FileNotFoundError, NotADirectoryError):
            what = "removed or moved"
        except OSError:  # cannot tell: go on with the open file
            return True
        else:
            if (status.st_dev, status.st_ino) != file.identity:
                what = "removed or moved"  # another file has its name now
            elif status.st_size < file.size:
                what = "truncated"
            else:
                return True
        safe_log(
            "warning",
            f"multimeter's batch file was {what} while the program ran;"
            " later calls go to a new file",
            path=file.path,
        )
        return False

    def _open(self, file: _File) -> None:
        """Create the process's next file (exclusively: another storage object of
        this process may write into the same directory)."""
        token = _process.current().token
        for _ in range(100_000):
            file.seq += 1
            path = os.path.join(self._directory, f"calls-{token}-{file.seq}{EXTENSION}")
            try:
                descriptor = os.open(path, _OPEN_FLAGS, 0o644)
            except FileExistsError:
                continue
            except FileNotFoundError:
                self._directory.mkdir(parents=True, exist_ok=True)
                file.seq -= 1
                continue
            file.descriptor, file.path, file.size = descriptor, os.path.abspath(path), 0
            status = os.fstat(descriptor)
            file.identity = (status.st_dev, status.st_ino)
            file.encoder = Encoder(token, process_meta_data())
            return
        raise OSError(errno.EEXIST, "no free batch file name", str(self._directory))

    def _abandon(self, file: _File) -> None:
        """After a failed batch: cut the file back to its whole lines (remove it if
        it has none) and close it; the next batch starts a new file."""
        descriptor = file.descriptor
        if descriptor is not None:
            with suppress(OSError):
                os.ftruncate(descriptor, file.size)
            if file.size == 0:
                with suppress(OSError):
                    os.unlink(file.path)
                file.seq -= 1  # its name is free again
        self._close(file)

    def _close(self, file: _File) -> None:
        descriptor, file.descriptor, file.encoder = file.descriptor, None, None
        if descriptor is not None:
            os.close(descriptor)

    def __del__(self) -> None:
        try:
            file = self._files.get(os.getpid())
            if file is not None and file.descriptor is not None:
                os.close(file.descriptor)
        except Exception:  # noqa: BLE001 - interpreter shutdown, a half-made object
            pass

    def __repr__(self) -> str:
        return f"JsonLinesStorage({str(self._directory)!r})"


def _write_all(descriptor: int, data: bytes) -> None:
    """Write all of ``data``, going on after short writes."""
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        if written <= 0:  # pragma: no cover - a regular file writes something or raises
            raise OSError(errno.ENOSPC, "nothing written")
        view = view[written:]


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make a new file's name durable too."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
