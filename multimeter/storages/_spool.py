"""The spool: batches that could not be delivered yet, kept on disk.

Each undelivered batch is one file ``<time>-<pid>-<n><suffix>`` written
atomically (temporary file, then rename): line protocol (``.line``) for
InfluxDB, results as JSON Lines (``.jsonl``) for OTLP; a storage sees only its
own suffix. :func:`push` sends what waits, for either. Batches the server rejected (4xx) go to the
``rejected/`` folder beside them with a ``.reason`` file, and batches that cannot
be read (not UTF-8, not a file, no permission) to ``unreadable/``, also with a
``.reason`` file: they are kept, not retried by ``push``.
"""

from __future__ import annotations

import contextlib
import enum
import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from multimeter import _process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Outcome(enum.Enum):
    """What became of a batch."""

    DELIVERED = "delivered"
    SPOOLED = "spooled"  # kept in the spool for a later push
    REJECTED = "rejected"  # refused by the server, set aside in rejected/ (if that worked)
    LOST = "lost"  # neither delivered nor kept


class PushReport(NamedTuple):
    """What a storage's ``push()`` did with the spool."""

    #: Batches delivered (and removed from the spool).
    delivered: int
    #: Batches still waiting in the spool (the server is away).
    left: int
    #: Where each batch the server rejected was set aside (``<spool>/rejected``).
    rejected: list[pathlib.Path]
    #: Each batch that could not be read, as set aside in ``<spool>/unreadable``.
    unreadable: list[pathlib.Path]

    @property
    def complete(self) -> bool:
        """Whether every batch was delivered: none left, rejected or unreadable."""
        return self.left == 0 and not self.rejected and not self.unreadable


class Spool:
    """A directory of undelivered batches, files ending in ``suffix``."""

    def __init__(self, directory: str | os.PathLike[str], suffix: str = ".line") -> None:
        self.directory = pathlib.Path(directory)
        self.suffix = suffix

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
        for claimed in self.directory.glob(f"*{self.suffix}.sending-*"):
            pid = claimed.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                self.release(claimed, claimed.with_name(claimed.name.split(".sending-")[0]))
        return iter(sorted(self.directory.glob(f"*{self.suffix}")))

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

    def _write(self, directory: pathlib.Path, text: str) -> pathlib.Path:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_process.current().names)}"
        path = directory / f"{name}{self.suffix}"
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


#: Sends one batch (its text, where it came from, the list a rejected batch's new
#: place is added to): ``DELIVERED``, ``REJECTED`` (set aside), or ``None`` when the
#: server could not be reached (the batch stays).
Send = Callable[[str, str, list[pathlib.Path]], "Outcome | None"]


def push(spool: Spool, send: Send, log: Callable[..., Any]) -> PushReport:
    """Send every batch of ``spool``, oldest first; remove exactly those delivered.

    Stops at the first batch that cannot be delivered (the server is still
    away). A rejected batch is set aside in ``rejected/`` (by ``send``), a batch
    that cannot be read (not UTF-8, not a file, no permission) in
    ``unreadable/``, both with a ``.reason`` file, and pushing goes on. Each
    batch is claimed (renamed) before it is sent, so two pushers, in this
    process or another, never send the same batch. Never raises for one bad
    batch; ``log(level, event, **fields)`` reports what went wrong.
    """
    delivered = 0
    rejected: list[pathlib.Path] = []
    unreadable: list[pathlib.Path] = []
    for path in list(spool.batches()):
        try:
            claimed = spool.claim(path)
        except OSError as error:
            log("error", "a spooled batch cannot be claimed", path=str(path), error=repr(error))
            continue
        if claimed is None:
            continue  # another pusher has it
        try:
            text = claimed.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            target = _set_aside_unreadable(spool, claimed, path, error, log)
            if target is not None:
                unreadable.append(target)
            continue
        sent = send(text, str(path), rejected)
        if sent is None:  # the server is still away
            spool.release(claimed, path)
            break
        try:
            claimed.unlink()  # delivered, or rejected and set aside
        except OSError as error:
            log("error", "a sent batch cannot be removed", path=str(claimed), error=repr(error))
        if sent is Outcome.DELIVERED:
            delivered += 1
    return PushReport(delivered, len(spool), rejected, unreadable)


def _set_aside_unreadable(
    spool: Spool,
    claimed: pathlib.Path,
    path: pathlib.Path,
    error: BaseException,
    log: Callable[..., Any],
) -> pathlib.Path | None:
    """Move an unreadable batch to ``unreadable/``; ``None`` (given back) if that fails."""
    detail = error.strerror if isinstance(error, OSError) and error.strerror else error
    reason = f"cannot be read: {type(error).__name__}: {detail}"
    try:
        target = spool.set_aside_unreadable(claimed, path, reason)
    except OSError as failure:
        log(
            "error",
            "an unreadable spooled batch cannot be set aside",
            path=str(path),
            reason=reason,
            error=repr(failure),
        )
        spool.release(claimed, path)
        return None
    log("error", "a spooled batch cannot be read: set aside", path=str(target), reason=reason)
    return target
