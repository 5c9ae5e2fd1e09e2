"""Running a command as a child process, with the signals a supervisor passes on.

Ctrl-C on a terminal reaches every process of the foreground group, the child
included: ``multimeter run`` ignores SIGINT and SIGQUIT while the child runs
(as GNU ``time`` does) and lets the child decide. SIGTERM, SIGHUP, SIGUSR1 and
SIGUSR2 sent to ``multimeter run`` itself (``kill``, ``docker stop``) are
passed on to the child. The exit status is the child's, ``128 + n`` when a
signal ``n`` killed it (as a shell reports it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

from multimeter._cli._common import CommandError

#: Signals passed on to the child.
FORWARDED = tuple(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
#: Signals the terminal sends the whole group: the child gets them itself.
IGNORED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGQUIT") if hasattr(signal, name))


def start(command: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``command`` with this process's standard streams and environment.

    Raises:
        CommandError: the command is not found (status 127, as a shell) or
            cannot be executed (126).
    """
    name = command[0]
    if not name:
        raise CommandError("command not found: ''", 127)
    try:
        return subprocess.Popen(list(command))
    except FileNotFoundError:
        if os.sep in name and os.path.isfile(name):  # the file is there: its #! is not
            raise CommandError(
                f"cannot execute {name}: required file not found (the interpreter on its #! line?)",
                127,
            ) from None
        raise CommandError(f"command not found: {name}", 127) from None
    except PermissionError:
        if os.path.isdir(name):
            raise CommandError(f"cannot execute {name}: it is a directory", 126) from None
        raise CommandError(f"permission denied: {name}", 126) from None
    except OSError as error:
        raise CommandError(f"cannot execute {name}: {error.strerror or error}", 126) from None


def status_of(returncode: int) -> int:
    """The exit status a shell reports: the child's, or ``128 + n`` for a signal ``n``."""
    return 128 - returncode if returncode < 0 else returncode


@contextlib.contextmanager
def signals_to(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """While the block runs, pass the forwarded signals on to ``child`` and ignore
    those the terminal sends the child itself; the old handlers come back after."""

    def forward(signum: int, frame: Any) -> None:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    previous: dict[int, Any] = {}
    try:
        for signum in FORWARDED:
            previous[signum] = signal.signal(signum, forward)
        for signum in IGNORED:
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
        yield
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
