"""multimeter's pytest plugin: each test's resource use as one measurement, and a gate.

Installing multimeter registers it (entry point ``pytest11``, name
``multimeter``: ``-p no:multimeter`` keeps it out); it does nothing unless
asked with ``--multimeter`` (or ``--multimeter-compare`` / ``--multimeter-fail``,
which imply it) or ``MULTIMETER_PYTEST=1``. It lives outside the ``multimeter``
package because importing that package costs a noticeable part of a second:
until a run asks, this module imports nothing but ``os`` and pytest, so a run
that did not ask is unchanged. The measuring lives in ``multimeter._testrun``.
See the README, "pytest plugin".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

#: Switches the plugin on, like ``--multimeter`` (``1``, ``true``, ``yes``, ``on``).
ENV_SWITCH = "MULTIMETER_PYTEST"
#: The name the active plugin is registered under.
ACTIVE = "multimeter-active"
DEFAULT_DIR = ".multimeter"
DEFAULT_TOP = 5

__all__ = ["multimeter_measurement"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the plugin's options."""
    group = parser.getgroup("multimeter", "multimeter: the resource use of every test")
    group.addoption(
        "--multimeter",
        action="store_true",
        default=False,
        help=f"measure every test (also: {ENV_SWITCH}=1)",
    )
    group.addoption(
        "--multimeter-dir",
        metavar="DIR",
        default=None,
        help=f"where each run's folder goes (default: {DEFAULT_DIR})",
    )
    group.addoption(
        "--multimeter-top",
        metavar="N",
        type=int,
        default=None,
        help=f"the N tests with the most CPU, peak memory, duration (default {DEFAULT_TOP})",
    )
    group.addoption(
        "--multimeter-compare",
        metavar="RUN",
        nargs="?",
        const="latest",
        default=None,
        help="compare with a stored run (default: the latest one before this run)",
    )
    group.addoption(
        "--multimeter-fail",
        metavar="LIMITS",
        default=None,
        help="fail when a test got worse than the compared run by more than a limit,"
        " e.g. cpu:20%%,memory:10%%,duration:25%%",
    )


def asked(config: pytest.Config) -> bool:
    """Whether this run asked for measuring (an xdist worker: whether its controller did)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return "multimeter_run" in workerinput
    if (
        config.getoption("multimeter", False)
        or config.getoption("multimeter_compare", None) is not None
        or config.getoption("multimeter_fail", None) is not None
    ):
        return True
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("1", "true", "yes", "on")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the measuring plugin when the run asked for it (else: nothing)."""
    if not asked(config):
        return
    from multimeter._testrun.plugin import MeasuringPlugin

    plugin = MeasuringPlugin.from_config(config, default_dir=DEFAULT_DIR, default_top=DEFAULT_TOP)
    config.pluginmanager.register(plugin, ACTIVE)


@pytest.fixture
def multimeter_measurement(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The test's :class:`~multimeter.measurement.Measurement`: add marks
    (``multimeter_measurement.add_mark("loaded")``) and meta data
    (``multimeter_measurement.result.add_meta_data(rows=10)``).

    Without ``--multimeter`` it is a measurement of its own, from the fixture's
    setup to its teardown, that is not stored: tests using it run the same
    either way.
    """
    plugin = request.config.pluginmanager.get_plugin(ACTIVE)
    if plugin is not None:
        measurement = plugin.measurement_of(request.node)
        if measurement is not None:
            yield measurement
            return
    from multimeter.multimeter import Multimeter
    from multimeter.probe import ResourceProbe

    with_nothing_stored = Multimeter(ResourceProbe()).measure()
    with_nothing_stored.start()
    try:
        yield with_nothing_stored
    finally:
        with_nothing_stored.end()
