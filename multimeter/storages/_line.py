"""Results as InfluxDB line protocol."""

from __future__ import annotations

import json
from collections.abc import Callable, Container
from operator import add
from typing import IO, Any

from multimeter.result import Result
from multimeter.storages._format import FileFormat, float_keys, header_document, result_from_header

HEADER = "# multimeter-result "
MARK_FIELD = "mark"

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


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
    taken: set[int] = set()
    points = []
    for timestamp_us in result._times:
        timestamp_ns = timestamp_us * 1000
        while timestamp_ns in taken:
            timestamp_ns += 1
        taken.add(timestamp_ns)
        points.append(timestamp_ns)
    marks = []
    for timestamp_us, _ in sorted(result._marks, key=lambda m: m[0]):
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
    for key, data, missing in result._column_items():
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
        timestamps_ns = [timestamp_us * 1000 + offset_ns for timestamp_us in result._times]
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
    marks = sorted(result._marks, key=lambda m: m[0])
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
        stream.write("".join(lines).encode("utf-8"))

    def load_result_from_stream(self, stream: IO[bytes]) -> Result:
        """Read a result written by :meth:`save_result_to_stream`.

        A file without the header line loads too: the identifier and tags then
        come from the first line, and the schema is empty.
        """
        result = None
        floats: frozenset[str] = frozenset()
        for raw in stream.read().decode("utf-8").splitlines():
            if raw.startswith(HEADER):
                result = result_from_header(json.loads(raw[len(HEADER) :]))
                floats = float_keys(result)
                continue
            if not raw.strip() or raw.startswith("#"):
                continue
            measurement, tags, fields, timestamp_ns = parse_line(raw)
            if result is None:
                result = Result(identifier=measurement, tags=tags)
            timestamp_us = timestamp_ns // 1000
            if set(fields) == {MARK_FIELD} and isinstance(fields[MARK_FIELD], str):
                result._add_mark_us(timestamp_us, fields[MARK_FIELD])
            else:
                for key in floats.intersection(fields):
                    if isinstance(fields[key], int) and not isinstance(fields[key], bool):
                        fields[key] = float(fields[key])
                result._append_us(timestamp_us, fields)
        if result is None:
            raise ValueError("no line-protocol data in the stream")
        return result


def _split(text: str, separator: str, *, quotes: bool = False) -> list[str]:
    """Split on ``separator`` where it is not escaped (nor quoted, with ``quotes``)."""
    parts = []
    current: list[str] = []
    in_quotes = False
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(char)
            current.append(next(chars, ""))
        elif quotes and char == '"':
            in_quotes = not in_quotes
            current.append(char)
        elif char == separator and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")


def _parse_field(text: str) -> Any:
    if text.startswith('"'):
        body = text[1:-1]
        return body.replace('\\"', '"').replace("\\\\", "\\")
    if text in ("t", "T", "true", "True", "TRUE"):
        return True
    if text in ("f", "F", "false", "False", "FALSE"):
        return False
    if text.endswith("i") or text.endswith("u"):
        return int(text[:-1])
    return float(text)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """Parse one line of line protocol into (measurement, tags, fields, nanoseconds)."""
    sections = [s for s in _split(line, " ", quotes=True) if s != ""]
    if len(sections) < 2:
        raise ValueError(f"not a line-protocol line: {line!r}")
    series, *tag_parts = _split(sections[0], ",")
    tags = {}
    for part in tag_parts:
        key, value = _split(part, "=")
        tags[_unescape(key)] = _unescape(value)
    fields = {}
    for part in _split(sections[1], ",", quotes=True):
        key, value = _split_field(part)
        fields[_unescape(key)] = _parse_field(value)
    timestamp = int(sections[2]) if len(sections) > 2 else 0
    return _unescape(series), tags, fields, timestamp


def _split_field(part: str) -> tuple[str, str]:
    key, *rest = _split(part, "=", quotes=True)
    return key, "=".join(rest)


__all__ = ["LineFormat"]
