"""The base class of file formats, and helpers the formats share."""

from __future__ import annotations

import abc
import functools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from multimeter.measure import Measure
from multimeter.metric import Metric
from multimeter.result import Result, Schema
from multimeter.subject import Subject

_TYPES: dict[str, type] = {t.__name__: t for t in (float, int, bool, str)}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class ResultFileError(ValueError):
    """A file (or stream) that cannot be read back as a result: damaged, truncated,
    not UTF-8, not JSON or line protocol, or data of the wrong shape.

    ``path`` is the file (``None`` when a stream was read), ``reason`` says what is
    wrong, e.g. ``"points[3].datetime: 'yesterday' is not an ISO 8601 datetime"``.
    A ``ValueError``, so code that catches ``ValueError`` keeps working.

    >>> str(ResultFileError("points must be an array, not an object", "results/x.json"))
    'results/x.json: points must be an array, not an object'
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(reason, path)
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        return self.reason if self.path is None else f"{self.path}: {self.reason}"


@contextmanager
def reading(where: str = "") -> Iterator[None]:
    """Turn what reading malformed data raises into :class:`ResultFileError`.

    ``where`` (e.g. ``"line 3"``) is put before the reason. ``OSError`` passes unchanged.
    """
    prefix = f"{where}: " if where else ""
    try:
        yield
    except ResultFileError as error:
        if not prefix:
            raise
        raise ResultFileError(prefix + error.reason, error.path) from error
    except RecursionError as error:
        raise ResultFileError(f"{prefix}nested too deeply to be a result") from error
    except UnicodeDecodeError as error:
        raise ResultFileError(
            f"{prefix}not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error
    except json.JSONDecodeError as error:
        raise ResultFileError(f"{prefix}not JSON ({error})") from error
    except ValueError as error:
        raise ResultFileError(f"{prefix}{error}") from error
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as error:
        raise ResultFileError(f"{prefix}not a result ({type(error).__name__}: {error})") from error


_JSON_TYPES: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def expect(value: Any, kind: type, what: str) -> Any:
    """``value``, or :class:`ResultFileError` when it is not of the JSON type ``kind``."""
    if not isinstance(value, kind):
        raise ResultFileError(f"{what} must be {_JSON_TYPES[kind]}, not {_json_type(value)}")
    return value


def member(document: dict[str, Any], key: str, kind: type, what: str, default: Any) -> Any:
    """``document[key]`` checked to be of ``kind``; ``default`` when absent or null."""
    value = document.get(key)
    return default if value is None else expect(value, kind, what)


def required(document: dict[str, Any], key: str, kind: type, what: str) -> Any:
    """``document[key]`` checked to be of ``kind``; :class:`ResultFileError` when absent."""
    if key not in document:
        raise ResultFileError(f"{what} is missing")
    return expect(document[key], kind, what)


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


@functools.lru_cache(maxsize=256)
def schema_json(schema: Schema) -> str:
    """The schema as JSON text, encoded once per schema (results share them)."""
    return json.dumps(schema_document(schema), ensure_ascii=False, allow_nan=False)


def result_from_header(document: Any) -> Result:
    """A result without points or marks, from :func:`header_document`'s data.

    Raises:
        ResultFileError: for data of another shape.
    """
    header = expect(document, dict, "the result")
    identifier = required(header, "identifier", str, "identifier")
    schema_doc = member(header, "schema", dict, "schema", {})
    metrics = {}
    for index, item in enumerate(member(schema_doc, "metrics", list, "schema.metrics", ())):
        where = f"schema.metrics[{index}]"
        m = expect(item, dict, where)
        key = required(m, "key", str, f"{where}.key")
        limits = {
            name: _limit(m.get(name), f"{where}.{name}") for name in ("min_value", "max_value")
        }
        metrics[key] = Metric(
            key=key,
            description=member(m, "description", str, f"{where}.description", ""),
            unit=member(m, "unit", str, f"{where}.unit", ""),
            value_type=_TYPES.get(member(m, "value_type", str, f"{where}.value_type", ""), float),
            **limits,
        )
    subjects = {}
    for index, item in enumerate(member(schema_doc, "subjects", list, "schema.subjects", ())):
        where = f"schema.subjects[{index}]"
        s = expect(item, dict, where)
        key = required(s, "key", str, f"{where}.key")
        subjects[key] = Subject(key, member(s, "description", str, f"{where}.description", ""))
    measures = []
    for index, item in enumerate(member(schema_doc, "measures", list, "schema.measures", ())):
        where = f"schema.measures[{index}]"
        m = expect(item, dict, where)
        subject = required(m, "subject", str, f"{where}.subject")
        metric = required(m, "metric", str, f"{where}.metric")
        if subject not in subjects:
            raise ResultFileError(f"{where} names an unknown subject {subject!r}")
        if metric not in metrics:
            raise ResultFileError(f"{where} names an unknown metric {metric!r}")
        measures.append(Measure(subjects[subject], metrics[metric]))
    schema = Schema(tuple(metrics.values()), tuple(subjects.values()), tuple(measures))
    return Result(
        identifier=identifier,
        tags=member(header, "tags", dict, "tags", {}),
        meta_data=member(header, "meta_data", dict, "meta_data", {}),
        schema=schema,
    )


def _limit(value: Any, what: str) -> Any:
    """A metric's bound: a number or ``None`` (non-finite ones written as strings)."""
    value = decode_number(value)
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise ResultFileError(f"{what} must be a number or null, not {_json_type(value)}")


def float_keys(result: Result) -> frozenset[str]:
    """The keys of the measures whose values are floats."""
    return frozenset(m.key for m in result.schema.measures if m.metric.value_type is float)
