"""Results as InfluxDB line protocol."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Mapping
from operator import add
from typing import IO, Any

from multimeter.result import Result, ResultBuilder
from multimeter.storages._format import (
    FileFormat,
    ResultFileError,
    float_keys,
    header_document,
    reading,
    result_from_header,
)

HEADER = "# multimeter-result "
MARK_FIELD = "mark"

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
# Line protocol timestamps are signed 64-bit nanoseconds.
_MIN_NS, _MAX_NS = -(2**63), 2**63 - 1


def escape_measurement(name: str) -> str:
    """Escape a measurement name: commas and spaces."""
    return name.replace(",", "\\,").replace(" ", "\\ ")


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key: commas, equals signs and spaces."""
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def quote_string(text: str) -> str:
    """A string field value: quoted, with backslashes and quotes escaped.

    Line breaks cannot be carried by line protocol; they become spaces.
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if "\n" in text or "\r" in text:
        text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return f'"{text}"'


def check_name(kind: str, name: str) -> None:
    """Raise ``ValueError`` for a name InfluxDB would reject or misread."""
    if not name:
        raise ValueError(f"{kind} must not be empty for the line format")
    if name.startswith("_"):
        raise ValueError(f"{kind} {name!r}: names starting with '_' are reserved by InfluxDB")
    if _CONTROL.intersection(name):
        raise ValueError(f"{kind} {name!r} contains a control character or line break")
    if name.endswith("\\"):
        raise ValueError(f"{kind} {name!r} must not end with a backslash")


def check_series_tags(tags: Mapping[str, str]) -> None:
    """Raise ``ValueError`` for a tag that line protocol or InfluxDB would refuse."""
    for key, value in tags.items():
        check_name("tag key", key)
        if value.endswith("\\"):
            raise ValueError(f"tag {key!r}: value must not end with a backslash")


def format_value(value: Any) -> str | None:
    """A field value in line protocol, or ``None`` where InfluxDB cannot store it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if value - value == 0.0 else None
    if isinstance(value, str):
        return quote_string(value)
    return None


def series_prefix(measurement: str, tags: dict[str, str]) -> str:
    """``measurement,tag=value,...`` followed by a space, tags sorted as InfluxDB prefers."""
    check_name("identifier", measurement)
    if measurement.startswith("#"):
        raise ValueError(
            f"identifier {measurement!r}: a line starting with '#' is a comment in line"
            " protocol (InfluxDB would skip it)"
        )
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        check_name("tag key", key)
        if value == "":
            continue  # InfluxDB treats a missing tag as empty
        if value.endswith("\\"):
            raise ValueError(f"tag {key!r}: value must not end with a backslash")
        parts.append(f"{escape_key(key)}={escape_key(value)}")
    return ",".join(parts) + " "


def distinct_timestamps_ns(result: Result) -> tuple[list[int], list[int]]:
    """Nanosecond timestamps for the points and the (time-sorted) marks of ``result``,
    no two alike: points at ``us * 1000``, marks from ``us * 1000 + 1`` on, each moved
    on by a nanosecond while its slot is taken. So a final point and the exit mark of
    the same microsecond, or marks of one microsecond, all keep their own slot."""
    times_us, _, marks_us = result.data()
    taken: set[int] = set()
    points = []
    for timestamp_us in times_us:
        timestamp_ns = timestamp_us * 1000
        while timestamp_ns in taken:
            timestamp_ns += 1
        taken.add(timestamp_ns)
        points.append(timestamp_ns)
    marks = []
    for timestamp_us, _ in sorted(marks_us, key=lambda m: m[0]):
        timestamp_ns = timestamp_us * 1000 + 1
        while timestamp_ns in taken:
            timestamp_ns += 1
        taken.add(timestamp_ns)
        marks.append(timestamp_ns)
    return points, marks


def encode_points(
    result: Result,
    prefix: str,
    *,
    extra_fields: str = "",
    offset_ns: int = 0,
    timestamps_ns: list[int] | None = None,
) -> list[str]:
    """One line per point of ``result``; non-finite and missing values are left out.

    ``extra_fields`` (already encoded, e.g. ``',call="x"'``) is added to every line
    that has a field; ``offset_ns`` is added to every timestamp, unless
    ``timestamps_ns`` gives each point's timestamp.
    """
    specs: list[tuple[str, Callable[[Any], str | None] | None, Container[int]]] = []
    datas = []
    times_us, columns, _ = result.data()
    for key, data, missing in columns:
        check_name("field key", key)
        typecode = getattr(data, "typecode", None)
        formatter: Callable[[Any], str | None] | None = None
        if typecode != "d":
            formatter = _format_int if typecode == "q" else format_value
        specs.append((escape_key(key) + "=", formatter, missing))
        datas.append(data)
    # The common case, a row of finite floats, is joined in C; the sum of a row is
    # finite only if every value is (an overflowing sum just takes the slow path).
    all_floats = all(formatter is None and not missing for _, formatter, missing in specs)
    prefixes = [field_prefix for field_prefix, _, _ in specs]
    if timestamps_ns is None:
        timestamps_ns = [timestamp_us * 1000 + offset_ns for timestamp_us in times_us]
    lines = []
    for index, (timestamp_ns, *row) in enumerate(zip(timestamps_ns, *datas, strict=True)):
        if all_floats and row:
            total = sum(row)
            if total - total == 0.0:
                fields_text = ",".join(map(add, prefixes, map(repr, row)))
                lines.append(f"{prefix}{fields_text}{extra_fields} {timestamp_ns}\n")
                continue
        fields = []
        for (field_prefix, formatter, missing), value in zip(specs, row, strict=True):
            if missing and index in missing:
                continue
            if formatter is None:  # float column: the common case, inlined
                if value - value == 0.0:
                    fields.append(field_prefix + repr(value))
                continue
            text = formatter(value)
            if text is not None:
                fields.append(field_prefix + text)
        if fields:
            lines.append(f"{prefix}{','.join(fields)}{extra_fields} {timestamp_ns}\n")
    return lines


def encode_marks(
    result: Result,
    prefix: str,
    *,
    extra_fields: str = "",
    offset_ns: int = 0,
    timestamps_ns: list[int] | None = None,
) -> list[str]:
    """One line per mark, field ``mark``; marks at the same time get distinct nanoseconds.

    ``timestamps_ns``, when given, is each mark's timestamp, in time order.
    """
    lines = []
    last = None
    marks = sorted(result.data().marks_us, key=lambda m: m[0])
    for index, (timestamp_us, label) in enumerate(marks):
        if timestamps_ns is not None:
            timestamp_ns = timestamps_ns[index]
        else:
            timestamp_ns = timestamp_us * 1000 + offset_ns
            if last is not None and timestamp_ns <= last:
                timestamp_ns = last + 1
            last = timestamp_ns
        lines.append(f"{prefix}{MARK_FIELD}={quote_string(label)}{extra_fields} {timestamp_ns}\n")
    return lines


def _format_int(value: Any) -> str | None:
    return f"{value}i"


class LineFormat(FileFormat):
    """A result as InfluxDB line protocol (extension ``.line``).

    The identifier is the measurement name, the result's tags are tags, each
    measure is a field, timestamps are nanoseconds. Names and values are
    escaped as InfluxDB requires; an identifier InfluxDB would reject (empty,
    starting with ``_``, with control characters) raises ``ValueError``.
    Non-finite values are left out (InfluxDB rejects them) and a point with
    no value left is not written. Each mark is a line of the same series with
    the single string field ``mark`` (usable as a Grafana annotation). A first
    comment line, ``# multimeter-result {...}``, carries the meta data and the
    schema as JSON (InfluxDB skips comments), so the file loads back with
    :func:`multimeter.load_result`.
    """

    @property
    def extension(self) -> str:
        """``'.line'``"""
        return ".line"

    def save_result_to_stream(self, result: Result, stream: IO[bytes]) -> None:
        """Write ``result`` as UTF-8 line protocol to the binary ``stream``."""
        prefix = series_prefix(result.identifier, result.tags)
        header = HEADER + json.dumps(header_document(result), ensure_ascii=False, allow_nan=False)
        lines = [header.replace("\n", " ") + "\n"]
        lines += encode_points(result, prefix)
        lines += encode_marks(result, prefix)
        stream.write("".join(lines).encode("utf-8", "backslashreplace"))

    def load_result_from_stream(self, stream: IO[bytes]) -> Result:
        """Read a result written by :meth:`save_result_to_stream`.

        A file without the header line loads too: the identifier and tags then
        come from the first line, and the schema is empty.

        Raises:
            ResultFileError: for data that is not such a result (the reason names the line).
        """
        builder = None
        floats: frozenset[str] = frozenset()
        data = stream.read()
        with reading():
            text = data.decode("utf-8")
        # Only "\n" ends a line: strings may hold U+2028 and other characters that
        # str.splitlines() would split on.
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.strip(" \t\r")
            with reading(f"line {number}"):
                if line.startswith(HEADER):
                    if builder is not None:
                        raise ResultFileError("the header must come before the data")
                    builder = ResultBuilder.of(result_from_header(json.loads(line[len(HEADER) :])))
                    floats = float_keys(builder.result)
                    continue
                if not line or line.startswith("#"):
                    continue
                measurement, tags, fields, timestamp_ns = parse_line(line)
                if not _MIN_NS <= timestamp_ns <= _MAX_NS:
                    raise ResultFileError(f"timestamp {timestamp_ns} is out of range")
                if builder is None:
                    builder = ResultBuilder.of(Result(identifier=measurement, tags=tags))
                timestamp_us = timestamp_ns // 1000
                if set(fields) == {MARK_FIELD} and isinstance(fields[MARK_FIELD], str):
                    builder.add_mark(timestamp_us, fields[MARK_FIELD])
                else:
                    for key in floats.intersection(fields):
                        if isinstance(fields[key], int) and not isinstance(fields[key], bool):
                            fields[key] = float(fields[key])
                    builder.add_values(timestamp_us, fields)
        if builder is None:
            raise ResultFileError("no line-protocol data")
        return builder.result


# Line protocol, as LineFormat writes it: a backslash escapes the characters that would
# end a name (comma and space; in tag and field keys and tag values also '='); any other
# backslash stands for itself. Double quotes mean nothing outside string field values,
# where \" and \\ are the escapes. Each alternative starts differently, so matching
# never backtracks.
_NAME = r"(?:[^\\, ]|\\[, ]|\\(?![, ]))+"
_KEY = r"(?:[^\\,= ]|\\[,= ]|\\(?![,= ]))+"
_STRING = r'"(?:[^"\\]|\\.)*"'
_VALUE = rf"(?:{_STRING}|[^,\" ]+)"
_LINE = re.compile(
    rf"(?P<name>{_NAME})(?P<tags>(?:,{_KEY}={_KEY})*)"
    rf" (?P<fields>{_KEY}={_VALUE}(?:,{_KEY}={_VALUE})*)(?: (?P<time>-?[0-9]+))?",
    re.DOTALL,
)
_TAG = re.compile(rf",({_KEY})=({_KEY})", re.DOTALL)
_FIELD = re.compile(rf"({_KEY})=({_VALUE}),?", re.DOTALL)
_NAME_ESCAPE = re.compile(r"\\([, ])")
_KEY_ESCAPE = re.compile(r"\\([,= ])")
_STRING_ESCAPE = re.compile(r'\\(["\\])')
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_INTEGER = re.compile(r"[-+]?[0-9]+[iu]")
_TRUE = frozenset(("t", "T", "true", "True", "TRUE"))
_FALSE = frozenset(("f", "F", "false", "False", "FALSE"))


def _unescape_key(text: str) -> str:
    return _KEY_ESCAPE.sub(r"\1", text) if "\\" in text else text


def _parse_field(text: str) -> Any:
    """A field value: a quoted string, a boolean, an integer (``i``/``u``) or a float."""
    if text.startswith('"'):
        body = text[1:-1]
        return _STRING_ESCAPE.sub(r"\1", body) if "\\" in body else body
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INTEGER.fullmatch(text):
        return int(text[:-1])
    if _FLOAT.fullmatch(text):
        return float(text)
    raise ValueError(f"not a field value: {text!r}")


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """Parse one line of line protocol into (measurement, tags, fields, nanoseconds).

    A line without a timestamp gets 0. Raises ``ValueError`` for anything else.
    """
    match = _LINE.fullmatch(line)
    if match is None:
        raise ValueError(f"not a line-protocol line: {line[:200]!r}")
    name, tags_text, fields_text, time_text = match.group("name", "tags", "fields", "time")
    tags = {_unescape_key(k): _unescape_key(v) for k, v in _TAG.findall(tags_text)}
    fields = {_unescape_key(k): _parse_field(v) for k, v in _FIELD.findall(fields_text)}
    measurement = _NAME_ESCAPE.sub(r"\1", name) if "\\" in name else name
    return measurement, tags, fields, int(time_text) if time_text else 0


__all__ = ["LineFormat"]
