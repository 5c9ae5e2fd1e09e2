"""Where multimeter's own log lines go: never on stdout.

Until the application configures structlog, multimeter logs through the standard
library's ``logging`` logger ``multimeter``: the application's logging set-up decides,
and without one Python's last-resort handler writes warnings and errors to stderr.
Once the application has configured structlog, the lines follow that configuration.
"""

from __future__ import annotations

import json
import pathlib

from tests import _programs

# A program that writes data on stdout while multimeter has plenty to complain about:
# its storage cannot write (the results directory lies under a file), and instrument()
# skips a function that reads its caller's frame.
PROGRAM = """
import os, sys, pathlib

blocker = pathlib.Path(sys.argv[1])
blocker.write_text("a file, not a directory")
measuring = sys.argv[2] == "measured"

helpers = pathlib.Path(sys.argv[3])
helpers.mkdir(exist_ok=True)
(helpers / "framey.py").write_text(
    "import sys\\n"
    "def caller():\\n"
    "    return sys._getframe(1).f_code.co_name\\n"
    "def double(x):\\n"
    "    return 2 * x\\n"
)
sys.path.insert(0, str(helpers))
import framey

if measuring:
    import multimeter
    from multimeter import FileStorage, JsonFormat

    multimeter.configure(storage=FileStorage(blocker / "results", JsonFormat()))
    multimeter.instrument(framey)

    @multimeter.measured
    def row(i):
        return f"{i},{framey.double(i)}"
else:
    def row(i):
        return f"{i},{framey.double(i)}"

print("i,double")
for i in range(200):
    print(row(i))
print("caller", framey.caller())
"""


def _run(tmp_path: pathlib.Path, mode: str, **settings: str) -> tuple[bytes, str]:
    script = tmp_path / "job.py"
    script.write_text(PROGRAM)
    completed = _programs.run_python(
        script,
        tmp_path / f"blocker-{mode}",
        mode,
        tmp_path / "helpers",
        cwd=tmp_path,
        env=_programs.environment(**settings),
        text=False,
        check=True,
    )
    return completed.stdout, completed.stderr.decode()


def test_stdout_is_byte_identical_with_and_without_multimeter_while_it_logs(tmp_path):
    """``python job.py > out.csv`` gets the program's rows and nothing else, although the
    storage fails on every result and instrument() skips a function: those lines go to
    stderr (the CSV got ``[error] storing the result failed`` lines)."""
    plain, _ = _run(tmp_path, "plain")
    measured, errors = _run(tmp_path, "measured")
    assert plain == measured
    assert plain.startswith(b"i,double\n0,0\n") and b"caller <module>" in plain
    assert "storing the result failed" in errors  # an error: Python's last resort shows it
    assert "instrument skipped" not in errors  # info: below the last resort's level


def test_log_lines_follow_the_applications_logging_setup(tmp_path):
    """An application that configures ``logging`` gets multimeter's lines, info
    included, through its own handlers and format, with the fields as ``key=value``."""
    code = """
    import logging, sys
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="APP %(name)s %(levelname)s %(message)s")
    import multimeter
    from multimeter import FileStorage, JsonFormat
    import pathlib
    pathlib.Path("blocker").write_text("x")
    multimeter.configure(storage=FileStorage("blocker/results", JsonFormat()))

    @multimeter.measured
    def work():
        return 1

    work()
    """
    completed = _programs.run_code(code, cwd=tmp_path, check=True)
    lines = [line for line in completed.stdout.splitlines() if "storing the result failed" in line]
    assert lines and lines[0].startswith("APP multimeter ERROR storing the result failed ")
    assert "error=" in lines[0]
    assert "" == completed.stderr


def test_once_the_application_configures_structlog_the_lines_follow_it(tmp_path):
    """structlog configured by the application (here: JSON on stderr) takes the lines."""
    code = """
    import json, sys, pathlib, structlog
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    import multimeter
    from multimeter import FileStorage, JsonFormat
    pathlib.Path("blocker").write_text("x")
    multimeter.configure(storage=FileStorage("blocker/results", JsonFormat()))

    @multimeter.measured
    def work():
        return 1

    work()
    """
    completed = _programs.run_code(code, cwd=tmp_path, check=True)
    assert "" == completed.stdout
    events = [json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{")]
    assert "storing the result failed" in [event["event"] for event in events]


def test_multimeter_run_shows_its_lines_on_stderr_and_leaves_stdout_to_the_program(tmp_path):
    """``multimeter run`` is the program: its log lines go to stderr, marked as its
    own; stdout holds the measured program's output and nothing else."""
    (tmp_path / "blocker").write_text("x")
    script = tmp_path / "prog.py"
    script.write_text(
        "import multimeter\n"
        "@multimeter.measured\n"
        "def work():\n"
        "    return 1\n"
        "work()\n"
        "print('data')\n"
    )
    completed = _programs.multimeter_command(
        "run", script, cwd=tmp_path, MULTIMETER_DIR=str(tmp_path / "blocker" / "results")
    )
    assert 0 == completed.returncode, completed.stderr
    assert "data\n" == completed.stdout
    assert "multimeter ERROR: storing the result failed" in completed.stderr
