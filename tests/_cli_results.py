"""Real results for the command-line tests, written by a real program in a subprocess."""

from __future__ import annotations

import contextlib
import os
import pathlib
import stat
import textwrap
import threading
from collections.abc import Callable, Iterator

import pytest

from tests._programs import environment, multimeter_command, run_python

__all__ = ["multimeter_command"]  # here too, for the command-line tests

#: load() is called 20 times directly and once inside each of the 5 validate() calls,
#: which raise.
LOAD_CALLS, VALIDATE_CALLS = 25, 5

PROGRAM = textwrap.dedent(
    """
    import sys
    import multimeter
    from multimeter import FileStorage, GCProbe, JsonFormat, JsonLinesStorage, LineFormat
    from multimeter import Multimeter, ResourceProbe

    mode, directory = sys.argv[1], sys.argv[2]
    if mode == "files":
        multimeter.configure(storage=FileStorage(directory, JsonFormat()))
    elif mode == "linefiles":
        multimeter.configure(storage=FileStorage(directory, LineFormat()))
    elif mode == "aggregate":
        multimeter.configure(
            storage=JsonLinesStorage(directory), calls="aggregate", cycle_time=0.05
        )


    @multimeter.measured(tags={"stage": "etl"})
    def load(n):
        return sum(range(n))


    @multimeter.measured
    def validate(n):
        load(n)
        raise ValueError(n)


    if mode == "session":
        for name, file_format in (("json", JsonFormat()), ("line", LineFormat())):
            meter = Multimeter(
                ResourceProbe(),
                GCProbe(),
                storage=FileStorage(f"{directory}/{name}", file_format),
                cycle_time=0.02,
            )
            measurement = meter.measure(f"session-{name}", stage="report", team="a b")
            with measurement as result:
                data = [b"x" * (16 << 20) for _ in range(4)]  # 64 MiB, every page touched
                measurement.add_mark("built")
                del data
                sum(range(300_000))
                measurement.add_mark("summed, done")
            result.add_meta_data(note="hand-made")
    else:
        for i in range(20):
            load(1000 * (i + 1))
            if i % 4 == 0:
                try:
                    validate(10)
                except ValueError:
                    pass
        multimeter.flush()
    """
)


def write_results(directory: pathlib.Path, mode: str, run: str) -> pathlib.Path:
    """Run the program in ``mode`` with ``MULTIMETER_RUN=run``; returns the directory
    of its results. ``batch``: no configuration, the default storage (batch files in
    ``MULTIMETER_DIR``); ``files``: a ``.json`` file per call; ``linefiles``: a
    ``.line`` file per call; ``aggregate``: aggregate
    mode into batch files; ``session``: two ``measure()`` results, ``.json`` and ``.line``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory.parent / "program.py"
    script.write_text(PROGRAM)
    # batch: the default storage, batch files in ``directory``
    run_python(
        script,
        mode,
        directory,
        env=environment(MULTIMETER_RUN=run, MULTIMETER_DIR=str(directory)),
        check=True,
        timeout=120,
        cwd=directory.parent,
    )
    return directory


@contextlib.contextmanager
def fifo_read(path: pathlib.Path) -> Iterator[Callable[[], bytes]]:
    """A FIFO made at ``path``, read to its end by a thread; the block gets a function
    that waits (at most 30 s) for what was written into it."""
    os.mkfifo(path)
    received: list[bytes] = []
    thread = threading.Thread(target=lambda: received.append(path.read_bytes()), daemon=True)
    thread.start()

    def written() -> bytes:
        thread.join(30)
        return b"".join(received)

    yield written


def null_device(path: pathlib.Path) -> pathlib.Path:
    """A character device at ``path`` that is a copy of ``/dev/null`` (same major and
    minor number); the test is skipped where one cannot be made (not root, a ``nodev``
    file system)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.stat("/dev/null").st_rdev)
        with open(path, "wb") as stream:
            stream.write(b"probe")
    except OSError as error:
        pytest.skip(f"cannot make a character device in {path.parent}: {error.strerror}")
    return path
