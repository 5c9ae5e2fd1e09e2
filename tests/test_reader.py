"""The background reader: probes made again and again share collectors; no noise at exit."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import multimeter
from multimeter import _reader
from tests._programs import run_python


class _Constant(_reader.Collector):
    def __init__(self, value: float) -> None:
        self.value = value

    @property
    def fields(self) -> tuple[str, ...]:
        return ("value",)

    def collect(self) -> Sequence[float]:
        return [self.value]


def test_configuring_again_and_again_does_not_pile_up_collectors(logs) -> None:
    """Before: every PsutilProbe ever read kept a collector running in the reader
    (its CPU grew with each, 33 % of a core after a benchmark's ~40), and after
    about 120 configure() calls the shared memory was full: 'too many background
    probes in one process', the probe's values missing from then on."""

    @multimeter.measured
    def call() -> None:
        pass

    multimeter.configure(probes=["psutil", "system"])
    call()
    reader = _reader.reader()
    known = len(reader._registered)  # with what earlier tests registered
    try:
        for _ in range(200):
            multimeter.configure(probes=["psutil", "system"])
            call()
            multimeter.flush()
        gc.collect()
        assert [] == [e for e in logs if "failed" in e["event"]]
        reader = _reader.current()
        assert reader is not None
        assert known == len(reader._registered)  # same settings: one collector each
    finally:
        multimeter.configure(probes=["resource"])


_EXIT_SCRIPT = """
import gc, os, sys
from multimeter import _reader
from multimeter.probes.psutil import PsutilProbe
probe = PsutilProbe()
probe.read()
print(_reader.current().process.pid, flush=True)
pid = os.fork()
if pid == 0:  # the child drops its copy of the parent's reader
    probe.read()
    gc.collect()
    sys.stderr.flush()
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_no_still_running_warning_at_exit_or_after_fork_and_the_helper_is_gone() -> None:
    """Before: a forked child dropping its copy of the parent's reader, and the
    interpreter's teardown at exit, warned 'subprocess N is still running'."""
    import psutil

    completed = run_python("-X", "dev", "-c", _EXIT_SCRIPT, timeout=60)
    assert 0 == completed.returncode, completed.stderr
    assert "still running" not in completed.stderr
    helper = int(completed.stdout.split()[0])
    assert not psutil.pid_exists(helper) or psutil.Process(helper).status() == "zombie"
