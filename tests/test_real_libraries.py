"""The test suites of real packages pass the same with the whole package instrumented (issue 8).

Runs ``bench/real_suites.py`` once for the module (it downloads the pinned sdists,
installs them and their test requirements into this environment, and runs each
suite plain, instrumented with storage off, and instrumented with the default
file storage). Slow (minutes): deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from typing import Any

import pytest

from tests._programs import run_python

# Slow: its module fixture runs the real suites for minutes (3.5 on a quiet machine; the
# 120 s default is too short). Under xdist, run it with --dist loadfile: one worker.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "bench" / "real_suites.py"
_spec = importlib.util.spec_from_file_location("real_suites", SCRIPT)
assert _spec is not None and _spec.loader is not None
real_suites = importlib.util.module_from_spec(_spec)
sys.modules["real_suites"] = real_suites  # dataclasses look their module up there
_spec.loader.exec_module(real_suites)

PACKAGES = sorted(real_suites.SUITES)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The script's report for every package and mode."""
    out = tmp_path_factory.mktemp("real-suites") / "report.json"
    command = [
        SCRIPT,
        "--packages",
        ",".join(PACKAGES),
        "--modes",
        "plain,off,file",
        "--json",
        str(out),
    ]
    completed = run_python(*command, timeout=1400)
    if not out.is_file():
        pytest.fail(f"real_suites.py wrote no report:\n{completed.stdout}\n{completed.stderr}")
    return json.loads(out.read_text())


@pytest.mark.parametrize("mode", ["off", "file"])
@pytest.mark.parametrize("package", PACKAGES)
def test_every_test_ends_as_it_does_plainly(report, package, mode):
    """Instrumenting the whole package changes no test's outcome, and the run finishes."""
    figures = report["packages"][package]
    plain, run = figures["runs"]["plain"], figures["runs"][mode]
    assert plain["finished"] and plain["tests"] > 0, plain
    assert run["finished"], f"{package} {mode}: killed after {run['timeout_s']} s or crashed: {run}"
    differing = [
        f"{d['test']}: {d['plain']} -> {d[mode]} ({d['reason']})"
        for d in figures[f"differing_{mode}"]
    ]
    assert [] == differing


@pytest.mark.parametrize("package", PACKAGES)
def test_the_instrumented_run_stores_calls(report, package):
    """The file run patched functions and stored results of their calls."""
    run = report["packages"][package]["runs"]["file"]
    assert run["patched"] > 0
    assert run["stored"]["results"] > 0
    assert 0 == run["stored"]["unreadable_files"]
