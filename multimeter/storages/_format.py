"""The base class of file formats, and helpers the formats share."""

from __future__ import annotations

import abc
import json
import math
from typing import IO, Any

from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.result import Result, Schema
from multimeter.subject import Subject

_TYPES: dict[str, type] = {t.__name__: t for t in (float, int, bool, str)}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class FileFormat(abc.ABC):
    """How a result is written to (and read back from) a binary stream."""

    @property
    @abc.abstractmethod
    def extension(self) -> str:
        """The file name extension, e.g. ``'.json'``."""

    @abc.abstractmethod
    def save_result_to_stream(self, result: Result, stream: IO[bytes]) -> None:
        """Write ``result`` to the binary ``stream``, which is left open."""

    def load_result_from_stream(self, stream: IO[bytes]) -> Result:
        """Read a result written by :meth:`save_result_to_stream`.

        Raises:
            NotImplementedError: when the format cannot be read back.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot load results")


def encode_number(value: Any) -> Any:
    """``value``, with non-finite floats as the strings ``NaN``, ``Infinity``, ``-Infinity``."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_number(value: Any) -> Any:
    """The inverse of :func:`encode_number`."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    return value


def header_document(result: Result) -> dict[str, Any]:
    """Everything about a result except its points and marks, as JSON-ready data."""
    return {
        "identifier": result.identifier,
        "tags": result.tags,
        "meta_data": result.meta_data,
        "schema": schema_document(result.schema),
    }


def schema_document(schema: Schema) -> dict[str, Any]:
    """A schema as JSON-ready data."""
    return {
        "metrics": [
            {
                "key": m.key,
                "description": m.description,
                "unit": m.unit,
                "value_type": m.value_type.__name__,
                "min_value": encode_number(m.min_value),
                "max_value": encode_number(m.max_value),
            }
            for m in schema.metrics
        ],
        "subjects": [{"key": s.key, "description": s.description} for s in schema.subjects],
        "measures": [
            {"key": m.key, "subject": m.subject.key, "metric": m.metric.key}
            for m in schema.measures
        ],
    }


_schema_json: dict[int, tuple[Schema, str]] = {}


def schema_json(schema: Schema) -> str:
    """The schema as JSON text, encoded once per schema object (results share them)."""
    cached = _schema_json.get(id(schema))
    if cached is None or cached[0] is not schema:
        if len(_schema_json) > 256:
            _schema_json.clear()
        cached = _schema_json[id(schema)] = (
            schema,
            json.dumps(schema_document(schema), ensure_ascii=False, allow_nan=False),
        )
    return cached[1]


def result_from_header(document: dict[str, Any]) -> Result:
    """A result without points or marks, from :func:`header_document`'s data."""
    schema_doc = document.get("schema") or {}
    metrics = {
        m["key"]: Metric(
            key=m["key"],
            description=m.get("description", ""),
            unit=m.get("unit", ""),
            value_type=_TYPES.get(m.get("value_type", "float"), float),
            min_value=decode_number(m.get("min_value")),
            max_value=decode_number(m.get("max_value")),
        )
        for m in schema_doc.get("metrics", ())
    }
    subjects = {
        s["key"]: Subject(s["key"], s.get("description", ""))
        for s in schema_doc.get("subjects", ())
    }
    measures = tuple(
        Measure(subjects[m["subject"]], metrics[m["metric"]])
        for m in schema_doc.get("measures", ())
    )
    schema = Schema(tuple(metrics.values()), tuple(subjects.values()), measures)
    return Result(
        identifier=document["identifier"],
        tags=document.get("tags") or {},
        meta_data=document.get("meta_data") or {},
        schema=schema,
    )


def float_keys(result: Result) -> frozenset[str]:
    """The keys of the measures whose values are floats."""
    return frozenset(m.key for m in result.schema.measures if m.metric.value_type is float)
