"""The background reader: collectors of probes that are gone stop, and their slots are reused."""

from __future__ import annotations

import gc
import mmap
from collections.abc import Sequence

import multimeter
from multimeter import _reader
from multimeter.probes.psutil import PsutilProbe


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

    try:
        for _ in range(200):
            multimeter.configure(probes=["psutil", "system"])
            call()
            multimeter.flush()
        gc.collect()
        assert [] == [e for e in logs if "failed" in e["event"]]
        reader = _reader.current()
        assert reader is not None
        assert reader.running <= 4  # the last configuration's two, at most one more each
    finally:
        multimeter.configure(probes=["resource"])


def test_a_dropped_probe_gives_its_slot_to_the_next() -> None:
    reader = _reader.reader()
    probe = PsutilProbe()
    assert probe.read() is not None
    slot = probe._slot
    assert slot is not None
    offset, running = slot.offset, reader.running
    del probe, slot
    gc.collect()
    assert running - 1 == reader.running
    again = PsutilProbe()
    assert again.read() is not None
    assert again._slot is not None
    assert offset == again._slot.offset
    assert running == reader.running


def test_a_former_collectors_late_write_is_not_taken_for_a_reading() -> None:
    memory = mmap.mmap(-1, _reader.MEMORY_SIZE)
    old = _reader._Running(_Constant(1.0), 0, generation=1)
    _reader._collect(old, memory)
    new_slot = _reader.Slot(memory, 0, 1, "new", generation=2)
    assert new_slot.latest() is None
    _reader._collect(old, memory)  # written before the reader stopped it
    assert new_slot.latest() is None
    new = _reader._Running(_Constant(2.0), 0, generation=2)
    _reader._collect(new, memory)
    latest = new_slot.latest()
    assert latest is not None
    assert (2.0,) == latest[1]


def test_an_error_of_a_former_collector_is_not_reported_for_the_new_one(logs) -> None:
    memory = mmap.mmap(-1, _reader.MEMORY_SIZE)
    old = _reader._Running(_Constant(1.0), 0, generation=1)
    _reader._report(old, memory, "OSError: of the old one")
    new = _reader._Running(_Constant(2.0), 0, generation=2)
    _reader._collect(new, memory)
    slot = _reader.Slot(memory, 0, 1, "new", generation=2)
    assert slot.latest() is not None
    assert [] == [e for e in logs if "failed" in e["event"]]


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
    import subprocess
    import sys

    import psutil

    completed = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == completed.returncode, completed.stderr
    assert "still running" not in completed.stderr
    helper = int(completed.stdout.split()[0])
    assert not psutil.pid_exists(helper) or psutil.Process(helper).status() == "zombie"
