"""Measures: a metric gathered on a subject."""

from __future__ import annotations

from dataclasses import dataclass, field

from multimeter.metric import Metric
from multimeter.subject import Subject

__all__ = ["Measure"]


@dataclass(frozen=True)
class Measure:
    """A metric gathered on a subject, keyed ``<subject-key>.<metric-key>``.

    >>> from multimeter.metric import CPU_USER_RATE
    >>> from multimeter.subject import PROCESS
    >>> Measure(PROCESS, CPU_USER_RATE).key
    'process.cpu_user'
    """

    subject: Subject
    metric: Metric
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.subject.key}.{self.metric.key}")
