"""A pytest plugin for ``real_suites.py``: instrument a whole package before its tests run.

Loaded with ``-p _instrument_plugin`` (``bench/`` on ``PYTHONPATH``), so it is
imported before any conftest or test module imports the package under test.
It reads:

- ``MULTIMETER_SUITE_PACKAGES``: comma-separated import names to instrument
  (``attr,attrs``); empty or unset: nothing is instrumented (the plain run) and
  multimeter is not even imported.
- ``MULTIMETER_SUITE_REPORT``: a file to write what was instrumented to, as JSON.
- ``MULTIMETER_SUITE_OUTCOMES``: a file to append one JSON line per test report
  to, as it comes: subtests included, and read even when the run is killed.

In every run, plain or not, Hypothesis gets no deadline and no example
database (on top of the suite's own profile), so the outcome of a test does not
depend on how slow the run is or on what an earlier run found.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

import pytest

PACKAGES = "MULTIMETER_SUITE_PACKAGES"
REPORT = "MULTIMETER_SUITE_REPORT"
OUTCOMES = "MULTIMETER_SUITE_OUTCOMES"


#: What multimeter.instrument() returned, for the count of patched functions.
_handles: list[Any] = []
_names = [n.strip() for n in os.environ.get(PACKAGES, "").split(",") if n.strip()]


def _instrument() -> None:
    import multimeter

    for name in _names:
        importlib.import_module(name)
        _handles.append(multimeter.instrument(name))  # the package and its submodules


def _report() -> int:
    """Write how many functions are patched by now to ``MULTIMETER_SUITE_REPORT``."""
    patched = len({name for handle in _handles for name in handle.patched})
    path = os.environ.get(REPORT)
    if path:
        skipped = len({name for handle in _handles for name, _ in handle.skipped})
        report = {"packages": _names, "patched": patched, "skipped": skipped}
        with open(path, "w", encoding="utf-8") as file:
            json.dump(report, file)
    return patched


if _names:
    _instrument()
    print(
        f"multimeter-suite: instrumented {','.join(_names)}: {_report()} names patched",
        file=sys.stderr,
        flush=True,
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Count again: a package may have imported more of itself meanwhile."""
    _report()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """After the suite's own settings: no deadline and no example database."""
    try:
        from hypothesis import settings
    except ImportError:
        return
    settings.register_profile(
        "multimeter-suite", settings(settings.default, deadline=None, database=None)
    )
    settings.load_profile("multimeter-suite")


def _message(report: pytest.TestReport) -> str:
    """The first line of why a test did not pass, if it did not."""
    longrepr = report.longrepr
    if report.passed or longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = str(getattr(crash, "message", None) or longrepr)
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


_outcomes = open(os.environ[OUTCOMES], "a", encoding="utf-8") if os.environ.get(OUTCOMES) else None  # noqa: SIM115 - open for the whole run


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One line per report: node id, phase, outcome, a subtest's name, why, how long."""
    if _outcomes is None:
        return
    context = getattr(report, "context", None)  # pytest's SubtestReport
    subtest = None
    if context is not None:
        arguments = ", ".join(f"{k}={v!r}" for k, v in context.kwargs.items())
        subtest = f"[{context.msg or ''}] ({arguments})"[:200]
    line = {
        "id": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "xfail": hasattr(report, "wasxfail"),
        "subtest": subtest,
        "message": _message(report),
        "duration": round(report.duration, 6),
    }
    _outcomes.write(json.dumps(line) + "\n")
    _outcomes.flush()
