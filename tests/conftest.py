"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from multimeter import _log
from multimeter._sampler import Sampler
from multimeter.testing import FakeClock

# The packages for instrument() tests are imported by the tests, when they choose (one
# instruments itself while it is imported, one pauses in the middle of its import).
collect_ignore = ["pkg_for_instrument"]


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    """Every test sees 'log once' warnings afresh."""
    _log.forget_warnings()
    yield
    _log.forget_warnings()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """The structlog events emitted during the test."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
def sampler(clock: FakeClock) -> Sampler:
    """A sampler without a thread, driven by the fake clock through ``run_due``."""
    return Sampler(clock, threaded=False)


@pytest.fixture(autouse=True)
def _fresh_global_configuration(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MULTIMETER_* variable leaks in, and every test starts unconfigured."""
    import os

    import multimeter
    from multimeter import _config

    for name in list(os.environ):
        if name.startswith("MULTIMETER_"):
            monkeypatch.delenv(name)
    _config.reset()
    yield
    multimeter.flush(10)
    _config.reset()


@pytest.fixture
def stored() -> Any:
    """Configure the global multimeter to keep results in memory; returns the storage."""
    import multimeter
    from multimeter.testing import InMemoryStorage

    storage = InMemoryStorage()
    multimeter.configure(storage=storage, cycle_time=0.01)
    return storage


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests (minutes each) come first: under xdist they start at once, beside
    the short ones, instead of making a long tail at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
