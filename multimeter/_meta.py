"""Meta data every result records about the process that made it."""

from __future__ import annotations

import os
import sys

from multimeter import _process
from multimeter._tags import clean_text
from multimeter._version import __version__


def _platform() -> str:
    """Like ``platform.platform()`` (``Linux-6.1.0-x86_64-with-glibc2.36``), but it
    starts no process: ``platform.platform()`` runs ``uname -p``, which would change
    the host program's children figures (``RUSAGE_CHILDREN``)."""
    uname = os.uname()
    text = f"{uname.sysname}-{uname.release}-{uname.machine}"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        libc = ""
    name, _, version = libc.partition(" ")
    if name and version:
        text += f"-with-{name}{version}"
    return text


def process_meta_data() -> dict[str, str]:
    """Host, pid, Python version, platform, multimeter version and command line.

    Computed once per process (again after a fork) without starting any
    process; the caller gets a copy.
    """
    state = _process.state
    meta = state.meta
    if meta is None:
        import platform  # here, not at import: they cost a few ms and run once
        import shlex
        import socket

        meta = state.meta = {
            "host": socket.gethostname(),
            "pid": str(state.pid),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "platform": _platform(),
            "multimeter_version": __version__,
            "command_line": clean_text(shlex.join(sys.argv)),
        }
    return dict(meta)
