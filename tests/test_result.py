"""Result: points, marks, tags and meta data, kept compactly."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from array import array
from datetime import datetime, timedelta, timezone

import pytest

from multimeter import Multimeter
from multimeter.probe import ResourceProbe
from multimeter.result import Mark, Point, Result, ResultBuilder, ResultData, Schema

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


def _result(**kwargs) -> Result:
    return Result(ResourceProbe(), identifier="r", **kwargs)


def test_schema_comes_from_the_probes():
    """A result's schema lists what its probes measure."""
    probe = ResourceProbe()
    assert Schema(probe.metrics, probe.subjects, probe.measures) == _result().schema


def test_append_adds_points_in_order_with_utc_datetimes():
    """Points come back as Point objects with the timestamps and values given."""
    result = _result()
    result.append(T0, {"process.cpu_user": 0.5})
    result.append(T0 + timedelta(seconds=1), {"process.cpu_user": 0.25})
    assert (
        Point(T0, {"process.cpu_user": 0.5}),
        Point(T0 + timedelta(seconds=1), {"process.cpu_user": 0.25}),
    ) == result.points
    assert timezone.utc == result.points[0].datetime.tzinfo


def test_timestamps_in_other_zones_are_converted_to_utc():
    """An aware timestamp in another zone is the same instant in UTC."""
    result = _result()
    result.append(T0.astimezone(timezone(timedelta(hours=2))), {})
    assert T0 == result.start
    assert timezone.utc == result.start.tzinfo


def test_naive_timestamps_are_refused():
    """A datetime without a zone is ambiguous and raises ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        _result().append(datetime(2026, 1, 1), {})


def test_start_end_and_duration_span_the_points():
    """start/end are the first/last point's time; duration their difference."""
    result = _result()
    assert (None, None, None) == (result.start, result.end, result.duration)
    result.append(T0, {})
    result.append(T0 + timedelta(seconds=2.5), {})
    assert (T0, T0 + timedelta(seconds=2.5), timedelta(seconds=2.5)) == (
        result.start,
        result.end,
        result.duration,
    )


def test_values_yields_one_value_per_point_with_none_where_missing():
    """values(key) follows the points; a point without that measure gives None."""
    result = _result()
    result.append(T0, {"process.cpu_user": 1.0})
    result.append(T0, {"process.cpu_system": 2.0})
    assert [1.0, None] == list(result.values("process.cpu_user"))
    assert {} == {k: v for k, v in result.points[1].values.items() if k == "process.cpu_user"}


def test_values_of_an_unknown_key_raises_key_error():
    """A key that is neither in the schema nor in a point is an error."""
    with pytest.raises(KeyError):
        _result().values("nope")


def test_values_outside_the_schema_are_kept():
    """A probe may report keys its schema does not name; they are stored too."""
    result = _result()
    result.append(T0, {"extra.count": 3, "extra.name": "x"})
    assert {"extra.count": 3, "extra.name": "x"} == result.points[0].values


def test_marks_keep_their_order_and_labels():
    """Marks come back as Mark objects, in the order added."""
    result = _result()
    result.add_mark(T0 + timedelta(seconds=1), "second")
    result.add_mark(T0, "first-by-time")
    assert (Mark(T0 + timedelta(seconds=1), "second"), Mark(T0, "first-by-time")) == result.marks


def test_meta_data_is_added_and_overwritten_as_strings():
    """add_meta_data merges; setting a key again overwrites it; values become str."""
    result = _result(meta_data={"host": "a"})
    result.add_meta_data(host="b", pid=42)
    assert {"host": "b", "pid": "42"} == result.meta_data


@pytest.mark.parametrize(
    ("value", "stored"),
    [("etl", "etl"), (3, "3"), (2.5, "2.5"), (True, "true"), (False, "false")],
)
def test_tag_values_are_stored_as_strings(value, stored):
    """Numbers and booleans are converted to strings (booleans as true/false)."""
    assert {"k": stored} == _result(tags={"k": value}).tags


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"": "v"}, "must not be empty"),
        ({"k": None}, "tag 'k'"),
        ({1: "v"}, "must be a str"),
        ({"k": ["list"]}, "tag 'k'"),
        ({"k": "line\nbreak"}, "tag 'k'"),
    ],
)
def test_tags_that_cannot_be_stored_raise_value_error_naming_the_tag(tags, message):
    """Empty keys, None values, non-string keys, other types and control characters."""
    with pytest.raises(ValueError, match=message):
        _result(tags=tags)


def test_values_are_kept_in_compact_numeric_columns():
    """Float measures are stored in array('d') columns, not a dict per point."""
    result = _result()
    for second in range(10):
        result.append(T0 + timedelta(seconds=second), {"process.cpu_user": float(second)})
    column = result._columns["process.cpu_user"]
    assert isinstance(column, array)
    assert "d" == column.typecode
    assert 10 == len(result)


def test_equal_results_compare_equal_even_with_nan():
    """Two results with the same content are equal; NaN equals NaN for this purpose."""
    first, second = _result(), _result()
    for result in (first, second):
        result.append(T0, {"process.cpu_user": math.nan})
        result.add_mark(T0, "m")
    assert first == second
    second.append(T0, {})
    assert first != second


def test_identifier_must_be_a_non_empty_string():
    """An empty or missing identifier raises ValueError."""
    with pytest.raises(ValueError, match="identifier"):
        Result(identifier="")


def test_summary_integrates_cpu_rates_over_each_points_interval():
    """CPU seconds are rate x interval from 'started'; the lifetime high-water mark is the
    highest max_rss."""
    result = _result(meta_data={"started": T0.isoformat(), "outcome": "ok"})
    result.append(T0 + timedelta(seconds=1), {"process.cpu_user": 0.5, "process.max_rss": 10.0})
    result.append(T0 + timedelta(seconds=3), {"process.cpu_user": 0.25, "process.max_rss": 30.0})
    summary = result.summary()
    assert 3.0 == summary["duration_s"]
    assert 1.0 == summary["cpu_user_s"]  # 0.5 x 1 s + 0.25 x 2 s
    assert 30.0 == summary["max_rss_bytes"]
    assert summary["peak_memory_bytes"] is None  # neither peak_rss nor a psutil rss
    assert ("ok", 2, 0) == (summary["outcome"], summary["points"], summary["marks"])


def test_peak_memory_is_the_measurements_own_not_the_processs_lifetime_high_water_mark():
    """A new high-water mark set inside the measurement is exact; sampled RSS counts too."""
    result = _result(meta_data={"started": T0.isoformat()})
    big_before = 900.0  # the process had been bigger before this measurement
    result.append(T0 + timedelta(seconds=1), {"process.max_rss": big_before, "proc.rss": 120.0})
    result.append(T0 + timedelta(seconds=2), {"process.max_rss": big_before, "proc.rss": 300.0})
    result.append(T0 + timedelta(seconds=3), {"process.max_rss": big_before, "proc.rss": 80.0})
    assert 300.0 == result.summary()["peak_memory_bytes"]
    assert big_before == result.summary()["max_rss_bytes"]
    result.append(
        T0 + timedelta(seconds=4), {"process.max_rss": 1000.0, "process.peak_rss": 1000.0}
    )
    assert 1000.0 == result.summary()["peak_memory_bytes"]


def test_summary_of_an_empty_result_has_no_figures():
    """Nothing measured: the figures are None, not zero."""
    summary = _result().summary()
    assert (None, None, None) == (
        summary["duration_s"],
        summary["cpu_user_s"],
        summary["peak_memory_bytes"],
    )


def test_start_and_duration_cover_a_measurement_shorter_than_its_cycle():
    """A 0.3 s measurement at cycle_time=1 reports 0.3 s, not the span of its one point."""
    meter = Multimeter(ResourceProbe(), cycle_time=1.0)
    with meter.measure("short") as result:
        time.sleep(0.3)
    assert 1 == len(result.points)
    assert 0.28 <= result.duration.total_seconds() < 0.9
    assert result.start == datetime.fromisoformat(result.meta_data["started"])
    assert result.end == result.points[-1].datetime


def test_start_and_duration_cover_a_measurement_longer_than_its_cycle():
    """A 1.2 s measurement at cycle_time=1 reports about 1.2 s, not 0.5 s."""
    meter = Multimeter(ResourceProbe(), cycle_time=1.0)
    with meter.measure("longer") as result:
        time.sleep(1.2)
    assert 1.15 <= result.duration.total_seconds() < 1.9


def test_summary_reports_the_childrens_cpu_apart_from_the_processs_own():
    """A child that burns CPU and is waited for shows up as children_cpu_*_s."""
    meter = Multimeter(ResourceProbe(), cycle_time=0.05)
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    with meter.measure("job") as result:
        subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    summary = result.summary()
    children = summary["children_cpu_user_s"] + summary["children_cpu_system_s"]
    assert children >= 0.35
    assert summary["cpu_user_s"] + summary["cpu_system_s"] < children


_T0 = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC in microseconds


def test_a_builder_adds_rows_values_and_marks_in_microseconds():
    """ResultBuilder makes the result code such as the sampler and the formats build."""
    schema = Schema.from_probes([ResourceProbe()])
    keys = [m.key for m in schema.measures]
    builder = ResultBuilder("call-1", schema, {"team": "a"}, {"outcome": "ok"})
    assert builder.add_row(_T0, [1.0] * len(keys))
    builder.add_values(_T0 + 10, {"process.cpu_user": 2.0})
    builder.add_mark(_T0 + 5, "call:exit")
    result = builder.result
    assert ("call-1", {"team": "a"}, {"outcome": "ok"}) == (
        result.identifier,
        result.tags,
        result.meta_data,
    )
    assert [1.0, 2.0] == list(result.values("process.cpu_user"))
    assert [1.0, None] == list(result.values("process.cpu_system"))
    assert [Mark(datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=timezone.utc), "call:exit")] == list(
        result.marks
    )


def test_a_row_that_does_not_fit_is_refused_and_changes_nothing():
    """add_row() is the fast path: where it does not apply, add_values() adds the point."""
    schema = Schema.from_probes([ResourceProbe()])
    width = len(schema.measures)
    builder = ResultBuilder("call-1", schema, {}, {})
    builder.add_row(_T0, [1.0] * width)
    assert not builder.add_row(_T0 + 1, ["text"] * width)
    assert 1 == len(builder.result)


def test_a_builder_of_an_existing_result_adds_to_it_and_its_sync_runs_before_reading():
    """The sampler adds points lazily: reading the result first calls the sync hook."""
    result = Result(identifier="demo")
    builder = ResultBuilder.of(result)
    builder.set_sync(lambda: builder.add_values(_T0, {"x.y": 1.5}))
    assert [1.5] == list(result.values("x.y"))
    builder.set_sync(None)
    assert 1 == len(result)


def test_data_gives_the_points_and_marks_as_kept():
    """Result.data() is what storages and formats read: microseconds and columns."""
    builder = ResultBuilder("demo", Schema(), {}, {})
    builder.add_values(_T0, {"x.y": 1.5, "x.z": 2})
    builder.add_values(_T0 + 10, {"x.y": 2.5})
    builder.set_marks([(_T0 + 1, "a"), (_T0 + 2, "b")])
    data = builder.result.data()
    assert isinstance(data, ResultData)
    assert [_T0, _T0 + 10] == list(data.times_us)
    columns = {key: (list(values), set(missing)) for key, values, missing in data.columns}
    assert {"x.y": ([1.5, 2.5], set()), "x.z": ([2, 0], {1})} == columns
    assert [(_T0 + 1, "a"), (_T0 + 2, "b")] == list(data.marks_us)
