"""Comparing a run with a stored one: per-test deltas, and the gate of ``--multimeter-fail``.

A test fails the gate on a figure when it got worse by more than the given
percentage AND by more than that figure's noise floor (:data:`FLOORS`): short
tests vary by more than any sensible percentage from run to run on a busy
machine, and a regression smaller than the floor is not one anybody can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from multimeter._testrun.summary import Row, Summary

#: The figures the gate knows: name -> (how to read it from a row, noise floor, unit).
FIGURES: dict[str, tuple[Callable[[Row], float | None], float, str]] = {
    "cpu": (lambda row: row.cpu_s, 0.050, "s"),
    "memory": (lambda row: row.peak_memory_bytes, 2.0 * 2**20, "B"),
    "duration": (lambda row: row.duration_s, 0.050, "s"),
}
#: The absolute noise floors, for the documentation: 50 ms CPU, 2 MiB, 50 ms. An
#: allocating test's CPU is mostly the kernel's page faults, whose time varies by
#: +-50 % between runs (a 60 MiB test: 40 to 60 ms); 20 ms was too little.
FLOORS = {name: floor for name, (_, floor, _) in FIGURES.items()}
ALLOWED_FORM = "FIGURE:PERCENT% separated by commas, e.g. cpu:20%,memory:10%,duration:25%"
_LIMIT = re.compile(r"\s*([a-z]+)\s*:\s*([0-9]+(?:\.[0-9]*)?)\s*%\s*")


@dataclass(frozen=True)
class Limit:
    """Fail when ``figure`` grew by more than ``percent`` (and its floor)."""

    figure: str
    percent: float


def parse_limits(text: str) -> tuple[Limit, ...]:
    """``cpu:20%,memory:10%`` as limits.

    Raises:
        ValueError: naming ``--multimeter-fail`` and the allowed form.
    """
    limits: list[Limit] = []
    for part in text.split(","):
        match = _LIMIT.fullmatch(part)
        if match is None or match[1] not in FIGURES or not math.isfinite(float(match[2])):
            raise ValueError(
                f"--multimeter-fail={text!r} is not valid; allowed: {ALLOWED_FORM}"
                f" (figures: {', '.join(FIGURES)})"
            )
        if any(limit.figure == match[1] for limit in limits):
            raise ValueError(
                f"--multimeter-fail={text!r} gives {match[1]} twice; allowed: {ALLOWED_FORM}"
                " (each figure once)"
            )
        limits.append(Limit(match[1], float(match[2])))
    return tuple(limits)


@dataclass(frozen=True)
class Change:
    """One figure of one test, before and after."""

    test: str
    figure: str
    before: float
    after: float

    @property
    def growth(self) -> float:
        """``after - before``."""
        return self.after - self.before

    @property
    def percent(self) -> float:
        """The growth in percent of ``before`` (infinite from 0)."""
        if self.before > 0:
            return 100.0 * self.growth / self.before
        return math.inf if self.growth > 0 else 0.0

    def describe(self) -> str:
        """``cpu 0.101s -> 0.252s (+150%)``."""
        unit = FIGURES[self.figure][2]
        percent = "+inf%" if math.isinf(self.percent) else f"{self.percent:+.0f}%"
        return (
            f"{self.figure} {format_value(self.before, unit)} -> "
            f"{format_value(self.after, unit)} ({percent})"
        )


@dataclass(frozen=True)
class Comparison:
    """This run against a stored one."""

    baseline: Summary
    #: Every figure known in both runs, for each test in both.
    changes: tuple[Change, ...]
    #: Tests in this run only, and in the stored one only (never failed).
    new: tuple[str, ...]
    gone: tuple[str, ...]
    #: The changes beyond a limit and its floor.
    failures: tuple[Change, ...]


def compare(rows: tuple[Row, ...], baseline: Summary, limits: tuple[Limit, ...]) -> Comparison:
    """Compare ``rows`` with ``baseline``; tests that did not pass both times are
    compared but never failed (a failing test's figures say little)."""
    before = baseline.by_test()
    now = {row.test: row for row in rows}
    changes, failures = [], []
    for test, row in now.items():
        old = before.get(test)
        if old is None:
            continue
        for figure, (read, floor, _) in FIGURES.items():
            after, was = read(row), read(old)
            if after is None or was is None:
                continue
            change = Change(test, figure, float(was), float(after))
            changes.append(change)
            comparable = row.outcome == old.outcome == "passed"
            for limit in limits:
                if (
                    comparable
                    and limit.figure == figure
                    and change.growth > floor
                    and change.percent > limit.percent
                ):
                    failures.append(change)
    return Comparison(
        baseline,
        tuple(changes),
        tuple(t for t in now if t not in before),
        tuple(t for t in before if t not in now),
        tuple(failures),
    )


def format_value(value: float | None, unit: str) -> str:
    """Seconds as ``0.123s``, bytes as ``12.3 MiB``; ``-`` for unknown."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}s"
    return f"{value / 2**20:.1f} MiB"
