"""A pytest plugin for ``pytest_plugin.py``: how long multimeter's pytest plugin works itself.

Loaded with ``-p _plugin_timer`` (``bench/`` on ``PYTHONPATH``) next to
``--multimeter``. It wraps the measuring plugin's own work (making it, each
test's start and end, the phase marks, the end of the session) with a clock and
writes the seconds spent there, the number of tests and the whole run's seconds
as JSON to the file named by ``MULTIMETER_TIMER_REPORT``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import pytest

_spent = [0.0]
_tests = [0]
_started = time.perf_counter()


def _timed(function: Any) -> Any:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _spent[0] += time.perf_counter() - started

    return timed


def pytest_configure(config: pytest.Config) -> None:
    """Wrap the measuring plugin's methods (before it is made: this runs first)."""
    from multimeter._testrun import plugin
    from multimeter.measurement import Measurement

    for name in ("from_config", "_begin", "_end", "pytest_sessionfinish"):
        original = getattr(plugin.MeasuringPlugin, name)
        if name == "from_config":
            setattr(plugin.MeasuringPlugin, name, classmethod(_timed(original.__func__)))
        else:
            setattr(plugin.MeasuringPlugin, name, _timed(original))
    Measurement.add_mark = _timed(Measurement.add_mark)  # type: ignore[method-assign]


def pytest_runtest_logfinish() -> None:
    """Count the tests."""
    _tests[0] += 1


def pytest_unconfigure(config: pytest.Config) -> None:
    """Write the figures."""
    path = os.environ.get("MULTIMETER_TIMER_REPORT")
    if path:
        with open(path, "w") as stream:
            json.dump(
                {
                    "plugin_s": _spent[0],
                    "tests": _tests[0],
                    "run_s": time.perf_counter() - _started,
                },
                stream,
            )
