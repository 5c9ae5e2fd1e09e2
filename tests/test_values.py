"""Metric, Subject and Measure: frozen value objects."""

from __future__ import annotations

import dataclasses

import pytest

from multimeter.measure import Measure
from multimeter.metric import CPU_USER_RATE, Metric
from multimeter.subject import CHILDREN, PROCESS, Subject


def test_metric_defaults_match_the_documentation():
    """description and unit default to '', value_type to float, limits to [0.0, None]."""
    metric = Metric("m")
    assert ("", "", float, 0.0, None) == (
        metric.description,
        metric.unit,
        metric.value_type,
        metric.min_value,
        metric.max_value,
    )


@pytest.mark.parametrize(
    ("min_value", "max_value", "value", "expected"),
    [
        (0.0, None, -3.0, 0.0),
        (0.0, None, 7.5, 7.5),
        (0.0, 1.0, 1.5, 1.0),
        (None, None, -3.0, -3.0),
        (None, 10, 11, 10),
    ],
)
def test_limit_value_caps_to_the_bounds(min_value, max_value, value, expected):
    """Values outside [min_value, max_value] are capped; None disables a bound."""
    metric = Metric("m", min_value=min_value, max_value=max_value)
    assert expected == metric.limit_value(value)


def test_value_objects_are_frozen():
    """Metric, Subject and Measure cannot be changed after creation."""
    for value, attribute in (
        (Metric("m"), "key"),
        (PROCESS, "key"),
        (Measure(PROCESS, CPU_USER_RATE), "key"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, attribute, "other")


def test_measure_key_is_subject_key_dot_metric_key():
    """The measure key is derived as <subject-key>.<metric-key>."""
    assert "children.cpu_user" == Measure(CHILDREN, CPU_USER_RATE).key


def test_equal_values_are_equal_and_hashable():
    """Value objects compare by value and can be dictionary keys."""
    assert Subject("s", "d") == Subject("s", "d")
    assert {Measure(PROCESS, CPU_USER_RATE): 1}[Measure(PROCESS, CPU_USER_RATE)] == 1
