"""Every way a process ends keeps what its measured calls finished.

See DESIGN-NOTES, "Process lifecycles".

The user's programs run as real subprocesses: ``app.py`` in ``tmp_path``, importing the
measured code from ``tests/lifecycle_app.py`` by module name, storing the calls in the
default batch files under ``MULTIMETER_DIR=tmp_path/results``. They never call
``multimeter.flush()`` unless the test says so. A program that hangs is stopped with
SIGABRT, so that faulthandler (``PYTHONFAULTHANDLER=1``) shows where each thread waited.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import multiprocessing
import os
import pathlib
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

import multimeter
from tests import _programs, lifecycle_app

TESTS = pathlib.Path(__file__).resolve().parent
#: Seconds a program may take before it counts as hanging (a loaded 2-core machine).
HANG = 60
#: Seconds the exit (or SIGTERM) may wait for pending results in the programs.
EXIT_TIMEOUT = "30"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _start_method(name: str) -> Any:
    return pytest.param(
        name,
        marks=pytest.mark.skipif(
            name not in multiprocessing.get_all_start_methods(),
            reason=f"no {name} start method on this platform",
        ),
    )


START_METHODS = [_start_method(name) for name in ("fork", "spawn", "forkserver")]


# --- running the user's program ---------------------------------------------------------


def _environment(tmp_path: pathlib.Path, env: dict[str, str]) -> dict[str, str]:
    settings = {
        "PYTHONFAULTHANDLER": "1",
        "MULTIMETER_DIR": str(tmp_path / "results"),
        "MULTIMETER_EXIT_TIMEOUT": EXIT_TIMEOUT,
        **env,
    }
    return _programs.environment(pythonpath=[TESTS], **settings)


def _write_app(tmp_path: pathlib.Path, code: str) -> list[str]:
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    return [sys.executable, "app.py"]


def run_app(
    tmp_path: pathlib.Path,
    code: str,
    *,
    args: tuple[str, ...] = (),
    under_run: bool = False,
    timeout: float = HANG,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as ``tmp_path/app.py`` with ``args`` (under ``multimeter run`` if
    asked); fail the test (with tracebacks) if it hangs."""
    command = _write_app(tmp_path, code)
    if under_run:
        command = [sys.executable, "-m", "multimeter", "run", *command[1:]]
    with subprocess.Popen(
        [*command, *args],
        cwd=tmp_path,
        env=_environment(tmp_path, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: workers too can be stopped
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_hanging(process)
            stdout, stderr = process.communicate(timeout=HANG)
            pytest.fail(
                f"the program (or a process it started) hung for {timeout} s;"
                f" its threads:\n{stderr[-8000:]}"
            )
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@contextlib.contextmanager
def started_app(tmp_path: pathlib.Path, code: str, *args: str, **env: str) -> Iterator[Any]:
    """Start ``code`` as ``tmp_path/app.py`` (output to ``out.txt``/``err.txt``); kill it after."""
    with (
        open(tmp_path / "out.txt", "w") as out,
        open(tmp_path / "err.txt", "w") as err,
        subprocess.Popen(
            [*_write_app(tmp_path, code), *args],
            cwd=tmp_path,
            env=_environment(tmp_path, env),
            stdout=out,
            stderr=err,
            start_new_session=True,
        ) as process,
    ):
        try:
            yield process
        finally:
            if process.poll() is None:
                _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Send ``signum`` to every process of the program's group (it leads the group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _stop_hanging(process: subprocess.Popen[Any]) -> None:
    """SIGABRT to each of its processes in turn (faulthandler shows their stacks), then SIGKILL.

    Called before the program is reaped, so its pid still names its process group.
    """
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(process.pid)
        for member in [leader, *leader.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                member.send_signal(signal.SIGABRT)
                time.sleep(0.5)  # one dump after the other, not interleaved
    time.sleep(1)
    _signal_group(process, signal.SIGKILL)


def output_of(tmp_path: pathlib.Path) -> str:
    """What a program started by ``started_app`` wrote to stdout and stderr."""
    return (tmp_path / "out.txt").read_text()[-3000:] + (tmp_path / "err.txt").read_text()[-6000:]


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[Any], what: str) -> None:
    """Wait (at most ``HANG`` seconds) until ``condition()``, while ``process`` runs."""
    deadline = time.monotonic() + HANG
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the program ended ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            _stop_hanging(process)
            process.wait()
            pytest.fail(f"the program did not get to {what} within {HANG} s")
        time.sleep(0.05)


def wait_for_end(process: subprocess.Popen[Any], timeout: float, tmp_path: pathlib.Path) -> int:
    """The exit status (``-N`` for signal N); fails the test if the program hangs."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop_hanging(process)
        process.wait()
        pytest.fail(
            f"the program did not end within {timeout} s after SIGTERM;"
            f" its output and threads:\n{output_of(tmp_path)}"
        )


# --- reading what was stored ------------------------------------------------------------


def stored_meta_data(tmp_path: pathlib.Path) -> list[dict[str, str]]:
    """The ``meta_data`` of every result stored under ``tmp_path/results``."""
    directory = tmp_path / "results"
    if not directory.exists():
        return []
    return [result.meta_data for result in multimeter.load_results(directory)]


def stored_count(tmp_path: pathlib.Path) -> int:
    """How many results are stored under ``tmp_path/results`` (whole lines of batch files)."""
    return len(stored_meta_data(tmp_path))


def temporary_files(tmp_path: pathlib.Path) -> list[str]:
    """Hidden temporary files (``.multimeter-*.tmp``) left in ``tmp_path/results``."""
    directory = tmp_path / "results"
    return sorted(p.name for p in directory.glob(".multimeter-*")) if directory.exists() else []


# --- 1. pickling ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_measured_function_pickles_by_reference(protocol):
    """Like the plain function: loads(dumps(f)) gives back the very same measured function."""
    work = lifecycle_app.work
    assert work is pickle.loads(pickle.dumps(work, protocol))


@pytest.mark.parametrize(
    "copied",
    [
        pytest.param(lambda f: copy.copy(f), id="copy"),
        pytest.param(lambda f: copy.deepcopy(f), id="deepcopy"),
        pytest.param(lambda f: copy.deepcopy({"f": f})["f"], id="deepcopy-in-a-dict"),
    ],
)
def test_copying_a_measured_function_gives_the_function_itself(copied):
    """copy and deepcopy treat a measured function like a plain one: no copy is made."""
    work = lifecycle_app.work
    assert work is copied(work)


def test_a_measured_method_pickles_as_a_bound_method_of_its_instance(stored):
    """The restored bound method belongs to a copy of the instance, and is still measured."""
    restored = pickle.loads(pickle.dumps(lifecycle_app.Scaler(3).scale))
    assert 6 == restored(2)
    assert multimeter.flush(10)
    assert ["Scaler.scale"] == [r.meta_data["function"] for r in stored.results]


@pytest.fixture
def instrumented_etl() -> Iterator[Any]:
    """``tests.pkg_for_instrument.etl`` with ``instrument()`` applied, undone afterwards."""
    from tests.pkg_for_instrument import etl

    handle = multimeter.instrument(etl)
    yield etl
    handle.uninstrument()


def test_an_instrumented_function_pickles_by_reference(instrumented_etl):
    """instrument(module) puts measured functions in the module; they pickle as themselves."""
    load = instrumented_etl.load
    assert load is pickle.loads(pickle.dumps(load))


def test_an_instrumented_method_pickles_as_a_bound_method(stored, instrumented_etl):
    """A method measured by instrument(module) pickles as a bound method, still measured."""
    restored = pickle.loads(pickle.dumps(instrumented_etl.Loader().run))
    assert "loaded rows" == restored("rows")
    assert multimeter.flush(10)
    assert ["load", "Loader.run"] == [r.meta_data["function"] for r in stored.results]


# --- 2. multiprocessing: every start method, every way of using it ----------------------

CALLS = 200
WORKERS = 2

USES = {
    "Process": """
        count = CALLS // WORKERS
        processes = [context.Process(target=work_many, args=(count,)) for _ in range(WORKERS)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        assert [0] * WORKERS == [p.exitcode for p in processes]
        pids = [p.pid for p in processes for _ in range(count)]
    """,
    "Pool-close-join": """
        pool = context.Pool(WORKERS)
        pids = pool.map(work, range(CALLS))
        pool.close()
        pool.join()
    """,
    "Pool-of-a-plain-function": """
        pool = context.Pool(WORKERS)  # only work_many, a plain function, is pickled here
        pids = [pid for pids in pool.map(work_many, [10] * (CALLS // 10)) for pid in pids]
        pool.close()
        pool.join()
    """,
    "with-Pool": """
        with context.Pool(WORKERS) as pool:  # __exit__ terminates the workers (SIGTERM)
            pids = pool.map(work, range(CALLS))
    """,
    "ProcessPoolExecutor": """
        with ProcessPoolExecutor(WORKERS, mp_context=context) as executor:
            pids = list(executor.map(work, range(CALLS)))
    """,
}


@pytest.mark.parametrize("use", list(USES))
@pytest.mark.parametrize("method", START_METHODS)
def test_every_call_made_in_child_processes_is_stored(tmp_path, method, use):
    """Each call of the measured function in a worker is stored once, by that worker."""
    code = f"""
        import json
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from lifecycle_app import work, work_many

        CALLS, WORKERS = {CALLS}, {WORKERS}

        if __name__ == "__main__":
            context = multiprocessing.get_context({method!r})
{textwrap.indent(textwrap.dedent(USES[use]), " " * 12)}
            print(json.dumps(pids))
    """
    completed = run_app(tmp_path, code)
    assert 0 == completed.returncode, completed.stderr[-6000:]
    calls_by_pid = collections.Counter(str(pid) for pid in json.loads(completed.stdout))
    stored_by_pid = collections.Counter(m["pid"] for m in stored_meta_data(tmp_path))
    assert calls_by_pid == stored_by_pid
    assert [] == temporary_files(tmp_path)


# --- 3. SIGTERM -------------------------------------------------------------------------

TIGHT_LOOP = """
    import mmap
    import struct
    import sys

    from lifecycle_app import work

    with open(sys.argv[1], "r+b") as file:
        finished = mmap.mmap(file.fileno(), 8)
    count = 0
    while True:
        work(count)
        count += 1
        struct.pack_into("Q", finished, 0, count)  # calls finished so far, read by the test
"""


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_sigterm_stores_every_finished_call_then_the_process_dies_of_sigterm(tmp_path, signum):
    """Default SIGTERM (and SIGHUP: a terminal or ssh session gone) handling: what
    finished is stored, and the process still dies of the signal (status -15, -1)."""
    counter = tmp_path / "finished"
    counter.write_bytes(bytes(8))

    def finished() -> int:
        return int(struct.unpack("Q", counter.read_bytes())[0])

    with started_app(tmp_path, TIGHT_LOOP, str(counter)) as process:
        wait_until(lambda: finished() > 0, process, "its first measured call")
        time.sleep(1)
        process.send_signal(signum)
        status = wait_for_end(process, 3 * HANG, tmp_path)
    assert -signum == status, output_of(tmp_path)
    calls, stored = finished(), stored_count(tmp_path)
    assert stored in (calls, calls + 1), f"{calls} calls finished, {stored} stored"
    assert [] == temporary_files(tmp_path)


@posix_only
@pytest.mark.parametrize("where", ["before import", "after import", "after the first call"])
def test_an_applications_own_sigterm_handler_is_kept(tmp_path, where):
    """multimeter never replaces a SIGTERM handler of the application, set before or after."""
    install = "signal.signal(signal.SIGTERM, on_sigterm)  # the application's handler"
    code = f"""
        import pathlib
        import signal
        import sys
        import time

        def on_sigterm(signum, frame):
            pathlib.Path("handled").write_text("handled by the application")
            sys.exit(0)

        {install if where == "before import" else ""}
        import multimeter
        from lifecycle_app import work
        {install if where == "after import" else ""}
        work(0)
        {install if where == "after the first call" else ""}
        pathlib.Path("ready").touch()
        while True:
            time.sleep(0.01)
    """
    with started_app(tmp_path, code) as process:
        wait_until((tmp_path / "ready").exists, process, "its first measured call")
        process.send_signal(signal.SIGTERM)
        status = wait_for_end(process, 2 * HANG, tmp_path)
    assert 0 == status, output_of(tmp_path)
    assert "handled by the application" == (tmp_path / "handled").read_text()


SIGTERM_HANDLER_AFTER_CALLS = """
    import signal

    import multimeter
    from lifecycle_app import work

    work(0)
    multimeter.configure()
    work(1)
    handler = signal.getsignal(signal.SIGTERM)
    print("SIG_DFL" if handler is signal.SIG_DFL else "installed")
"""


@posix_only
def test_a_measured_call_in_the_main_thread_installs_a_sigterm_handler(tmp_path):
    """By default multimeter handles SIGTERM (to store pending results) once it measures."""
    completed = run_app(tmp_path, SIGTERM_HANDLER_AFTER_CALLS)
    assert (0, "installed") == (completed.returncode, completed.stdout.strip()), completed.stderr


@posix_only
@pytest.mark.parametrize("value", ["0", "false"])
def test_handle_sigterm_0_installs_no_sigterm_handler(tmp_path, value):
    """MULTIMETER_HANDLE_SIGTERM=0: SIGTERM keeps its default action after calls and configure()."""
    completed = run_app(tmp_path, SIGTERM_HANDLER_AFTER_CALLS, MULTIMETER_HANDLE_SIGTERM=value)
    assert (0, "SIG_DFL") == (completed.returncode, completed.stdout.strip()), completed.stderr


@posix_only
def test_measured_calls_made_only_in_other_threads_work_and_are_stored(tmp_path):
    """No handler can be installed from a thread; the calls are measured and stored all the same."""
    code = """
        import threading

        from lifecycle_app import work_many

        thread = threading.Thread(target=work_many, args=(100,))
        thread.start()
        thread.join()
    """
    completed = run_app(tmp_path, code)
    assert (0, 100) == (completed.returncode, stored_count(tmp_path)), completed.stderr


@posix_only
def test_sigterm_with_a_storage_that_never_finishes_still_ends_the_process(tmp_path):
    """Storing at SIGTERM waits at most MULTIMETER_EXIT_TIMEOUT; then the process dies of it."""
    code = """
        import pathlib
        import time

        import multimeter
        from multimeter.storages.base import Storage

        class Stuck(Storage):
            def store(self, result):
                while True:
                    time.sleep(1)

        multimeter.configure(storage=Stuck())
        from lifecycle_app import work_many

        work_many(10)
        pathlib.Path("ready").touch()
        while True:
            time.sleep(0.1)
    """
    with started_app(tmp_path, code, MULTIMETER_EXIT_TIMEOUT="1") as process:
        wait_until((tmp_path / "ready").exists, process, "its measured calls")
        process.send_signal(signal.SIGTERM)
        status = wait_for_end(process, 30, tmp_path)  # the storage would take forever
    assert -signal.SIGTERM == status, output_of(tmp_path)


# --- 4. a failing writer never blocks the measured calls --------------------------------

MANY_CALLS = 25_000  # more than the writer's queue holds (10,000)


def test_a_storage_that_fails_with_a_failing_repr_never_blocks_calls(tmp_path):
    """store() and repr() both raise: every call still returns, and flush() reports False."""
    code = f"""
        import json
        import pathlib

        import multimeter
        from multimeter.storages.base import Storage

        class Broken(Storage):
            def store(self, result):
                raise OSError("the disk is on fire")

            def __repr__(self):
                raise RuntimeError("and so is repr()")

        multimeter.configure(storage=Broken())
        from lifecycle_app import work

        calls = 0
        for i in range({MANY_CALLS}):
            work(i)
            calls += 1
        report = {{"calls": calls, "flush": multimeter.flush()}}
        pathlib.Path("report.json").write_text(json.dumps(report))
    """
    completed = run_app(tmp_path, code)
    assert 0 == completed.returncode, completed.stderr[-6000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"calls": MANY_CALLS, "flush": False} == report


def test_a_failing_log_pipeline_never_blocks_calls_and_later_results_are_stored(tmp_path):
    """The writer's own error log raises: calls go on, results after the failures are stored."""
    code = f"""
        import json
        import pathlib

        import structlog

        def explode(logger, method_name, event_dict):
            raise RuntimeError("the log pipeline is broken")

        structlog.configure(processors=[explode])

        import multimeter
        from multimeter.storages.base import Storage

        class Recovering(Storage):
            \"\"\"Fails its first 100 stores, then counts every result it stores.\"\"\"

            def __init__(self):
                self.attempts = 0
                self.stored = 0

            def store(self, result):
                self.attempts += 1
                if self.attempts <= 100:
                    raise OSError("not yet")
                self.stored += 1

        storage = Recovering()
        multimeter.configure(storage=storage)
        from lifecycle_app import work

        calls = 0
        for i in range({MANY_CALLS}):
            work(i)
            calls += 1
        flushed = multimeter.flush()
        report = {{"calls": calls, "stored": storage.stored, "flush": flushed}}
        pathlib.Path("report.json").write_text(json.dumps(report))
    """
    completed = run_app(tmp_path, code)
    assert 0 == completed.returncode, completed.stderr[-6000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"calls": MANY_CALLS, "stored": MANY_CALLS - 100, "flush": False} == report


# --- 5. os._exit ------------------------------------------------------------------------


def test_flush_before_os_exit_stores_every_call(tmp_path):
    """os._exit() skips atexit (pending results are lost); flush() first is the workaround."""
    code = """
        import os

        import multimeter
        from lifecycle_app import work_many

        work_many(2000)
        multimeter.flush()
        os._exit(0)
    """
    completed = run_app(tmp_path, code)
    assert (0, 2000) == (completed.returncode, stored_count(tmp_path)), completed.stderr
    assert [] == temporary_files(tmp_path)


# --- found by trying to break it --------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", "klass", "static"])
def test_measured_methods_got_from_the_class_pickle_and_copy_like_plain_ones(name):
    """C.method, C.classmethod and C.staticmethod round-trip through pickle and deepcopy."""
    got = getattr(lifecycle_app.Kinds, name)
    restored = pickle.loads(pickle.dumps(got))
    argument = (lifecycle_app.Kinds(), 5) if name == "plain" else (5,)
    assert got(*argument) == restored(*argument)
    assert got(*argument) == copy.deepcopy(got)(*argument)


@pytest.mark.parametrize("method", START_METHODS)
def test_pool_map_of_a_measured_staticmethod_works_and_stores_every_call(tmp_path, method):
    """Pool.map(Class.staticmethod, ...) of a measured staticmethod, as without measuring."""
    code = f"""
        import multiprocessing
        from lifecycle_app import Kinds

        if __name__ == "__main__":
            with multiprocessing.get_context({method!r}).Pool(2) as pool:
                print(sum(pool.map(Kinds.static, range(20))))
    """
    completed = run_app(tmp_path, code)
    assert (0, "570") == (completed.returncode, completed.stdout.strip()), completed.stderr
    assert 20 == stored_count(tmp_path)


@posix_only
def test_a_child_forked_from_a_thread_ends_when_that_thread_ends(tmp_path):
    """Our threads keep no process alive: a child forked from a worker thread exits."""
    code = """
        import os, sys, threading
        from lifecycle_app import work

        def fork_and_wait():
            pid = os.fork()
            if pid == 0:
                work(1)
                sys.exit(0)  # ends this thread, the child's only one of the application
            print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

        thread = threading.Thread(target=fork_and_wait)
        thread.start()
        thread.join()
    """
    completed = run_app(tmp_path, code, timeout=30)
    assert (0, "0") == (completed.returncode, completed.stdout.strip()), completed.stderr
    assert 1 == stored_count(tmp_path)


def test_an_exit_timeout_during_a_long_queue_leaves_no_temporary_file(tmp_path):
    """5,000 queued calls into one JSON file each and a 0.3 s exit timeout: some are lost
    (logged), no .tmp is left."""
    code = """
        from lifecycle_app import work

        for i in range(5000):
            work(i)
    """
    completed = run_app(tmp_path, code, MULTIMETER_EXIT_TIMEOUT="0.3", MULTIMETER_FORMAT="json")
    assert 0 == completed.returncode, completed.stderr
    assert [] == temporary_files(tmp_path)
    assert "results still pending at exit were not stored" in completed.stdout + completed.stderr


@posix_only
def test_caught_keyboard_interrupts_never_switch_measuring_off(tmp_path):
    """Real SIGINTs hitting a loop of measured calls: every later call is still stored."""
    code = """
        import json, os, signal, threading, time
        import multimeter
        from multimeter.testing import InMemoryStorage
        from lifecycle_app import work

        # Ctrl-C raises KeyboardInterrupt, whatever the test runner's process left
        # inherited (an ignored SIGINT is inherited across exec).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        storage = InMemoryStorage()
        multimeter.configure(storage=storage)

        caught = 0
        ready = False
        done = False

        def interrupt():  # the next SIGINT once the last was caught (or after 0.25 s)
            global done
            while not ready:  # not into sender.start(): the loop below catches them
                time.sleep(0.0005)
            for sent in range(40):
                waited = time.monotonic()
                while caught < sent and time.monotonic() - waited < 0.25:
                    time.sleep(0.0005)
                time.sleep(0.001 + 0.002 * (sent % 3))
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            done = True

        def loop():
            global caught
            while not done:
                try:
                    work(0)
                except KeyboardInterrupt:
                    caught += 1

        sender = threading.Thread(target=interrupt)
        sender.start()
        ready = True
        while not done:
            try:
                loop()
            except KeyboardInterrupt:  # landed between two calls
                caught += 1
        sender.join()

        @multimeter.measured(name="after")
        def after():
            return 1

        for _ in range(1000):
            after()
        multimeter.flush(30)
        print(json.dumps([caught, sum(r.identifier.startswith("after-") for r in storage.results)]))
    """
    completed = run_app(tmp_path, code)
    assert 0 == completed.returncode, completed.stderr[-3000:]
    caught, after = json.loads(completed.stdout)
    assert 1000 == after  # measuring is on, as before the interrupts
    assert 40 == caught  # every Ctrl-C reached the program (none swallowed)


@posix_only
def test_sigterm_while_other_threads_make_calls_stores_what_finished_before_it(tmp_path):
    """A worker thread in a loop, SIGTERM: -15, every call finished before it stored, no .tmp.

    Calls that start after the signal are not measured: the writer has the time left.
    """
    code = """
        import mmap, struct, sys, threading, time
        import multimeter
        from lifecycle_app import work

        multimeter.configure()  # from the main thread: installs the SIGTERM handler
        with open(sys.argv[1], "r+b") as file:
            finished = mmap.mmap(file.fileno(), 8)

        def loop():
            count = 0
            while True:
                work(count)
                count += 1
                struct.pack_into("Q", finished, 0, count)

        threading.Thread(target=loop, daemon=True).start()
        while True:
            time.sleep(1)
    """
    counter = tmp_path / "finished"
    counter.write_bytes(bytes(8))
    with started_app(tmp_path, code, str(counter), MULTIMETER_EXIT_TIMEOUT="20") as process:
        wait_until(lambda: struct.unpack("Q", counter.read_bytes())[0] > 2000, process, "calls")
        before = struct.unpack("Q", counter.read_bytes())[0]
        process.send_signal(signal.SIGTERM)
        returncode = wait_for_end(process, 60, tmp_path)
    assert -signal.SIGTERM == returncode
    assert before <= stored_count(tmp_path)
    assert [] == temporary_files(tmp_path)


@posix_only
def test_a_process_that_outlives_sigterm_measures_on_once_the_flush_is_over(tmp_path):
    """pid 1 ignores SIGTERM's default action: after the (slow) exit flush, calls are stored."""
    code = """
        import json, os, signal, sys, time
        import multimeter
        from multimeter import FileStorage, JsonFormat
        from lifecycle_app import work

        class SlowSpool(FileStorage):
            def store(self, result):
                time.sleep(0.01)
                super().store(result)

            def spool_results(self, results):  # slower than the handler waits
                time.sleep(3)
                for result in results:
                    super().store(result)

        real_kill = os.kill
        os.kill = lambda pid, sig: None if sig == signal.SIGTERM else real_kill(pid, sig)
        multimeter.configure(storage=SlowSpool("results", JsonFormat()))
        interval = sys.getswitchinterval()
        for i in range(200):
            work(i)
        real_kill(os.getpid(), signal.SIGTERM)  # as pid 1 would see it: it lives on
        time.sleep(4)  # the flush thread finishes its slow spool meanwhile
        for i in range(50):
            work(i)
        print(json.dumps([multimeter.flush(60), sys.getswitchinterval() == interval]))
    """
    completed = run_app(tmp_path, code, MULTIMETER_EXIT_TIMEOUT="1")
    assert 0 == completed.returncode, completed.stderr[-3000:]
    assert [True, True] == json.loads(completed.stdout.strip().splitlines()[-1])
    assert 250 == stored_count(tmp_path)
    assert [] == temporary_files(tmp_path)


# --- signals that CPython's main thread misses, SIGHUP (issue 22) ---------------------


@posix_only
def test_a_sigterm_the_main_thread_misses_still_stores_and_ends_the_process(tmp_path):
    """CPython may run a SIGTERM's C handler without waking the main thread from a
    lock (a Pool worker in its queue's semaphore): the handler still runs, stores, and
    the process dies of SIGTERM instead of waiting forever."""
    code = """
        import multiprocessing
        import signal
        import threading
        import time

        from lifecycle_app import work

        work(1)  # measuring has begun: multimeter's SIGTERM handler is in place
        lock = multiprocessing.Lock()
        lock.acquire()

        def a_thread_of_the_application():
            time.sleep(0.3)
            # The signal lands in this thread: CPython sets its flag and writes the
            # wakeup byte, but the main thread sleeps on in sem_wait (as when the
            # signal comes just before it blocks and another thread holds the GIL).
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            time.sleep(120)

        threading.Thread(target=a_thread_of_the_application, daemon=True).start()
        lock.acquire()  # blocks for good in sem_wait
    """
    completed = run_app(tmp_path, code, timeout=30)
    assert -signal.SIGTERM == completed.returncode, completed.stderr
    assert 1 == stored_count(tmp_path)


POOLS = """
    import multiprocessing
    import sys
    import time

    from lifecycle_app import work

    if __name__ == "__main__":
        work(-1)  # the parent measures too: its workers inherit its SIGTERM handler
        context = multiprocessing.get_context(sys.argv[1])
        slowest = 0.0
        for _ in range(int(sys.argv[2])):
            started = time.monotonic()
            with context.Pool(4) as pool:
                pool.map(work, range(40))
            slowest = max(slowest, time.monotonic() - started)
        print("done", round(slowest))
"""


def _pools(tmp_path: pathlib.Path, method: str, pools: int, under_run: bool) -> None:
    completed = run_app(
        tmp_path,
        POOLS,
        args=(method, str(pools)),
        under_run=under_run,
        timeout=HANG + 20 * pools,
    )
    done, slowest = completed.stdout.split()
    assert (0, "done") == (completed.returncode, done), completed.stderr
    # A worker that waits for a lock the code its SIGTERM interrupted holds is ended
    # only by the exit timeout (30 s here, and a second): no pool may take that long.
    assert int(slowest) < int(EXIT_TIMEOUT) - 5
    stored = stored_count(tmp_path) - int(under_run)  # multimeter run stores the run too
    assert 40 * pools + 1 == stored, completed.stderr[-4000:]


@posix_only
@pytest.mark.parametrize("under_run", [False, True], ids=["program", "multimeter run"])
@pytest.mark.parametrize(
    ("method", "pools"), [("fork", 12), ("forkserver", 3), ("spawn", 2)], ids=str
)
def test_with_pool_exits_in_a_row_never_hang_and_store_every_call(
    tmp_path, method, pools, under_run
):
    """`with Pool(4)` again and again: each pool's terminate() ends its workers at once
    (a worker's SIGTERM never waits on the pool), and every call they finished is stored."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    _pools(tmp_path, method, pools, under_run)


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("under_run", [False, True], ids=["program", "multimeter run"])
@pytest.mark.parametrize(
    ("method", "pools"), [("fork", 60), ("forkserver", 15), ("spawn", 6)], ids=str
)
def test_hundreds_of_pool_exits_never_hang(tmp_path, method, pools, under_run):
    """The stress version: 162 pool exits, 648 worker terminations, in all."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    _pools(tmp_path, method, pools, under_run)


@posix_only
def test_an_ignored_sighup_stays_ignored(tmp_path):
    """Under nohup (SIGHUP ignored) multimeter installs nothing for SIGHUP."""
    code = """
        import signal
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        from lifecycle_app import work
        work(0)
        print("ignored" if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else "replaced")
    """
    completed = run_app(tmp_path, code)
    assert (0, "ignored") == (completed.returncode, completed.stdout.strip()), completed.stderr


SIGNAL_STORM = """
    import signal
    import sys
    import time

    import multimeter

    @multimeter.measured
    def in_the_handler(i):
        return i

    @multimeter.measured
    def in_the_program(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    handled = 0

    def on_alarm(signum, frame):
        global handled
        handled += 1
        in_the_handler(handled)

    interval = float(sys.argv[1])
    in_the_program(0)  # the configuration is built (the storages imported) first
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    calls = 0
    end = time.monotonic() + 2
    while time.monotonic() < end:
        # short calls (packed) and calls long enough to be promoted to sessions
        in_the_program(0.0005 if calls % 3 else 0.00001)
        calls += 1
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    print(calls, handled)
"""


@posix_only
@pytest.mark.parametrize("interval", [0.001, 0.0001])
def test_a_signal_storm_whose_handler_makes_measured_calls_never_hangs_and_stores_them(
    tmp_path, interval
):
    """A SIGALRM every 1 ms or 0.1 ms whose handler calls a measured function (a timeout,
    a heartbeat): the program never waits on multimeter's locks, each call is stored
    once, and the handler's calls are stored too (all but those made while the
    interrupted code held the sampler's lock, a rare moment; a call made while the first
    call builds the configuration is not measured either: the program makes one first)."""
    for _ in range(3):
        completed = _run_storm(tmp_path, interval)
        calls, handled = map(int, completed.stdout.split())
        identifiers = [r.identifier for r in multimeter.load_results(tmp_path / "results")]
        assert len(identifiers) == len(set(identifiers)), "a call was stored twice"
        in_program = sum(i.startswith("in_the_program") for i in identifiers)
        in_handler = sum(i.startswith("in_the_handler") for i in identifiers)
        assert calls + 1 == in_program
        assert handled * 0.99 <= in_handler <= handled, f"{in_handler} of {handled} stored"
        for path in (tmp_path / "results").iterdir():
            path.unlink()


def _run_storm(tmp_path: pathlib.Path, interval: float) -> subprocess.CompletedProcess[str]:
    completed = run_app(
        tmp_path, SIGNAL_STORM, args=(str(interval),), timeout=45, MULTIMETER_CYCLE_TIME="0.001"
    )
    assert 0 == completed.returncode, completed.stderr
    return completed


FORKS = """
    import os
    import signal
    import sys
    import threading
    import time

    from lifecycle_app import work

    work(0)  # multimeter's SIGTERM handler is in place, and inherited by each child

    def fork_and_terminate(statuses):
        pid = os.fork()
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        os.kill(pid, signal.SIGTERM)  # at once, maybe before the child is set up
        statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

    statuses = []
    for _ in range(30):
        if sys.argv[1] == "thread":
            thread = threading.Thread(target=fork_and_terminate, args=(statuses,))
            thread.start()
            thread.join()
        else:
            fork_and_terminate(statuses)
    print(sorted(set(statuses)))
"""


@posix_only
@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_child_terminated_at_once_dies_of_it_and_its_parent_lives_on(tmp_path, where):
    """A child forked (from the main thread or another one) that gets SIGTERM at once
    dies of it, as without multimeter; the parent is never hit by its child's signal."""
    completed = run_app(tmp_path, FORKS, args=(where,), timeout=HANG)
    assert (0, "[-15]") == (completed.returncode, completed.stdout.strip()), completed.stderr


CONCURRENT_FORKS = """
    import os
    import threading

    from lifecycle_app import work

    work(0)  # multimeter's SIGTERM and SIGHUP handler is in place

    def blocked_signals():
        with open("/proc/thread-self/status") as status:
            return next(line.split()[1] for line in status if line.startswith("SigBlk"))

    def forks(children):
        for _ in range(100):
            pid = os.fork()
            if pid == 0:
                os._exit(0 if int(blocked_signals(), 16) == 0 else 7)
            children.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

    children = []
    threads = [threading.Thread(target=forks, args=(children,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    forks(children)
    for thread in threads:
        thread.join()
    print(sorted(set(children)), int(blocked_signals(), 16))
"""


@posix_only
@pytest.mark.skipif(not os.path.exists("/proc/thread-self/status"), reason="Linux /proc")
def test_threads_forking_at_once_leave_no_signal_blocked(tmp_path):
    """Four threads fork at the same time: the parent's threads and every child end with
    the signal mask they had (a shared saved mask left SIGTERM blocked for good)."""
    completed = run_app(tmp_path, CONCURRENT_FORKS)
    assert (0, "[0] 0") == (completed.returncode, completed.stdout.strip()), completed.stderr
