"""The temporary files a process is writing right now (see ``FileStorage``)."""

from __future__ import annotations

import itertools
import os
import threading

from multimeter._log import safe_log


class TemporaryFiles:
    """The temporary files this process is writing right now, and their names.

    One per process (``multimeter._process``): a forked child writes none of its
    parent's files.
    """

    def __init__(self) -> None:
        # Reentrant: remove_all() may run in a signal handler on a thread that is
        # itself between add() and discard().
        self._lock = threading.RLock()
        self._paths: set[str] = set()
        # Temporary names: the pid and 64 random bits once per process, then a counter.
        self._prefix = f".multimeter-{os.getpid()}-{os.urandom(8).hex()}-"
        self._numbers = itertools.count()
        self._closed = False  # the process is ending: no new temporary files

    def new_name(self) -> str:
        """``.multimeter-<pid>-<64 random bits>-<n>.tmp``: processes never meet."""
        return f"{self._prefix}{next(self._numbers)}.tmp"

    def add(self, path: str) -> bool:
        """Track ``path`` while it is being written; ``False`` once the process is
        ending (:meth:`close`): the caller then removes the file and gives up."""
        with self._lock:
            if self._closed:
                return False
            self._paths.add(path)
            return True

    def discard(self, path: str) -> bool:
        """Stop tracking ``path``; whether it was still tracked (not removed)."""
        with self._lock:
            if path in self._paths:
                self._paths.remove(path)
                return True
            return False

    def close(self) -> int:
        """The process is ending: remove every tracked file and refuse new ones;
        returns how many were removed."""
        with self._lock:
            self._closed = True
        return self.remove_all()

    def reopen(self) -> None:
        """Undo :meth:`close` (the process did not end after all)."""
        with self._lock:
            self._closed = False

    def remove_all(self) -> int:
        """Remove every tracked file; returns how many were removed."""
        with self._lock:
            paths, self._paths = self._paths, set()
        removed = 0
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as error:
                safe_log("warning", "cannot remove a temporary file", path=path, error=str(error))
                continue
            removed += 1
        return removed
