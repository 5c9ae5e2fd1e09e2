"""Meta data every result records about the process that made it.

``platform``, ``shlex`` and ``socket`` are imported with this module (on the thread
that first decorates or measures), never on the writer thread when the first result
is built: a ``Pool`` forked while that thread was running ``shlex``'s module code got
a half-imported ``shlex`` in its workers, and every result they built failed
(``NameError: name 'quote' is not defined``; 31 of 481 calls lost beside two CPU
burners).
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import sys
import time

from multimeter import _env, _process
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


def new_run_id() -> str:
    """A run identifier that sorts by start time: ``20261130T224432-1a2b3c``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


#: This process's run identifier when ``MULTIMETER_RUN`` is not set: made when
#: multimeter is imported and kept by forked children (a ``multiprocessing``
#: pool's workers belong to the run of the program that forked them).
_run = new_run_id()


def run_id() -> str:
    """The ``run`` meta datum: ``MULTIMETER_RUN`` if set, else one per process start."""
    given = _env.get(_env.RUN)
    return _run if given is None else clean_text(given)


def process_meta_data() -> dict[str, str]:
    """Run, host, pid, Python version, platform, multimeter version and command line.

    Computed once per process (again after a fork) without starting any
    process; the caller gets a copy.
    """
    state = _process.current()
    meta = state.meta
    if meta is None:
        meta = state.meta = {
            "run": run_id(),
            "host": socket.gethostname(),
            "pid": str(state.pid),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "platform": _platform(),
            "multimeter_version": __version__,
            "command_line": clean_text(shlex.join(sys.argv)),
        }
    return dict(meta)
