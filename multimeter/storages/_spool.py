"""The spool: line protocol that could not be delivered yet, kept on disk.

Each undelivered batch is one file ``<time>-<pid>-<n>.line`` written atomically
(temporary file, then rename). Batches the server rejected (4xx) go to the
``rejected/`` folder beside them with a ``.reason`` file, and batches that cannot
be read (not UTF-8, not a file, no permission) to ``unreadable/``, also with a
``.reason`` file: they are kept, not retried by ``push``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time
from collections.abc import Iterator

from multimeter import _process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """A directory of undelivered line-protocol batches."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = pathlib.Path(directory)

    @property
    def rejected_directory(self) -> pathlib.Path:
        """Where rejected batches are set aside."""
        return self.directory / "rejected"

    @property
    def unreadable_directory(self) -> pathlib.Path:
        """Where batches that cannot be read are set aside."""
        return self.directory / "unreadable"

    def put(self, text: str) -> pathlib.Path:
        """Keep ``text`` for a later delivery; returns the file. Raises ``OSError``."""
        return self._write(self.directory, text)

    def reject(self, text: str, reason: str) -> pathlib.Path:
        """Set ``text`` aside with the server's ``reason``; returns the file."""
        path = self._write(self.rejected_directory, text)
        _write_atomically(path.with_suffix(".reason"), reason + "\n")
        return path

    def set_aside_unreadable(
        self, claimed: pathlib.Path, path: pathlib.Path, reason: str
    ) -> pathlib.Path:
        """Move the claimed batch ``path`` to ``unreadable/`` with a ``.reason`` file;
        returns where it is now. Raises ``OSError`` (the batch stays claimed)."""
        self.unreadable_directory.mkdir(parents=True, exist_ok=True)
        target = self.unreadable_directory / path.name
        _write_atomically(target.with_suffix(".reason"), reason + "\n")
        os.rename(claimed, target)
        return target

    def batches(self) -> Iterator[pathlib.Path]:
        """The waiting batches, oldest first (claims of ended processes are given back)."""
        if not self.directory.is_dir():
            return iter(())
        for claimed in self.directory.glob("*.line.sending-*"):
            pid = claimed.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                self.release(claimed, claimed.with_name(claimed.name.split(".sending-")[0]))
        return iter(sorted(self.directory.glob("*.line")))

    def claim(self, path: pathlib.Path) -> pathlib.Path | None:
        """Take ``path`` for sending (an atomic rename); ``None`` if someone else did."""
        claimed = path.with_name(f"{path.name}.sending-{os.getpid()}")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    @staticmethod
    def release(claimed: pathlib.Path, path: pathlib.Path) -> None:
        """Give a claimed batch back to the spool."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(claimed, path)

    def __len__(self) -> int:
        return sum(1 for _ in self.batches())

    @staticmethod
    def _write(directory: pathlib.Path, text: str) -> pathlib.Path:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_process.current().names)}"
        path = directory / f"{name}.line"
        _write_atomically(path, text)
        return path


def _write_atomically(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{next(_process.current().names)}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
