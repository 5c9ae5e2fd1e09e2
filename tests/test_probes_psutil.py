"""PsutilProbe and SystemProbe: psutil's figures, read by a helper process.

Most of these tests run a small program in a subprocess, the way a user runs
one: the reader process belongs to the measured process, and what matters is
what happens to it when that process forks, is interrupted or ends.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import multimeter
from multimeter import Multimeter, PsutilProbe, ResourceProbe, SystemProbe, _reader
from multimeter.testing import InMemoryStorage
from tests._programs import environment, run_code


def _run(code: str, tmp_path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return run_code(code, cwd=tmp_path, timeout=timeout, **env)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _warm(probe):
    """The probe with its reader running (started, and its first collection in)."""
    _next_reading(probe, probe.read())
    return probe


def _next_reading(probe, reading, within: float = 10.0):
    """The first reading after ``reading`` (the reader process may take a moment to start)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        later = probe.read()
        if later is not None and later[0] > reading[0]:
            return later
        time.sleep(0.01)
    raise AssertionError(f"no new reading within {within} s")


# -- what it measures ------------------------------------------------------------------


def test_psutil_probe_measures_the_process_and_its_live_tree():
    """Subjects proc and tree; on Linux every figure of the issue is there."""
    keys = [m.key for m in PsutilProbe().measures]
    for subject in ("proc", "tree"):
        for metric in (
            "cpu_user",
            "cpu_system",
            "cpu_percent",
            "rss",
            "vms",
            "threads",
            "context_switches_voluntary",
            "context_switches_involuntary",
        ):
            assert f"{subject}.{metric}" in keys
    assert "tree.processes" in keys
    if sys.platform.startswith("linux"):
        for metric in ("uss", "pss", "fds", "read_bytes", "write_bytes", "read_ops", "write_ops"):
            assert f"proc.{metric}" in keys
    assert len(set(keys)) == len(keys)


def test_without_children_only_the_process_is_measured():
    keys = [m.key for m in PsutilProbe(children=False).measures]
    assert keys and all(k.startswith("proc.") for k in keys)


def test_figures_the_platform_lacks_are_left_out_not_reported_as_zero(monkeypatch):
    """A psutil without I/O counters (as on macOS) gives a schema without I/O."""
    monkeypatch.delattr(psutil.Process, "io_counters")
    keys = [m.key for m in PsutilProbe().measures]
    assert not [k for k in keys if "read_" in k or "write_" in k]


@pytest.mark.parametrize("pid", [0, -3, "12", 1.5, True])
def test_a_bad_pid_raises_value_error_naming_the_setting(pid):
    with pytest.raises(ValueError, match="pid"):
        PsutilProbe(pid=pid)


def test_a_pid_that_does_not_exist_raises_value_error():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ValueError, match=f"pid={child.pid}: no such process"):
        PsutilProbe(pid=child.pid)


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), "0.1", None])
def test_a_bad_interval_raises_value_error(interval):
    with pytest.raises(ValueError, match="interval"):
        PsutilProbe(interval=interval)
    with pytest.raises(ValueError, match="interval"):
        SystemProbe(interval=interval)


def test_a_reading_is_the_latest_collection_made_by_the_reader():
    """read() is a look at shared memory: cheap, and as fresh as the interval."""
    probe = PsutilProbe(interval=0.05)
    first = probe.read()  # taken here and now; the reader's first comes once it runs
    assert first is not None
    later = _next_reading(probe, first)
    time.sleep(0.3)
    later = probe.read()
    assert later[0] > first[0]
    assert time.monotonic() - later[0] < 0.3
    assert later is probe.read() or later[0] < probe.read()[0]  # same object until it changes
    values = dict(zip(probe.collector.fields, later[1], strict=True))
    assert values["proc.rss"] == pytest.approx(psutil.Process().memory_info().rss, rel=0.5)
    reader = _reader.current()
    assert reader is not None and reader.process is not None  # a helper process, not a thread
    assert reader.process.pid != os.getpid()


def test_the_rss_curve_goes_down_when_memory_is_freed():
    """Unlike ResourceProbe's max_rss, proc.rss follows the program's memory."""
    meter = Multimeter(ResourceProbe(), _warm(PsutilProbe(interval=0.05)), cycle_time=0.05)
    with meter.measure("curve") as result:
        time.sleep(0.2)
        block = bytearray(150 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # resident, not just reserved
        time.sleep(0.4)
        del block
        time.sleep(0.4)
    rss = [v for v in result.values("proc.rss") if v is not None]
    top = max(rss)
    assert top - rss[0] > 120 * 2**20
    assert top - rss[-1] > 120 * 2**20  # it fell back
    max_rss = [v for v in result.values("process.max_rss") if v is not None]
    assert max_rss[-1] >= top * 0.9  # the high-water mark did not fall
    assert result.summary()["peak_memory_bytes"] >= 150 * 2**20


def test_the_tree_counts_a_child_process_cpu_while_it_runs():
    """A running child's CPU shows in tree.* long before it is waited for."""
    meter = Multimeter(ResourceProbe(), _warm(PsutilProbe(interval=0.05)), cycle_time=0.1)
    # a second of CPU whatever the load (a busy machine stretches its wall time)
    burn = "import time\nwhile time.process_time() < 1.0: pass"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with meter.measure("child") as result:
        child = subprocess.Popen([sys.executable, "-c", burn])
        time.sleep(0.6)
        during = result.points[-1].values
        child.wait()
        time.sleep(0.2)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert during.get("tree.processes", 0) >= 2
    summary = _cpu_seconds(result, "tree") - _cpu_seconds(result, "proc")
    assert used > 0.5
    assert 0.7 * used < summary < 1.3 * used  # the child's CPU (about 1 s), counted once


def _cpu_seconds(result, subject: str) -> float:
    total, previous = 0.0, None
    for point in result.points:
        moment = point.datetime.timestamp()
        rate = point.values.get(f"{subject}.cpu_user", math.nan) + point.values.get(
            f"{subject}.cpu_system", math.nan
        )
        if previous is not None and rate == rate:
            total += rate * (moment - previous)
        previous = moment
    return total


def test_children_that_come_and_go_are_neither_lost_crashing_nor_counted_twice():
    """Forty short children in a row: the tree's CPU stays between what the
    process and its children used in total and a little less."""
    meter = Multimeter(_warm(PsutilProbe(interval=0.02)), cycle_time=0.05)
    burn = "import time\nt = time.time()\nwhile time.time() - t < 0.05: pass"
    before = resource_children_cpu()
    with meter.measure("churn") as result:
        for _ in range(40):
            subprocess.run([sys.executable, "-c", burn], check=True)
    used = resource_children_cpu() - before
    rates = [v for p in result.points for k, v in p.values.items() if k.startswith("tree.cpu")]
    assert min(rates) >= 0
    counted = _cpu_seconds(result, "tree") - _cpu_seconds(result, "proc")
    assert counted <= used * 1.15 + 0.05  # never twice
    assert counted > 0  # and seen at all


def resource_children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_another_process_by_pid_and_its_end_is_logged_not_raised(tmp_path):
    """PsutilProbe(pid=...) measures any process; when it ends, values go missing."""
    code = """
        import subprocess, sys, time
        import structlog
        from multimeter import Multimeter, PsutilProbe
        logged = []
        structlog.configure(processors=[lambda _l, _m, event: logged.append(event) or ""],
                            logger_factory=structlog.PrintLoggerFactory(open("/dev/null", "w")))
        hold = "x = bytearray(80 * 2**20); x[::4096] = b'y' * len(x[::4096]); "
        ready = "print('holding', flush=True); import time; time.sleep(1.0)"
        child = subprocess.Popen(
            [sys.executable, "-c", hold + ready], stdout=subprocess.PIPE, text=True
        )
        child.stdout.readline()  # its memory is resident now, however loaded the machine
        meter = Multimeter(PsutilProbe(pid=child.pid, interval=0.05), cycle_time=0.1)
        with meter.measure("other") as result:
            child.wait()  # it ends inside the measurement
            time.sleep(0.5)
        rss = [v for v in result.values("proc.rss") if v is not None]
        print(max(rss) > 80 * 2**20, any("ended" in str(e) for e in logged))
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "True True" == done.stdout.strip()


def test_permission_errors_on_another_users_process_are_logged_not_raised(tmp_path):
    """As an unprivileged user, reading a root process's open files is denied."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    code = f"""
        import os, sys, time
        os.setgid(65534); os.setuid(65534)
        import structlog
        logged = []
        structlog.configure(processors=[lambda _l, _m, event: logged.append(event) or ""],
                            logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))
        from multimeter import Multimeter, PsutilProbe
        meter = Multimeter(PsutilProbe(pid={os.getpid()}, interval=0.05), cycle_time=0.1)
        with meter.measure("denied") as result:
            time.sleep(0.5)
        values = result.points[-1].values
        print(values["proc.rss"] > 0, "proc.fds" not in values,
              any("AccessDenied" in str(e) for e in logged))
    """
    done = _run(code, "/tmp")
    if "ModuleNotFoundError" in done.stderr or "PermissionError" in done.stderr:
        pytest.skip("this Python is not readable by an unprivileged user")
    assert done.returncode == 0, done.stderr
    assert "True True True" == done.stdout.strip()


def test_a_denied_figure_is_missing_and_logged_once_the_others_go_on(tmp_path):
    """What an unprivileged user meets (simulated in the reader thread: psutil
    raising AccessDenied for the open files of a process)."""
    code = """
        import os, time
        import psutil, structlog
        logged = []
        structlog.configure(processors=[lambda _l, _m, event: logged.append(event) or ""],
                            logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))
        def denied(self):
            raise psutil.AccessDenied(self.pid)
        psutil.Process.num_fds = denied
        from multimeter import Multimeter, PsutilProbe
        meter = Multimeter(PsutilProbe(interval=0.05), cycle_time=0.1)
        with meter.measure("denied") as result:
            time.sleep(0.5)
        values = result.points[-1].values
        told = [e for e in logged if "AccessDenied" in str(e)]
        print(values["proc.rss"] > 0, "proc.fds" not in values, len(told))
    """
    done = _run(code, tmp_path, MULTIMETER_READER="thread")
    assert done.returncode == 0, done.stderr
    assert "True True 1" == done.stdout.strip()


# -- the reader process's life ---------------------------------------------------------


@pytest.mark.parametrize(
    "ending",
    ["pass", "os._exit(0)", "os.kill(os.getpid(), signal.SIGKILL)", "raise SystemExit(3)"],
)
def test_the_reader_process_ends_with_the_measured_process_however_it_ends(tmp_path, ending):
    code = f"""
        import os, signal, sys
        from multimeter import PsutilProbe, _reader
        PsutilProbe().read()
        print(_reader.current().process.pid, flush=True)
        {ending}
    """
    done = _run(code, tmp_path)
    helper = int(done.stdout.split()[0])
    assert _wait_gone(helper), "the reader process outlived the measured one"


def test_a_forked_child_gets_its_own_reader_measuring_itself(tmp_path):
    code = """
        import os, time
        from multimeter import PsutilProbe, _reader
        probe = PsutilProbe(children=False, interval=0.05)
        parent_reader = (probe.read(), _reader.current().process.pid)[1]
        pid = os.fork()
        if pid == 0:
            block = bytearray(120 * 2**20); block[::4096] = b"z" * len(block[::4096])
            started = probe.read()[0]
            deadline = time.monotonic() + 10
            while probe.read()[0] <= started and time.monotonic() < deadline:
                time.sleep(0.01)  # the child's own reader's first collection
            values = dict(zip(probe.collector.fields, probe.read()[1]))
            print(_reader.current().process.pid != parent_reader,
                  values["proc.rss"] > 120 * 2**20, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.2)
        values = dict(zip(probe.collector.fields, probe.read()[1]))
        print(values["proc.rss"] < 100 * 2**20)
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert ["True True", "True"] == done.stdout.split("\n")[:2]


def test_ctrl_c_reaches_the_program_and_not_the_reader(tmp_path):
    """The reader runs in its own session: a terminal's SIGINT to the program's
    process group neither kills it nor prints a traceback from it."""
    code = """
        import signal, sys, threading, time
        interrupted = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: interrupted.set())  # the program's own handler
        from multimeter import PsutilProbe, _reader
        probe = PsutilProbe(interval=0.05)
        probe.read()
        print(_reader.current().process.pid, flush=True)
        while not interrupted.wait(0.05):
            pass
        time.sleep(0.3)
        print("interrupted", probe.read() is not None, flush=True)
    """
    program = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        start_new_session=True,  # its own process group, as a shell job has
    )
    assert program.stdout is not None
    helper = int(program.stdout.readline())
    os.killpg(program.pid, signal.SIGINT)
    time.sleep(0.1)
    assert _alive(helper)  # the terminal's Ctrl-C did not reach it
    out, err = program.communicate(timeout=30)
    assert "interrupted True" in out
    assert "Traceback" not in err
    assert _wait_gone(helper)


def test_without_a_reader_process_a_thread_reads_instead(tmp_path):
    """MULTIMETER_READER=thread (or no way to start a process): same figures, in a thread."""
    code = """
        import threading, time
        from multimeter import PsutilProbe, _reader
        probe = PsutilProbe(interval=0.05)
        first = probe.read(); time.sleep(0.3); later = probe.read()
        reader = _reader.current()
        print(reader.process is None, reader.thread.daemon, later[0] > first[0])
    """
    done = _run(code, tmp_path, MULTIMETER_READER="thread")
    assert done.returncode == 0, done.stderr
    assert "True True True" == done.stdout.strip()


# -- configuration ---------------------------------------------------------------------


def test_configure_takes_probe_names_and_objects():
    meter = multimeter.configure(probes=["resource", "psutil", SystemProbe()])
    assert ["ResourceProbe", "PsutilProbe", "SystemProbe"] == [
        type(p).__name__ for p in meter.probes
    ]


def test_an_unknown_probe_name_raises_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"'cpu'.*resource, psutil, system, tracemalloc, gc, nvml"):
        multimeter.configure(probes=["resource", "cpu"])


def test_multimeter_probes_names_them_too(monkeypatch):
    monkeypatch.setenv("MULTIMETER_PROBES", "resource,psutil,system")
    meter = multimeter.configure()
    assert ["ResourceProbe", "PsutilProbe", "SystemProbe"] == [
        type(p).__name__ for p in meter.probes
    ]
    monkeypatch.setenv("MULTIMETER_PROBES", "resource,bogus")
    multimeter.reset()  # the environment is read again by the next configure()
    with pytest.raises(ValueError, match=r"MULTIMETER_PROBES.*bogus.*psutil"):
        multimeter.configure()


def test_measured_calls_carry_psutil_figures_end_to_end(tmp_path):
    """A short call's point holds the latest psutil figures; a long one, rates over it."""
    code = """
        import json, time
        import multimeter

        @multimeter.measured
        def short():
            return sum(range(1000))

        @multimeter.measured
        def long():
            t = time.time()
            while time.time() - t < 0.5:
                pass

        short()
        deadline = time.monotonic() + 30
        while multimeter._reader.current().changes[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the reader's first two collections (it may start slowly)
        long()
        multimeter.flush(10)
        results = list(multimeter.load_results("out"))
        print(json.dumps({r.identifier.split("-")[0]: r.points[-1].values for r in results}))
    """
    done = _run(
        code,
        tmp_path,
        MULTIMETER_PROBES="resource,psutil",
        MULTIMETER_DIR="out",
        MULTIMETER_CYCLE_TIME="0.2",
    )
    assert done.returncode == 0, done.stderr
    points = json.loads(done.stdout)
    assert points["short"]["proc.rss"] > 0
    assert "process.cpu_user" in points["short"]
    long = points["long"]
    own = (long["process.cpu_user"] + long["process.cpu_system"]) * 100  # getrusage's
    assert own > 10
    assert 0.5 * own < long["proc.cpu_percent"] < 1.5 * own


# -- what a measured call's point holds -------------------------------------------------

#: A program's preamble: resource, psutil, system and gc probes on measured calls,
#: stored under ``out``; ``warm()`` waits for the reader's first two collections.
_CALLS = """
    import json, os, sys, time
    import multimeter
    from multimeter import _reader

    psutil_probe = multimeter.PsutilProbe(interval=0.05)
    system_probe = multimeter.SystemProbe(interval=0.05)
    multimeter.configure(probes=["resource", psutil_probe, system_probe, "gc"])

    @multimeter.measured(tag_args=["label"])
    def short(label):
        return sum(range(100))

    def warm():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            readings = [probe.read() for probe in (psutil_probe, system_probe)]
            if all(r is not None and r[2] is not None for r in readings):
                return
            time.sleep(0.01)
        sys.exit("the reader made no two collections in 30 s")

    def points():
        # the point of the last call of each label
        multimeter.flush(10)
        found = {}
        for result in sorted(multimeter.load_results("out"), key=lambda r: r.points[-1].datetime):
            found[result.tags["label"]] = result.points[-1].values
        return found
"""


@pytest.mark.parametrize("reader", ["process", "thread"])
def test_a_short_calls_point_holds_the_latest_gauges_and_the_collectors_latest_rates(
    tmp_path, reader
):
    """A call far shorter than the probes' interval spans no new collection: its
    point holds the gauges of the latest collection and the rates over the
    collector's latest interval (the process's recent rates, not the call's own:
    those are ResourceProbe's), exactly; with a reader process and a thread alike."""
    code = (
        _CALLS
        + """
    warm()
    rates = {}
    for label in ("idle", "busy"):
        if label == "idle":
            time.sleep(0.5)
        else:
            stop = time.monotonic() + 0.6
            while time.monotonic() < stop:
                pass
        for _ in range(100):  # until the call falls within one collection
            before = psutil_probe.read()
            short(label)
            after = psutil_probe.read()
            if after is before:
                break
        now, values, (then, earlier) = after
        fields = psutil_probe.collector.fields
        user = fields.index("proc.cpu_user")
        rss = fields.index("proc.rss")
        rates[label] = [(values[user] - earlier[user]) / (now - then), values[rss]]
    print(json.dumps({"expected": rates, "points": points()}))
    """
    )
    env = {"MULTIMETER_READER": "thread"} if reader == "thread" else {}
    done = _run(code, tmp_path, MULTIMETER_DIR="out", **env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for label in ("idle", "busy"):
        point = report["points"][label]
        cpu_user, rss = report["expected"][label]
        assert point["proc.cpu_user"] == pytest.approx(cpu_user, abs=1e-9)
        assert point["proc.rss"] == rss
        for key in (
            "process.cpu_user",  # the call's own CPU, from getrusage at its start and end
            "python.gc_collections_gen0",
            "proc.cpu_percent",
            "proc.read_chars",
            "tree.cpu_user",
            "tree.processes",
            "system.cpu_percent",
            "system.memory_available",
        ):
            assert key in point, f"{key} missing from the {label} call's point"
    idle, busy = report["points"]["idle"], report["points"]["busy"]
    if reader == "process":  # a reader thread needs the GIL the busy loop holds
        assert idle["proc.cpu_percent"] < busy["proc.cpu_percent"]  # the recent rates


def test_a_call_spanning_collections_gets_rates_over_them(tmp_path):
    """A call longer than the interval (but not promoted to a session: shorter than
    half a cycle) gets the rates between the collections at its start and end,
    which cover the call: its CPU is about the call's own (ResourceProbe's)."""
    code = (
        _CALLS
        + """
    @multimeter.measured(tag_args=["label"])
    def burn(label):
        stop = time.monotonic() + 0.4
        while time.monotonic() < stop:
            pass

    warm()
    time.sleep(0.3)  # idle before: the collections before the call see no CPU
    burn("burn")
    print(json.dumps(points()))
    """
    )
    done = _run(code, tmp_path, MULTIMETER_DIR="out", MULTIMETER_CYCLE_TIME="2")
    assert done.returncode == 0, done.stderr
    point = json.loads(done.stdout)["burn"]
    own = point["process.cpu_user"] + point["process.cpu_system"]
    sampled = point["proc.cpu_user"] + point["proc.cpu_system"]
    assert own > 0.05
    assert 0.6 * own < sampled < 1.4 * own


def test_background_probes_among_others_keep_their_values_in_schema_order(tmp_path):
    """The per-call path reads the background probes as one group; where they are
    not next to each other in the schema, every value still lands under its key."""
    code = (
        _CALLS.replace(
            '["resource", psutil_probe, system_probe, "gc"]',
            '[psutil_probe, "gc", "resource", system_probe]',
        )
        + """
    import psutil
    warm()
    short("mixed")
    print(json.dumps([points()["mixed"], psutil.virtual_memory().total]))
    """
    )
    done = _run(code, tmp_path, MULTIMETER_DIR="out")
    assert done.returncode == 0, done.stderr
    point, memory = json.loads(done.stdout)
    assert 0 < point["system.memory_available"] <= memory
    assert 0 < point["proc.rss"] < memory / 2
    assert point["tree.processes"] == 1  # the reader is left out of the tree
    assert 0 <= point["python.gc_collections_gen0"] < 10_000
    assert 0 <= point["process.cpu_user"] < 10
    assert 0 <= point["system.cpu_percent"] <= 100


def test_calls_read_the_background_probes_only_when_the_reader_wrote(tmp_path):
    """The per-call path looks at one counter of the reader's: the probes' slots are
    read again only after a new collection (and every 1,024 calls), not per call."""
    code = (
        _CALLS
        + """
    warm()
    looks = [0]
    latest = _reader.Slot.latest

    def counted(slot):
        looks[0] += 1
        return latest(slot)

    _reader.Slot.latest = counted
    changes = _reader.current().changes
    written = changes[0]
    for _ in range(20_000):
        short("loop")
    written = changes[0] - written
    stored = "proc.rss" in points()["loop"]
    print(json.dumps({"looks": looks[0], "written": written, "stored": stored}))
    """
    )
    done = _run(code, tmp_path, MULTIMETER_DIR="out")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["stored"]
    # Two slots, each read once per collection written and per health check.
    assert report["looks"] <= 2 * (report["written"] + 20_000 // 1024 + 2)


def test_a_forked_childs_calls_carry_its_own_readers_figures(tmp_path):
    code = (
        _CALLS
        + """
    warm()
    for _ in range(100):
        short("parent")
    pid = os.fork()
    if pid == 0:
        block = bytearray(200 * 2**20); block[::4096] = b"z" * len(block[::4096])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            short("child")
            time.sleep(0.005)
        multimeter.flush(10)
        os._exit(0)
    os.waitpid(pid, 0)
    short("parent")
    print(json.dumps(points()))
    """
    )
    done = _run(code, tmp_path, MULTIMETER_DIR="out")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["child"]["proc.rss"] > 200 * 2**20
    assert found["parent"]["proc.rss"] < 150 * 2**20


def test_calls_notice_a_dead_reader_and_go_on_with_a_new_one(tmp_path):
    """Someone kills the helper: within 1,024 calls it is replaced, and the calls'
    figures follow the program again (not the dead helper's last collection)."""
    code = (
        _CALLS
        + """
    warm()
    for _ in range(100):
        short("before")
    helper = _reader.current().process
    os.kill(helper.pid, 9)
    helper.wait()
    block = bytearray(200 * 2**20); block[::4096] = b"z" * len(block[::4096])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        short("after")
        time.sleep(0.001)
    print(json.dumps(points()))
    """
    )
    done = _run(code, tmp_path, MULTIMETER_DIR="out")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["before"]["proc.rss"] < 150 * 2**20
    assert found["after"]["proc.rss"] > 200 * 2**20
    assert "reader process has died" in done.stdout + done.stderr


def test_system_probe_reports_the_machine():
    meter = Multimeter(_warm(SystemProbe(interval=0.05)), cycle_time=0.1)
    with meter.measure("system") as result:
        time.sleep(0.5)
    values = result.points[-1].values
    busy = [v for v in result.values("system.cpu_percent") if v is not None]
    assert busy and all(0 <= v <= 100 for v in busy)  # a rate: in points spanning a collection
    assert 0 < values["system.memory_available"] <= psutil.virtual_memory().total
    assert values["system.memory_used"] > 0
    assert values["system.swap_used"] >= 0
    assert values["system.load_1"] >= 0


def test_background_probes_never_raise_into_measured_code(monkeypatch):
    """A collector that fails: logged, values missing, the measurement goes on."""
    storage = InMemoryStorage()
    probe = PsutilProbe(pid=None, interval=0.05)
    monkeypatch.setattr(probe.collector, "target", 2**31 - 5)  # no such process
    meter = Multimeter(ResourceProbe(), probe, cycle_time=0.1, storage=storage)
    with meter.measure("broken") as result:
        time.sleep(0.3)
    assert all("proc.rss" not in p.values for p in result.points)
    assert all("process.cpu_user" in p.values for p in result.points[1:])


def test_a_reader_process_that_dies_is_replaced_and_figures_go_on(tmp_path):
    """Someone kills the helper: the probe notices within some reads, logs it and
    starts a new one, rather than showing the last collection forever."""
    code = """
        import os, signal, time
        from multimeter import PsutilProbe, _reader
        probe = PsutilProbe(interval=0.02)
        probe.read()
        first = _reader.current().process
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        for _ in range(5000):
            probe.read()
        killed_at = time.monotonic()
        deadline = killed_at + 10
        while probe.read()[0] <= killed_at and time.monotonic() < deadline:
            time.sleep(0.01)  # the new reader's first collection (processes start slowly)
        time.sleep(0.2)
        reading = probe.read()
        second = _reader.current().process
        print(second.pid != first.pid, second.poll() is None, time.monotonic() - reading[0] < 0.2)
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "True True True" in done.stdout
    assert "reader process has died" in done.stdout + done.stderr


def test_a_reader_process_that_cannot_run_here_gives_way_to_a_thread(tmp_path):
    """A helper that dies at once (here: sys.executable is no Python) is tried
    twice, then a thread reads: figures keep coming, nothing is raised."""
    code = """
        import sys, time
        sys.executable = "/bin/false"
        from multimeter import PsutilProbe, _reader
        probe = PsutilProbe(interval=0.02)
        for _ in range(20):
            for _ in range(1100):
                probe.read()
            time.sleep(0.05)
        reader = _reader.current()
        first = probe.read(); time.sleep(0.3); later = probe.read()
        print(reader.process is None, reader.thread is not None, later[0] > first[0])
    """
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "True True True" in done.stdout
