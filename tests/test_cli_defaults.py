"""Command-line conventions shared by the sub-commands (as pytest and coverage have them)."""

from __future__ import annotations

import pathlib

from multimeter._version import __version__
from tests import _programs

PROGRAM = """
import multimeter

@multimeter.measured
def work():
    return sum(range(10_000))

work()
"""


def _results(directory: pathlib.Path, **settings: str) -> None:
    (directory / "job.py").write_text(PROGRAM)
    _programs.run_python("job.py", cwd=directory, check=True, env=_programs.environment(**settings))


def test_version_prints_the_installed_version():
    done = _programs.multimeter_command("--version")
    assert 0 == done.returncode
    assert f"multimeter {__version__}" == done.stdout.strip()


def test_show_without_a_path_reads_the_default_results_directory(tmp_path):
    """``./multimeter-results``, where a program writes by default."""
    _results(tmp_path)
    default = _programs.multimeter_command("show", cwd=tmp_path)
    explicit = _programs.multimeter_command("show", "multimeter-results", cwd=tmp_path)
    assert 0 == default.returncode, default.stderr
    assert "__main__.work" in default.stdout
    assert explicit.stdout == default.stdout


def test_show_and_report_without_a_path_read_multimeter_dir(tmp_path):
    results = tmp_path / "elsewhere"
    _results(tmp_path, MULTIMETER_DIR=str(results))
    shown = _programs.multimeter_command("show", cwd=tmp_path, MULTIMETER_DIR=str(results))
    assert "__main__.work" in shown.stdout
    report = _programs.multimeter_command("report", cwd=tmp_path, MULTIMETER_DIR=str(results))
    assert 0 == report.returncode, report.stderr
    assert '"qualname":"work"' in (tmp_path / "multimeter-report.html").read_text()


def test_without_a_path_or_results_the_command_says_what_to_give(tmp_path):
    for command in ("show", "report"):
        done = _programs.multimeter_command(command, cwd=tmp_path)
        assert 0 != done.returncode
        assert "" == done.stdout
        assert f"multimeter {command}: no PATH given, and no results in" in done.stderr
        assert not (tmp_path / "multimeter-report.html").exists()
