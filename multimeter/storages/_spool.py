"""The spool: line protocol that could not be delivered yet, kept on disk.

Each undelivered batch is one file ``<time>-<pid>-<n>.line`` written atomically
(temporary file, then rename). Batches the server rejected (4xx) go to the
``rejected/`` folder beside them with a ``.reason`` file: they are kept, not
retried by ``push``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import time
from collections.abc import Iterator

_names = itertools.count()


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

    def put(self, text: str) -> pathlib.Path:
        """Keep ``text`` for a later delivery; returns the file. Raises ``OSError``."""
        return self._write(self.directory, text)

    def reject(self, text: str, reason: str) -> pathlib.Path:
        """Set ``text`` aside with the server's ``reason``; returns the file."""
        path = self._write(self.rejected_directory, text)
        path.with_suffix(".reason").write_text(reason + "\n", encoding="utf-8")
        return path

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
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_names)}"
        temporary = directory / f".{name}.tmp"
        path = directory / f"{name}.line"
        try:
            with open(temporary, "x", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return path
