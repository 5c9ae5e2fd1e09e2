"""Results as JSON documents."""

from __future__ import annotations

import json
from datetime import datetime
from typing import IO, Any

from multimeter.result import Result, ResultBuilder, datetime_to_us, us_to_datetime
from multimeter.storages._format import (
    FileFormat,
    ResultFileError,
    decode_number,
    encode_number,
    expect,
    float_keys,
    member,
    reading,
    required,
    result_from_header,
    schema_json,
)


class JsonFormat(FileFormat):
    """A result as one JSON document (extension ``.json``).

    The document holds ``identifier``, ``tags``, ``meta_data``, ``schema``
    (``metrics``, ``subjects``, ``measures``), ``points`` (``datetime`` as ISO
    8601 with microseconds and ``+00:00``, and ``values``; a missing value has
    no key) and ``marks`` (``datetime``, ``label``). The output is strict JSON:
    non-finite floats are written as the strings ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"`` and read back as floats. :func:`multimeter.load_result`
    reads it back into an equal :class:`~multimeter.result.Result`.
    """

    @property
    def extension(self) -> str:
        """``'.json'``"""
        return ".json"

    def save_result_to_stream(self, result: Result, stream: IO[bytes]) -> None:
        """Write ``result`` as UTF-8 JSON to the binary ``stream``."""
        stream.write(result_text(result).encode("utf-8", "backslashreplace"))

    def load_result_from_stream(self, stream: IO[bytes]) -> Result:
        """Read a result written by :meth:`save_result_to_stream`.

        Raises:
            ResultFileError: for data that is not such a result (the reason says why).
        """
        data = stream.read()
        with reading():
            return result_from_document(json.loads(data.decode("utf-8")))


def result_text(result: Result) -> str:
    """``result`` as one JSON document on one line (JSON escapes every line break)."""
    dumps = _dumps
    times, columns, marks_us = result.data()
    points = []
    for index, row in enumerate(zip(*(data for _, data, _ in columns), strict=True)):
        total = sum(v for v in row if isinstance(v, float))
        plain = total - total == 0.0
        values = {
            key: value if plain else encode_number(value)
            for (key, _, missing), value in zip(columns, row, strict=True)
            if index not in missing
        }
        points.append({"datetime": _iso(times[index]), "values": values})
    if not columns:
        points = [{"datetime": _iso(t), "values": {}} for t in times]
    marks = [{"datetime": _iso(t), "label": label} for t, label in marks_us]
    return (
        f'{{"identifier":{dumps(result.identifier)},"tags":{dumps(result.tags)},'
        f'"meta_data":{dumps(result.meta_data)},"schema":{schema_json(result.schema)},'
        f'"points":{dumps(points)},"marks":{dumps(marks)}}}'
    )


def result_from_document(document: Any) -> Result:
    """The result of a decoded JSON document written by :func:`result_text`.

    Raises:
        ResultFileError: for data that is not such a result; call it inside
            :func:`~multimeter.storages._format.reading` for malformed values too.
    """
    result = result_from_header(document)
    builder = ResultBuilder.of(result)
    floats = float_keys(result)
    for index, item in enumerate(member(document, "points", list, "points", ())):
        where = f"points[{index}]"
        point = expect(item, dict, where)
        timestamp_us = _parse(required(point, "datetime", str, f"{where}.datetime"), where)
        values = {
            key: decode_number(v) if key in floats else v
            for key, v in required(point, "values", dict, f"{where}.values").items()
        }
        builder.add_values(timestamp_us, values)
    for index, item in enumerate(member(document, "marks", list, "marks", ())):
        where = f"marks[{index}]"
        mark = expect(item, dict, where)
        timestamp_us = _parse(required(mark, "datetime", str, f"{where}.datetime"), where)
        builder.add_mark(timestamp_us, required(mark, "label", str, f"{where}.label"))
    return result


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _iso(timestamp_us: int) -> str:
    return us_to_datetime(timestamp_us).isoformat(timespec="microseconds")


def _parse(text: str, where: str) -> int:
    """Microseconds of an ISO 8601 datetime with a time zone."""
    try:
        timestamp = datetime.fromisoformat(text)
    except ValueError:
        raise ResultFileError(f"{where}.datetime: {text!r} is not an ISO 8601 datetime") from None
    if timestamp.utcoffset() is None:
        raise ResultFileError(f"{where}.datetime: {text!r} has no timezone")
    return datetime_to_us(timestamp)


__all__ = ["JsonFormat"]
