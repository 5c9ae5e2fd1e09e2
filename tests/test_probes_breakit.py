"""Trying to break the background probes the way real programs do.

Each test runs a small program in a subprocess, as a user runs one, with the
``psutil`` probe (and its reader process) in play.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests._programs import run_code

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux programs")


def _run(code: str, tmp_path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return run_code(code, cwd=tmp_path, timeout=timeout, options=["-W", "ignore"], **env)


def test_the_io_of_a_child_is_counted_once_in_the_tree(tmp_path):
    """On Linux a parent's I/O counters take in those of each child it reaps: the
    tree counted the child while it ran, then again in its parent."""
    code = """
        import subprocess, time
        from multimeter import PsutilProbe
        probe = PsutilProbe(interval=0.02)
        index = probe.collector.fields.index("tree.write_chars")
        first = probe.read()
        while probe.read()[0] <= first[0]:
            time.sleep(0.01)  # the reader's first collection
        time.sleep(0.1)
        before = probe.read()[1][index]
        subprocess.run(["bash", "-c",
            "dd if=/dev/zero of=/dev/null bs=1M count=200 status=none; sleep 0.3"])
        time.sleep(0.3)
        after = probe.read()[1][index]
        print((after - before) / 2**20)
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    written = float(done.stdout)
    # the tree's cumulative counter: dd's 200 MiB once (twice it would be about 400)
    assert 190 < written < 260, f"the tree wrote {written:.0f} MiB; dd wrote 200"


def test_a_child_forked_while_another_thread_connects_a_probe_measures_on(tmp_path):
    """One thread's first measured call connects the probe to the reader (it starts
    the helper: milliseconds); the main thread forks meanwhile (a fork Pool). The
    child's first measurement hung forever on the lock held at the fork."""
    code = """
        import os, signal
        from multimeter import Multimeter, PsutilProbe
        from multimeter import _process
        from multimeter.probes import _background
        meter = Multimeter(PsutilProbe())
        # As another thread's first measurement holds it:
        with _process.current().part(_background._Connecting).lock:
            pid = os.fork()
        if pid == 0:
            signal.alarm(10)  # ends a deadlock
            with meter.measure():
                pass
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0" == done.stdout.strip()


def test_a_meter_per_job_does_not_use_up_the_reader(tmp_path):
    """A new ``Multimeter(PsutilProbe())`` per job: every probe object ran a collector
    in the helper forever; after about 120 the probes failed for good."""
    code = """
        from multimeter import Multimeter, PsutilProbe
        from multimeter.testing import InMemoryStorage
        storage = InMemoryStorage()
        for job in range(300):
            with Multimeter(PsutilProbe(), storage=storage).measure(f"job{job}"):
                pass
        print(sum(1 for r in storage.results if "proc.rss" in r.points[-1].values))
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "300" == done.stdout.strip()
    assert "too many background probes" not in done.stderr


def test_a_program_that_closes_every_descriptor_keeps_its_own_files(tmp_path):
    """After ``os.closerange(3, ...)`` (a daemonizing library) the program's new files
    get the numbers of the reader's pipe: multimeter wrote its commands into one of
    them and closed another one under the program."""
    code = """
        import os, time
        from multimeter import Multimeter, PsutilProbe, SystemProbe
        meter = Multimeter(PsutilProbe(interval=0.02), cycle_time=0.05)
        with meter.measure():
            time.sleep(0.1)
        os.closerange(3, 1000)
        files = [open(f"f{i}.bin", "wb") for i in range(8)]
        time.sleep(0.3)  # the reader saw its pipe close and ended
        with Multimeter(SystemProbe(interval=0.05)).measure():  # a new probe registers
            time.sleep(0.1)
        for _ in range(3000):  # enough reads to notice the reader has ended
            with meter.measure():
                pass
        for handle in files:
            handle.close()
        print(sum(os.path.getsize(f"f{i}.bin") for i in range(8)))
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0" == done.stdout.split("\n")[-2]  # bytes multimeter wrote into them


def test_a_sys_executable_that_is_no_working_python_falls_back_to_a_thread(tmp_path):
    """Embedding applications and other interpreters: the helper dies at once (the
    figures stayed those of the first reading, without a word); a thread reads
    instead, once the death is noticed (slower under load: the measurement lasts
    1.5 s, a loaded CI worker missed the growth in 0.4 s)."""
    code = """
        import sys, time
        sys.executable = "/bin/true"
        from multimeter import Multimeter, PsutilProbe
        meter = Multimeter(PsutilProbe(interval=0.05), cycle_time=0.05)
        with meter.measure() as result:
            block = bytearray(100 * 2**20); block[::4096] = b"x" * len(block[::4096])
            time.sleep(1.5)  # its death is noticed under load, then a thread reads
        rss = [v for v in result.values("proc.rss") if v is not None]
        print(rss[-1] - rss[0] > 90 * 2**20)
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "True" == done.stdout.split("\n")[-2]
    assert "reading in a thread instead" in done.stdout + done.stderr


def test_a_frozen_application_is_never_started_again_as_the_reader(tmp_path):
    """PyInstaller: ``sys.executable`` is the application; ``app -m multimeter._reader``
    ran the application a second time."""
    marker = tmp_path / "started-again"
    app = tmp_path / "app"
    app.write_text(f"#!/bin/sh\ntouch {marker}\n")
    app.chmod(0o755)
    code = f"""
        import sys, time
        sys.frozen, sys.executable = True, {str(app)!r}
        from multimeter import Multimeter, PsutilProbe
        with Multimeter(PsutilProbe(interval=0.05), cycle_time=0.05).measure() as result:
            time.sleep(0.3)
        print(any(v is not None for v in result.values("proc.cpu_user")))
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "True" == done.stdout.split("\n")[-2]
    assert not marker.exists()


@pytest.mark.xfail(
    strict=True,
    reason="design: the reader process is a child of the measured process (see the report)",
)
def test_a_program_that_waits_for_all_its_children_ends(tmp_path):
    """``while True: os.wait()`` until ``ChildProcessError`` (a supervisor, a shell):
    the reader process is one more child that never ends, so the program hangs."""
    code = """
        import os, time
        from multimeter import PsutilProbe
        PsutilProbe().read()
        for _ in range(3):
            if os.fork() == 0:
                time.sleep(0.2)
                os._exit(0)
        reaped = 0
        while True:
            try:
                os.wait()
            except ChildProcessError:
                break
            reaped += 1
        print(reaped)
    """
    try:
        done = _run(code, tmp_path, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the program waited forever for the reader process")
    assert "3" == done.stdout.strip()
