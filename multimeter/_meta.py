"""Meta data every result records about the process that made it."""

from __future__ import annotations

import os
import sys

from multimeter._version import __version__

_static: dict[str, str] | None = None
_static_pid = -1


def process_meta_data() -> dict[str, str]:
    """Host, pid, Python version, platform, multimeter version and command line.

    Computed once per process (again after a fork); the caller gets a copy.
    """
    global _static, _static_pid
    pid = os.getpid()
    if _static is None or _static_pid != pid:
        import platform  # here, not at import: they cost a few ms and run once
        import shlex
        import socket

        _static = {
            "host": socket.gethostname(),
            "pid": str(pid),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "multimeter_version": __version__,
            "command_line": shlex.join(sys.argv),
        }
        _static_pid = pid
    return dict(_static)
