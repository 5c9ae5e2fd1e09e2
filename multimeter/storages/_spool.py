"""The spool: line protocol that could not be delivered yet, kept on disk.

Each undelivered batch is one file ``<time>-<pid>-<n>.line`` written atomically
(temporary file, then rename). Batches the server rejected (4xx) go to the
``rejected/`` folder beside them with a ``.reason`` file: they are kept, not
retried by ``push``.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import time
from collections.abc import Iterator

_names = itertools.count()


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
        """The waiting batches, oldest first."""
        if not self.directory.is_dir():
            return iter(())
        return iter(sorted(self.directory.glob("*.line")))

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
