"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from multimeter import _log
from multimeter._sampler import Sampler
from multimeter.testing import FakeClock


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
