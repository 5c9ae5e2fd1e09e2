"""Where ``report -o`` and ``export -o`` write: stdout, a stream, or a file replaced
atomically.

- ``-``: stdout.
- A FIFO, a device (``/dev/null``, a terminal) or a socket, named directly or through
  a symbolic link: written into, as a shell's ``>`` does; it is never replaced.
- Anything else (a regular file, a symbolic link to one, a new name): written to a
  temporary file in the directory of the file (of the link's target, for a symbolic
  link: the link stays), renamed over it when everything was written. A reader sees
  the old file or the whole new one, and a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import stat
import sys
import tempfile
from collections.abc import Iterator
from typing import IO

from multimeter._cli._common import CommandError

#: The output name that means stdout.
STDOUT = "-"


def is_stream(output: str) -> bool:
    """Whether ``output`` is written into rather than replaced: ``-`` (stdout), or
    an existing FIFO, device or socket (through symbolic links)."""
    if output == STDOUT:
        return True
    try:
        mode = os.stat(output).st_mode
    except OSError:  # not there (or a dangling link): a new file
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextlib.contextmanager
def writing(output: str) -> Iterator[IO[bytes]]:
    """A binary stream for ``output`` (see the module): stdout's (left open), the
    stream's, or a temporary file's that replaces the file when the block ends
    without an error.

    Raises:
        CommandError: when ``output`` cannot be opened or replaced, or a write to it
            fails, naming ``output`` (never the temporary file); status 2 where its
            directory does not exist, else 1.
            ``BrokenPipeError`` on stdout is raised as it is (``| head``).
    """
    if output == STDOUT:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        if is_stream(output):
            with open(output, "wb") as stream:
                yield stream
            return
        with _replacing(pathlib.Path(os.path.realpath(output))) as stream:
            yield stream
    except OSError as error:
        status = 1 if pathlib.Path(output).parent.is_dir() else 2  # no such directory: bad input
        raise CommandError(f"cannot write {output!r}: {error.strerror or error}", status) from error


@contextlib.contextmanager
def _replacing(path: pathlib.Path) -> Iterator[IO[bytes]]:
    """A binary stream whose content replaces ``path`` atomically when the block ends
    without an error (nothing is left behind when it fails). The file gets the
    permissions a new file gets (``0o666`` less the umask)."""
    directory, name = path.parent, path.name
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield stream
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
