"""``multimeter run``: a script, a module or any command, measured as one run.

Every test runs the real command line in a subprocess, as a user would.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import time
import zipfile

import pytest

from multimeter import load_results
from tests._programs import environment, run_python

RUN = [sys.executable, "-m", "multimeter", "run"]

WHO_AM_I = textwrap.dedent(
    """
    "The docstring."
    import sys
    print("argv", sys.argv)
    print("file", __file__)
    print("path0", sys.path[0])
    print("name", __name__, "package", __package__, "spec", __spec__ is None)
    print("loader", type(__loader__).__name__)
    print("main", sys.modules["__main__"].__dict__ is globals())
    print("builtins", type(__builtins__).__name__, __doc__)
    sys.stdout.buffer.write(bytes(range(256)))
    """
)


def _environment(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    return environment(MULTIMETER_DIR=str(tmp_path / "results"), **extra)


def _run(
    tmp_path: pathlib.Path, *arguments: str, cwd: pathlib.Path | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return _plain(tmp_path, *RUN[1:], *arguments, cwd=cwd, **env)


def _plain(
    tmp_path: pathlib.Path, *arguments: str, cwd: pathlib.Path | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return run_python(
        *arguments,
        cwd=cwd or tmp_path,
        env=_environment(tmp_path, **env),
        timeout=120,
        text=False,
    )


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _runs(tmp_path: pathlib.Path, directory: str = "results") -> list:
    """The run results (not the results of measured calls) under ``directory``."""
    return [r for r in load_results(tmp_path / directory) if "exit_status" in r.meta_data]


def _summary(completed: subprocess.CompletedProcess[bytes]) -> str:
    text = completed.stderr.decode()
    assert "multimeter run: " in text, text
    return text[text.rindex("multimeter run: ") :]


# -- the program sees what plain Python shows it ----------------------------------------


def test_a_script_sees_argv_file_path_and_name_as_under_plain_python(tmp_path):
    """sys.argv, __file__, sys.path[0], __name__ and stdout, byte for byte."""
    _write(tmp_path / "tools" / "who.py", WHO_AM_I)
    (tmp_path / "elsewhere").mkdir()
    arguments = ("../tools/who.py", "--flag", "-m", "x y")
    plain = _plain(tmp_path, *arguments, cwd=tmp_path / "elsewhere")
    measured = _run(tmp_path, *arguments, cwd=tmp_path / "elsewhere")
    assert 0 == plain.returncode == measured.returncode
    assert plain.stdout == measured.stdout
    assert b"path0 " + str(tmp_path / "tools").encode() in measured.stdout
    assert b"\x1b" not in measured.stderr  # no terminal: no status line, no escape codes


def test_a_module_runs_as_python_m_runs_it(tmp_path):
    """-m: sys.argv[0] is the module's file, sys.path[0] the current directory."""
    _write(tmp_path / "pkg" / "__init__.py", "")
    _write(tmp_path / "pkg" / "who.py", WHO_AM_I)
    plain = _plain(tmp_path, "-m", "pkg.who", "--tag", "a=b", "-m", "x")
    measured = _run(tmp_path, "-m", "pkg.who", "--tag", "a=b", "-m", "x")
    assert 0 == plain.returncode == measured.returncode
    assert plain.stdout == measured.stdout
    assert "pkg.who exited with status 0" in _summary(measured)


def test_a_package_runs_its_main_module(tmp_path):
    _write(tmp_path / "app" / "__init__.py", "")
    _write(tmp_path / "app" / "__main__.py", WHO_AM_I)
    plain = _plain(tmp_path, "-m", "app")
    measured = _run(tmp_path, "-m", "app")
    assert plain.stdout == measured.stdout
    assert [run.identifier.startswith("app-") for run in _runs(tmp_path)] == [True]


@pytest.mark.parametrize("target", ["app", "./app/", "app.pyz"])
def test_a_directory_or_zip_application_runs_its_main_as_python_runs_it(tmp_path, target):
    """``python app/`` and ``python app.pyz`` run their ``__main__.py``, which imports
    its neighbours: sys.path[0] is the directory or the zip file."""
    _write(tmp_path / "app" / "__main__.py", WHO_AM_I + "import helper\nprint(helper.X)\n")
    _write(tmp_path / "app" / "helper.py", "X = 42\n")
    with zipfile.ZipFile(tmp_path / "app.pyz", "w") as archive:
        for name in ("__main__.py", "helper.py"):
            archive.write(tmp_path / "app" / name, name)
    plain = _plain(tmp_path, target, "--flag")
    measured = _run(tmp_path, target, "--flag")
    assert 0 == plain.returncode == measured.returncode, measured.stderr
    assert plain.stdout == measured.stdout
    assert measured.stdout.endswith(b"42\n")
    assert "app exited with status 0" in _summary(measured)


def test_a_directory_without_main_is_one_line_as_python_says_it(tmp_path):
    (tmp_path / "lib").mkdir()
    measured = _run(tmp_path, "lib")
    assert 1 == measured.returncode == _plain(tmp_path, "lib").returncode
    assert ["multimeter run: can't find '__main__' module in 'lib'"] == (
        measured.stderr.decode().splitlines()
    )


def test_functions_of_the_script_pickle_into_a_multiprocessing_pool(tmp_path):
    """fork and spawn workers find the script's functions, as under plain Python."""
    script = _write(
        tmp_path / "pool.py",
        """
        import multiprocessing
        import multimeter

        @multimeter.measured
        def square(n):
            return n * n

        if __name__ == "__main__":
            for method in ("fork", "spawn"):
                with multiprocessing.get_context(method).Pool(2) as pool:
                    print(method, sum(pool.map(square, range(10))))
        """,
    )
    measured = _run(tmp_path, script.name)
    assert 0 == measured.returncode, measured.stderr.decode()
    assert b"fork 285\nspawn 285\n" == measured.stdout
    # Pool.terminate() ends the fork workers with SIGTERM: they store their calls and
    # die; the run (its summary too) is the parent's alone.
    assert 1 == measured.stderr.count(b"multimeter run: pool"), measured.stderr.decode()
    (run,) = _runs(tmp_path)
    calls = [r for r in load_results(tmp_path / "results") if r.identifier.startswith("square-")]
    assert 20 == len(calls)
    assert {run.meta_data["run"]} == {call.meta_data["run"] for call in calls}


# -- exit statuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("print('fine')", 0),
        ("import sys; sys.exit(3)", 3),
        ("import sys; sys.exit('it went wrong')", 1),
        ("import sys; sys.exit(None)", 0),
        ("raise SystemExit(258)", 2),
        ("def f():\n    return 1 / 0\nf()", 1),
        ("def broken(:\n    pass", 1),
    ],
)
def test_the_exit_status_and_stderr_are_the_scripts_own(tmp_path, body, status):
    """Also the traceback or message Python prints, then the summary below it."""
    script = _write(tmp_path / "job.py", body + "\n")
    plain = _plain(tmp_path, script.name)
    measured = _run(tmp_path, script.name)
    assert status == plain.returncode == measured.returncode
    assert plain.stdout == measured.stdout
    own = measured.stderr.decode()
    assert plain.stderr.decode() == own[: own.index("multimeter run: ")]
    (run,) = _runs(tmp_path)
    assert str(status) == run.meta_data["exit_status"]


def test_a_script_that_raises_is_stored_with_outcome_raise(tmp_path):
    script = _write(
        tmp_path / "job.py",
        """
        class Broken(Exception):
            pass

        raise Broken("no")
        """,
    )
    measured = _run(tmp_path, script.name)
    assert 1 == measured.returncode
    assert "raised Broken (status 1)" in _summary(measured)
    assert "multimeter" not in measured.stderr.decode().split("multimeter run: ")[0]
    (run,) = _runs(tmp_path)
    assert ("raise", "Broken", "__main__") == (
        run.meta_data["outcome"],
        run.meta_data["exception_type"],
        run.meta_data["exception_module"],
    )


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGKILL, 137), (signal.SIGTERM, 143)])
def test_a_command_killed_by_a_signal_exits_with_128_plus_n(tmp_path, signum, status):
    measured = _run(tmp_path, "--", "sh", "-c", f"kill -{int(signum)} $$")
    assert status == measured.returncode
    assert f"killed by {signum.name}" in _summary(measured)
    (run,) = _runs(tmp_path)
    assert ("signal", signum.name, str(status)) == (
        run.meta_data["outcome"],
        run.meta_data["signal"],
        run.meta_data["exit_status"],
    )


def test_a_command_keeps_its_exit_status_and_stdout(tmp_path):
    measured = _run(tmp_path, "--", "sh", "-c", "printf 'a\\0b'; exit 5")
    assert 5 == measured.returncode
    assert b"a\0b" == measured.stdout
    assert "sh exited with status 5" in _summary(measured)


# -- signals ----------------------------------------------------------------------------

WAITING_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    def stop(signum, frame):
        print("child got", signal.Signals(signum).name, flush=True)
        sys.exit(7)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _start(tmp_path: pathlib.Path, *arguments: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*RUN, *arguments],
        cwd=tmp_path,
        env=_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a job of a shell
    )


def _wait_for(process: subprocess.Popen[bytes], text: bytes) -> bytes:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert text in line, (line, process.stderr.read() if process.stderr else b"")
    return line


def test_sigterm_to_multimeter_goes_to_the_command_and_the_run_is_stored(tmp_path):
    _write(tmp_path / "child.py", WAITING_CHILD)
    process = _start(tmp_path, "--", sys.executable, "child.py")
    _wait_for(process, b"ready")
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert 7 == process.returncode
    assert b"child got SIGTERM\n" == stdout
    (run,) = _runs(tmp_path)
    assert ("ok", "7") == (run.meta_data["outcome"], run.meta_data["exit_status"])


def test_ctrl_c_reaches_the_command_and_the_run_is_stored(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the child dies of it."""
    process = _start(tmp_path, "--", sys.executable, "-c", "print('ready', flush=True); "
                     "import time; time.sleep(60)")  # fmt: skip
    _wait_for(process, b"ready")
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert 130 == process.returncode
    assert b"KeyboardInterrupt" in stderr
    (run,) = _runs(tmp_path)
    assert "130" == run.meta_data["exit_status"]


SLOW_SCRIPT = textwrap.dedent(
    """
    import time
    import multimeter

    @multimeter.measured
    def step(n):
        return n

    step(1)
    print("ready", flush=True)
    while True:
        step(2)
        time.sleep(0.01)
    """
)


def test_ctrl_c_in_a_script_raises_keyboardinterrupt_there_and_the_run_is_stored(tmp_path):
    """The script's traceback, then the process dies of SIGINT as plain Python does
    (a shell loop stops), after the run and the calls are stored."""
    _write(tmp_path / "slow.py", SLOW_SCRIPT)
    process = _start(tmp_path, "slow.py")
    _wait_for(process, b"ready")
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert -signal.SIGINT == process.returncode
    steps = [r for r in load_results(tmp_path / "results") if r.identifier.startswith("step-")]
    assert len(steps) >= 1
    assert b"Traceback (most recent call last)" in stderr
    assert b"\nKeyboardInterrupt\n" in stderr
    (run,) = _runs(tmp_path)
    assert ("raise", "KeyboardInterrupt") == (
        run.meta_data["outcome"],
        run.meta_data["exception_type"],
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_to_a_script_stores_the_run_and_its_calls_then_dies_of_sigterm(tmp_path, signum):
    """SIGHUP too: the terminal or the ssh connection went away."""
    _write(tmp_path / "slow.py", SLOW_SCRIPT)
    process = _start(tmp_path, "slow.py")
    _wait_for(process, b"ready")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert -signum == process.returncode
    assert f"killed by {signum.name}".encode() in stderr
    (run,) = _runs(tmp_path)
    assert "signal" == run.meta_data["outcome"]
    steps = [r for r in load_results(tmp_path / "results") if r.identifier.startswith("step-")]
    assert len(steps) >= 1
    assert "step:enter" in [mark.label for mark in run.marks]


# -- what is measured -------------------------------------------------------------------


def test_a_quick_commands_peak_memory_is_not_multimeters_own(tmp_path):
    """Linux counts in a child's ``max_rss`` the memory of multimeter it was forked
    from: a command too quick to be sampled has no peak memory to show, not that."""
    measured = _run(tmp_path, "--", "true")
    assert 0 == measured.returncode
    assert "peak memory n/a;" in _summary(measured)


def test_a_command_is_measured_as_a_process_tree(tmp_path):
    """The CPU of a pipeline's processes is counted: compare with what each reports."""
    _write(
        tmp_path / "burn.py",
        """
        import sys, time
        end = time.process_time() + float(sys.argv[1])
        while time.process_time() < end:
            pass
        print(time.process_time(), file=sys.stderr)
        """,
    )
    python = sys.executable
    pipeline = f"{python} burn.py 1.5 | {python} burn.py 1.5"
    measured = _run(tmp_path, "--cycle-time", "0.2", "--", "sh", "-c", pipeline)
    assert 0 == measured.returncode
    own = sum(float(x) for x in re.findall(rb"^(\d+\.\d+)$", measured.stderr, re.MULTILINE))
    assert own > 2.9
    (run,) = _runs(tmp_path)
    previous = run.start
    tree = 0.0
    for point in run.points:
        seconds = (point.datetime - previous).total_seconds()
        rates = point.values.get("tree.cpu_user", 0.0) + point.values.get("tree.cpu_system", 0.0)
        tree += rates * seconds
        previous = point.datetime
    assert 0.75 * own <= tree <= 1.25 * own
    assert max(v for v in run.values("tree.processes") if v is not None) >= 3
    found = re.search(r"CPU (\d+\.\d+) s user, (\d+\.\d+) s system", _summary(measured))
    assert found is not None
    assert 0.9 * own <= float(found[1]) + float(found[2]) <= 1.3 * own


def test_measured_calls_are_stored_and_are_marks_of_the_run(tmp_path):
    """Nested calls and calls in threads: the run's timeline shows the phases."""
    script = _write(
        tmp_path / "etl.py",
        """
        import threading
        import multimeter

        @multimeter.measured
        def extract():
            return list(range(1000))

        @multimeter.measured
        def transform(rows):
            return [r * 2 for r in rows]

        @multimeter.measured
        def pipeline():
            rows = extract()
            worker = threading.Thread(target=transform, args=(rows,))
            worker.start()
            worker.join()

        pipeline()
        """,
    )
    measured = _run(tmp_path, script.name)
    assert 0 == measured.returncode, measured.stderr.decode()
    (run,) = _runs(tmp_path)
    labels = [mark.label for mark in run.marks]
    assert [
        "pipeline:enter",
        "extract:enter",
        "extract:exit",
        "transform:enter",
        "transform:exit",
        "pipeline:exit",
    ] == labels
    times = [mark.datetime for mark in run.marks]
    assert times == sorted(times)
    assert run.start <= times[0] and times[-1] <= run.end
    calls = {r.identifier.split("-")[0] for r in load_results(tmp_path / "results")} - {"etl"}
    assert {"pipeline", "extract", "transform"} == calls
    assert "6 marks" in _summary(measured)


def test_options_set_the_run_and_what_the_program_measures(tmp_path):
    """--tag, --cycle-time, --dir, --format and MULTIMETER_RUN."""
    script = _write(
        tmp_path / "job.py",
        """
        import os, time
        import multimeter

        @multimeter.measured
        def work():
            time.sleep(0.3)

        work()
        print(os.environ["MULTIMETER_CYCLE_TIME"], os.environ["MULTIMETER_TAGS"])
        """,
    )
    measured = _run(
        tmp_path,
        "--tag",
        "stage=etl",
        "--tag",
        "build=a=b",
        "--cycle-time",
        "0.05",
        "--dir",
        "out",
        "--format",
        "json",
        "--probes",
        "resource,gc",
        script.name,
        MULTIMETER_RUN="ci-42",
        MULTIMETER_TAGS="team=data",
    )
    assert 0 == measured.returncode, measured.stderr.decode()
    assert b"0.05 team=data,stage=etl,build=a=b\n" == measured.stdout
    results = list(load_results(tmp_path / "out"))
    (run,) = _runs(tmp_path, "out")
    assert "job-ci-42" == run.identifier
    assert {"team": "data", "stage": "etl", "build": "a=b"} == run.tags
    assert {"ci-42"} == {r.meta_data["run"] for r in results}
    assert all(r.tags == run.tags for r in results)
    assert len(run.points) >= 5  # a point every 0.05 s
    for result in results:
        keys = {measure.key for measure in result.schema.measures}
        assert {"process.cpu_user", "python.gc_collections_gen0"} <= keys
    assert str(tmp_path / "out" / "job-ci-42.json") in _summary(measured)
    (tmp_path / "out" / "job-ci-42.json").stat()


def test_a_command_and_the_python_programs_it_starts_share_the_run(tmp_path):
    app = _write(
        tmp_path / "app.py",
        """
        import multimeter

        @multimeter.measured
        def work():
            return 1

        work()
        """,
    )
    python = sys.executable
    measured = _run(tmp_path, "--", "sh", "-c", f"{python} {app} && {python} {app}")
    assert 0 == measured.returncode, measured.stderr.decode()
    results = list(load_results(tmp_path / "results"))
    (run,) = _runs(tmp_path)
    assert 3 == len(results)
    calls = [r for r in results if "exit_status" not in r.meta_data]
    assert 2 == len({call.meta_data["pid"] for call in calls})
    assert {run.meta_data["run"]} == {r.meta_data["run"] for r in results}


def test_a_relative_dir_holds_what_programs_measure_wherever_they_run(tmp_path):
    """``--dir out`` is ``./out`` where multimeter was started: for a script that
    changes its directory and for the programs a command starts elsewhere."""
    _write(
        tmp_path / "sub" / "job.py",
        """
        import os, multimeter

        @multimeter.measured
        def step():
            return 1

        step()
        os.chdir(os.path.dirname(os.path.abspath(__file__)))
        step()
        """,
    )
    script = _run(tmp_path, "--dir", "out", "sub/job.py")
    command = _run(tmp_path, "--dir", "out", "--", "sh", "-c", f"cd sub && {sys.executable} job.py")
    assert 0 == script.returncode == command.returncode, command.stderr
    assert not (tmp_path / "sub" / "out").exists()
    results = list(load_results(tmp_path / "out"))
    assert 2 == len([r for r in results if "exit_status" in r.meta_data])
    assert 4 == len([r for r in results if r.meta_data.get("function") == "step"])


def test_the_environment_chooses_the_storage_as_for_configure(tmp_path):
    script = _write(tmp_path / "job.py", "print('hi')\n")
    measured = _run(tmp_path, script.name, MULTIMETER_FORMAT="line")
    assert 0 == measured.returncode
    (path,) = (tmp_path / "results").glob("job-*.line")
    assert str(path) in _summary(measured)
    nothing = _run(tmp_path, "--storage", "none", script.name)
    assert "not stored" in _summary(nothing)


def test_a_run_identifier_chosen_again_gets_a_result_file_of_its_own(tmp_path):
    script = _write(tmp_path / "job.py", "print('out')\n")
    for _ in range(2):
        measured = _run(tmp_path, "--format", "json", script.name, MULTIMETER_RUN="ci-7")
        assert b"out\n" == measured.stdout
    assert ["job-ci-7-2.json", "job-ci-7.json"] == sorted(
        path.name for path in (tmp_path / "results").iterdir()
    )


def test_influxdb_away_keeps_the_run_in_the_spool_and_stdout_the_programs(tmp_path):
    """multimeter's own log lines about storing the run go to stderr."""
    script = _write(tmp_path / "job.py", "print('out')\n")
    with socket.socket() as unused:  # a loopback port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    measured = _run(
        tmp_path,
        "--storage",
        "influxdb",
        script.name,
        MULTIMETER_INFLUXDB_URL=f"http://127.0.0.1:{port}",
        MULTIMETER_INFLUXDB_TOKEN="token",
    )
    assert 0 == measured.returncode
    assert b"out\n" == measured.stdout
    assert "InfluxDB unreachable" in measured.stderr.decode()
    assert f"kept in the spool {tmp_path / 'results' / 'spool'}" in _summary(measured)
    assert list((tmp_path / "results" / "spool").glob("*.line"))


def test_each_run_has_its_own_run_identifier(tmp_path):
    script = _write(tmp_path / "job.py", "pass\n")
    _run(tmp_path, script.name)
    _run(tmp_path, script.name)
    runs = _runs(tmp_path)
    assert 2 == len({run.meta_data["run"] for run in runs})


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (("missing.py",), 2, "can't open file 'missing.py'"),
        (("-m", "no_such_module"), 1, "no module named no_such_module"),
        (("--", "no-such-command-here"), 127, "command not found: no-such-command-here"),
        (("--", "./job.py"), 126, "permission denied: ./job.py"),
        (("--", "./sub"), 126, "cannot execute ./sub: it is a directory"),
        (("--", "./shebang"), 127, "cannot execute ./shebang: required file not found"),
        (("--", ""), 127, "command not found: ''"),
        (("--cycle-time", "fast", "job.py"), 2, "--cycle-time='fast' is not valid"),
        (("--probes", "resource,cpu", "job.py"), 2, "unknown 'cpu'"),
        (("--format", "xml", "job.py"), 2, "--format='xml' is not valid"),
        (("--storage", "s3", "job.py"), 2, "--storage='s3' is not valid"),
        (("--tag", "novalue", "job.py"), 2, "--tag 'novalue' is not valid"),
        (("--probes", "tracemalloc", "--", "true"), 2, "measures the Python interpreter"),
        (("--",), 2, "no command after --"),
        (("-m",), 2, "-m needs a module name"),
        ((), 2, "nothing to run"),
    ],
)
def test_bad_input_is_one_line_naming_it(tmp_path, arguments, status, message):
    _write(tmp_path / "job.py", "print('never')\n")  # not executable
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "shebang", "#!/no/such/interpreter\necho never\n").chmod(0o755)
    measured = _run(tmp_path, *arguments)
    assert status == measured.returncode
    lines = measured.stderr.decode().splitlines()
    assert 1 == len(lines), lines
    assert lines[0].startswith("multimeter run: ")
    assert message in lines[0]
    assert b"" == measured.stdout
    assert not (tmp_path / "results").exists()


def test_a_bad_environment_variable_is_one_line_naming_it(tmp_path):
    _write(tmp_path / "job.py", "print('never')\n")
    measured = _run(tmp_path, "job.py", MULTIMETER_EXIT_TIMEOUT="soon")
    assert 2 == measured.returncode
    assert [
        "multimeter run: MULTIMETER_EXIT_TIMEOUT='soon' is not valid; allowed: a number of"
        " seconds > 0"
    ] == measured.stderr.decode().splitlines()


# -- the status line --------------------------------------------------------------------


def _on_a_terminal(
    tmp_path: pathlib.Path, *arguments: str, rows: int = 10, columns: int = 70
) -> tuple[int, bytes]:
    """Run on a pseudo-terminal (stdin, stdout and stderr); returns (status, all output)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(
        [*RUN, *arguments],
        cwd=tmp_path,
        env=_environment(tmp_path, TERM="xterm"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=60), output


PRINTER = textwrap.dedent(
    """
    import sys, time
    for i in range(25):
        print(f"line {i:02d} of the program", flush=True)
        time.sleep(0.08)
    sys.stdout.write("no newline yet")
    sys.stdout.flush()
    time.sleep(0.7)
    print(" - now")
    """
)

#: What the status line writes: the setup, each redraw (saved and restored cursor)
#: and the teardown.
STATUS_CODES = re.compile(rb"\r?\n\x1b\[1A\x1b7\x1b\[1;\d+r\x1b8|\x1b7.*?\x1b8", re.DOTALL)


def test_on_a_terminal_a_status_line_is_drawn_apart_from_the_programs_output(tmp_path):
    """Every redraw is one saved-and-restored block on the bottom row: without those
    blocks, the bytes are exactly the program's and the summary."""
    _write(tmp_path / "printer.py", PRINTER)
    status, output = _on_a_terminal(tmp_path, "printer.py")
    assert 0 == status
    draws = [block for block in STATUS_CODES.findall(output) if b"CPU" in block]
    assert len(draws) >= 2, output
    assert all(b"\x1b[10;1H" in block and b"memory" in block for block in draws)
    assert b"\x1b[1;9r" in output  # the program scrolls in rows 1 to 9
    program = b"".join(f"line {i:02d} of the program\r\n".encode() for i in range(25))
    program += b"no newline yet - now\r\n"
    remaining = STATUS_CODES.sub(b"", output)
    assert remaining.startswith(program), remaining
    assert remaining[len(program) :].startswith(b"multimeter run: printer exited with status 0")
    assert b"\x1b" not in remaining


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_on_a_terminal_the_program_output_is_never_written_over(tmp_path):
    """What a user sees (tmux renders the terminal): every line of the program intact,
    the status line on the bottom row while it runs, gone at the end."""
    _write(tmp_path / "printer.py", PRINTER)
    env = _environment(tmp_path)
    command = " ".join([*RUN, "printer.py"])
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-x",
            "60",
            "-y",
            "12",
            f"cd {tmp_path} && {command}; sleep 30",
        ],
        env=env,
        check=True,
    )
    try:
        seen = []
        for _ in range(400):  # up to 40 s on a busy machine
            time.sleep(0.1)
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=True
            ).stdout
            seen.append(screen)
            if "result:" in screen:
                break
        during = [s for s in seen if "multimeter: " in s]
        assert during, seen
        for screen in seen:
            for line in screen.splitlines():
                if line.startswith("line "):
                    assert re.fullmatch(r"line \d\d of the program", line), screen
        rows = screen.splitlines()
        assert any(row == "no newline yet - now" for row in rows), screen
        assert "multimeter: " not in screen
        assert rows[rows.index("no newline yet - now") + 1].startswith(
            "multimeter run: printer exited with status 0"
        )
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)


def test_without_a_terminal_or_with_no_status_nothing_is_drawn(tmp_path):
    _write(tmp_path / "printer.py", PRINTER)
    status, output = _on_a_terminal(tmp_path, "--no-status", "printer.py")
    assert 0 == status
    assert b"\x1b" not in output
    piped = _run(tmp_path, "printer.py")
    assert b"\x1b" not in piped.stderr + piped.stdout


def test_control_characters_in_the_summary_are_shown_escaped(tmp_path):
    """A script named ``job<newline><ESC>[2J.py``: three summary lines, no escape code."""
    _write(tmp_path / "job\n\x1b[2J.py", "print('done')\n")
    measured = _run(tmp_path, "job\n\x1b[2J.py")
    assert 0 == measured.returncode, measured.stderr.decode()
    lines = _summary(measured).splitlines()
    assert 3 == len(lines), lines
    assert lines[0].startswith("multimeter run: job\\n\\x1b[2J exited with status 0 after ")
    assert b"\x1b" not in measured.stderr
