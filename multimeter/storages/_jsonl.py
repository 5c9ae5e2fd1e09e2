"""The batch file format: many calls (and results) as JSON Lines, what they share once.

A batch file is UTF-8 JSON Lines; every line is one JSON value and ends with
``\\n``. It is self-contained: the first line is the header, and every id a line
uses is defined on an earlier line of the same file.

- Header: ``{"format":"multimeter-calls","version":1,"token":"<token>","meta":{...}}``
  with the meta data of the process that wrote the file.
- Definitions, each written the first time the file needs it:
  ``{"def":"function","id":1,"name":...,"module":...,"qualname":...,"prefix":...}``,
  ``{"def":"schema","id":1,"schema":{"metrics":...,"subjects":...,"measures":...}}``
  (as in a ``.json`` result), ``{"def":"tags","id":1,"tags":{...}}``,
  ``{"def":"meta","id":1,"meta":{...},"unset":[...]}`` (the meta data of calls: what
  differs from the header's, and the header's keys they lack; ``unset`` only when
  there are any), ``{"def":"exception","id":1,"module":...,"qualname":...}`` and
  ``{"def":"group","id":1,"function":1,"schema":1,"meta":1,"tags":1}``: what the
  calls of a group share (and ``"token"``, for calls of a token other than the
  header's).
- A call: ``[group, number, lane, started_us, duration_us, parent, exception,
  offset_us, value, ..., offset_us, value, ...]``: ``parent`` is the ``number`` of
  the call it was made in, or ``null``; ``exception`` is 0 for a call that
  returned, else the id of an exception definition. Then, for each point, its time
  (``offset_us`` after the call's end: 0 for a short call's one point) and one value
  per measure of the schema, in schema order (``null`` where missing; NaN and the
  infinities of float measures as the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"``).
- A result of another measurement: ``{"result":{...}}``, the document of a
  ``.json`` result.

A call's marks are its enter and exit; the reader adds those of the calls made
inside it, which come before it in the files of its process (see
:func:`multimeter.calls.nested_marks`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from multimeter._row import DerivedRow
from multimeter.calls import CallFunction, CallRecord, nested_marks
from multimeter.result import Result, Schema
from multimeter.storages._format import (
    ResultFileError,
    decode_number,
    encode_number,
    expect,
    member,
    required,
    result_from_header,
    schema_document,
)
from multimeter.storages._json import result_from_document, result_text

FORMAT = "multimeter-calls"
VERSION = 1
EXTENSION = ".jsonl"

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
#: Identity-keyed caches are cleared when they grow past this (per-call tag dicts).
_CACHE_LIMIT = 1024


class _FloatTexts(dict[Any, str]):
    """The JSON text of a float: zero from the table (most values of a short call are
    zero), any other float from ``float.__repr__``, which is what JSON writes; both in
    C, with no Python code per value.

    Raises ``TypeError`` for a value that is not a float (``int``, ``bool``, ``None``,
    ``str``: the caller then encodes the row the general way), and writes NaN and the
    infinities as ``nan``, ``inf``, ``-inf`` (not JSON: the caller checks for an ``n``).
    ``-0.0`` gets zero's text: an equal number, which a float column stores alike.
    """

    __missing__ = staticmethod(float.__repr__)


class Encoder:
    """Encodes lines for one batch file; remembers what the file has defined.

    Not thread-safe: the storage encodes under its lock. A file whose write
    failed is not written to again, so nothing needs to be taken back.
    """

    def __init__(self, token: str, meta: Mapping[str, str]) -> None:
        self._header_meta = dict(meta)
        self.header = _dumps({"format": FORMAT, "version": VERSION, "token": token, "meta": meta})
        self._functions: dict[int, tuple[CallFunction, int]] = {}
        self._schemas: dict[int, tuple[Schema, int]] = {}
        self._metas: dict[int, tuple[Mapping[str, str], int]] = {}
        self._tags: dict[tuple[tuple[str, str], ...], int] = {}
        self._exceptions: dict[tuple[str, str], int] = {}
        self._token = token
        self._groups: dict[tuple[int, int, int, int, str], int] = {}
        # (function, schema, meta, tags, token) objects -> (group id, width, fast), by identity.
        self._known: dict[tuple[int, ...], tuple[int, int, bool, tuple[Any, ...]]] = {}
        self._texts = _FloatTexts({0.0: "0.0"})
        self._bases: dict[int, tuple[list[Any], list[str]]] = {}

    def calls(self, records: Sequence[CallRecord], out: list[str]) -> None:
        """Append the lines of ``records`` (and the definitions they need) to ``out``."""
        get_text = self._texts.__getitem__
        last: tuple[Any, ...] = ()
        gid, width, fast = 0, 0, False
        for record in records:
            func, schema, token, number, lane, start, end, tags, err, parent, points, meta = record
            if (
                not last
                or func is not last[0]
                or schema is not last[1]
                or meta is not last[2]
                or tags is not last[3]
                or token is not last[4]
            ):
                last = (func, schema, meta, tags, token)
                gid, width, fast = self._group(last, out)
            exception = 0 if err is None else self._exception(err, out)
            if fast and len(points) == 1:
                time_us, row = points[0]
                if len(row) == width:
                    try:
                        if type(row) is DerivedRow:  # the text of its base, a few values set
                            texts = self._base_texts(row.base)[:]
                            for at in row.changed:
                                texts[at] = get_text(row[at])
                            values = ",".join(texts)
                        else:
                            values = ",".join(map(get_text, row))
                    except TypeError:  # a value that is no float: the general path
                        values = "n"
                    if "n" not in values:  # no NaN, no infinity
                        out.append(
                            f"[{gid},{number},{lane},{start},{end - start},"
                            f"{'null' if parent is None else parent},{exception},"
                            f"{time_us - end},{values}]"
                        )
                        continue
            line: list[Any] = [gid, number, lane, start, end - start, parent, exception]
            for time_us, row in points:
                if len(row) != width:
                    raise ValueError(f"a point has {len(row)} values, the schema {width} measures")
                line.append(time_us - end)
                line.extend(map(encode_number, row))  # as .json files: NaN as "NaN"
            out.append(_dumps(line))

    def _base_texts(self, base: list[Any]) -> list[str]:
        """The text of each value of the base of derived rows (see ``multimeter._row``);
        raises ``TypeError`` where one is no float."""
        known = self._bases.get(id(base))
        if known is None or known[0] is not base:
            if len(self._bases) >= _CACHE_LIMIT:
                self._bases.clear()
            # The base is kept with its id, so no other object gets this id.
            known = self._bases[id(base)] = (base, list(map(self._texts.__getitem__, base)))
        return known[1]

    def result(self, result: Result, out: list[str]) -> None:
        """Append the line of a result of another measurement to ``out``."""
        out.append(f'{{"result":{result_text(result)}}}')

    def _group(self, objects: tuple[Any, ...], out: list[str]) -> tuple[int, int, bool]:
        """(group id, values per point, fast path applies) of a call's shared objects."""
        key = tuple(map(id, objects))
        known = self._known.get(key)
        if known is None:
            function, schema, meta, tags, token = objects
            fid, sid = self._function(function, out), self._schema(schema, out)
            mid, tid = self._meta(meta, out), self._tag_set(tags, out)
            gid = self._groups.get((fid, sid, mid, tid, token))
            if gid is None:
                gid = self._groups[(fid, sid, mid, tid, token)] = len(self._groups) + 1
                line = {"def": "group", "id": gid, "function": fid, "schema": sid, "meta": mid}
                line["tags"] = tid
                if token != self._token:
                    line["token"] = token
                out.append(_dumps(line))
            measures = schema.measures
            fast = bool(measures) and all(m.metric.value_type is float for m in measures)
            if len(self._known) >= _CACHE_LIMIT:
                self._known.clear()
            # The objects are kept with their ids, so no other object gets these ids.
            known = self._known[key] = (gid, len(measures), fast, objects)
        return known[0], known[1], known[2]

    def _function(self, function: CallFunction, out: list[str]) -> int:
        known = self._functions.get(id(function))
        if known is not None:
            return known[1]
        fid = len(self._functions) + 1
        self._functions[id(function)] = (function, fid)
        out.append(_dumps({"def": "function", "id": fid, **function._asdict()}))
        return fid

    def _schema(self, schema: Schema, out: list[str]) -> int:
        known = self._schemas.get(id(schema))
        if known is not None:
            return known[1]
        sid = len(self._schemas) + 1
        self._schemas[id(schema)] = (schema, sid)
        out.append(_dumps({"def": "schema", "id": sid, "schema": schema_document(schema)}))
        return sid

    def _meta(self, meta: Mapping[str, str], out: list[str]) -> int:
        known = self._metas.get(id(meta))
        if known is not None:
            return known[1]
        mid = len(self._metas) + 1
        self._metas[id(meta)] = (meta, mid)
        header = self._header_meta
        line: dict[str, Any] = {
            "def": "meta",
            "id": mid,
            "meta": {k: v for k, v in meta.items() if k not in header or header[k] != v},
        }
        unset = [k for k in header if k not in meta]
        if unset:
            line["unset"] = unset
        out.append(_dumps(line))
        return mid

    def _tag_set(self, tags: Mapping[str, str], out: list[str]) -> int:
        content = tuple(tags.items())
        tid = self._tags.get(content)
        if tid is None:
            tid = self._tags[content] = len(self._tags) + 1
            out.append(_dumps({"def": "tags", "id": tid, "tags": dict(content)}))
        return tid

    def _exception(self, error: tuple[str, str], out: list[str]) -> int:
        eid = self._exceptions.get(error)
        if eid is None:
            eid = self._exceptions[error] = len(self._exceptions) + 1
            module, qualname = error
            line = {"def": "exception", "id": eid, "module": module, "qualname": qualname}
            out.append(_dumps(line))
        return eid


class Call(NamedTuple):
    """A call as read from a batch file: its record and the marks of the calls made
    inside it (read before it), as (microseconds since the epoch, label)."""

    record: CallRecord
    marks: list[tuple[int, str]]

    def to_result(self) -> Result:
        """The call's result, as :func:`multimeter.load_results` gives it."""
        return self.record.to_result(self.marks)


class Pending(Protocol):
    """Where the marks of calls not read yet wait, per process."""

    def of(self, token: str) -> dict[int, list[tuple[int, str]]]:
        """The waiting marks of the process with ``token``, by call number."""


def _defined(line: dict[str, Any], name: str, table: dict[int, Any]) -> Any:
    """What ``line[name]`` names in ``table``."""
    number = line.get(name)
    if not isinstance(number, int) or number not in table:
        raise ResultFileError(f"group {line.get('id')} names an unknown {name} {number!r}")
    return table[number]


class _Group:
    """What the calls of one group share, as read back."""

    __slots__ = ("floats", "function", "meta", "schema", "tags", "token", "width")

    def __init__(
        self,
        function: CallFunction,
        schema: Schema,
        meta: dict[str, str],
        tags: dict[str, str],
        token: str,
    ) -> None:
        self.token = token
        self.function = function
        self.schema = schema
        self.meta = meta
        self.tags = tags
        self.width = len(schema.measures)
        self.floats = [i for i, m in enumerate(schema.measures) if m.metric.value_type is float]


class Decoder:
    """Reads the lines of one batch file (after its header) into results.

    ``pending.of(token)`` holds the marks of calls not read yet, by call number:
    a call made inside another adds its marks there for the enclosing call,
    which comes later in the files of the same process (read them in the order
    they were written).
    """

    def __init__(self, header: Any, pending: Pending) -> None:
        header = expect(header, dict, "the header")
        if header.get("format") != FORMAT:
            raise ResultFileError(f"not a batch file of calls (no {FORMAT!r} header)")
        version = header.get("version")
        if version != VERSION:
            raise ResultFileError(
                f"format version {version!r} is not supported (this multimeter reads {VERSION})"
            )
        self.token: str = required(header, "token", str, "header.token")
        self._meta: dict[str, str] = required(header, "meta", dict, "header.meta")
        self._pending = pending.of(self.token)
        self._functions: dict[int, CallFunction] = {}
        self._schemas: dict[int, Schema] = {}
        self._metas: dict[int, dict[str, str]] = {}
        self._tags: dict[int, dict[str, str]] = {}
        self._exceptions: dict[int, tuple[str, str]] = {}
        self._groups: dict[int, _Group] = {}
        self._definers: dict[str, Callable[[dict[str, Any]], None]] = {
            "function": self._function,
            "schema": self._schema,
            "meta": self._meta_line,
            "tags": self._tags_line,
            "exception": self._exception,
            "group": self._group,
        }

    def line(self, value: Any) -> Iterator[Result]:
        """The results of one decoded line (none for a definition)."""
        if isinstance(value, list):
            yield self.call(value).to_result()
            return
        line = expect(value, dict, "a line")
        if "result" in line:
            yield result_from_document(line["result"])
            return
        self.define(line)

    def define(self, line: Any) -> None:
        """Take in a definition line (``{"def": ...}``).

        Raises:
            ResultFileError: for a line that is no known definition.
        """
        line = expect(line, dict, "a line")
        kind = line.get("def")
        definer = self._definers.get(kind) if isinstance(kind, str) else None
        if definer is None:
            raise ResultFileError(f"unknown line kind {kind!r}")
        definer(line)

    def _id(self, line: dict[str, Any], table: dict[int, Any]) -> int:
        number = required(line, "id", int, f"{line['def']}.id")
        if number in table:
            raise ResultFileError(f"{line['def']} {number} is defined twice")
        return int(number)

    def _function(self, line: dict[str, Any]) -> None:
        fid = self._id(line, self._functions)
        fields = (required(line, name, str, f"function.{name}") for name in CallFunction._fields)
        self._functions[fid] = CallFunction(*fields)

    def _schema(self, line: dict[str, Any]) -> None:
        sid = self._id(line, self._schemas)
        document = {"identifier": "schema", "schema": required(line, "schema", dict, "schema")}
        self._schemas[sid] = result_from_header(document).schema

    def _meta_line(self, line: dict[str, Any]) -> None:
        mid = self._id(line, self._metas)
        meta = {**self._meta, **required(line, "meta", dict, "meta.meta")}
        for key in line.get("unset") or ():
            meta.pop(key, None)
        self._metas[mid] = meta

    def _tags_line(self, line: dict[str, Any]) -> None:
        self._tags[self._id(line, self._tags)] = required(line, "tags", dict, "tags.tags")

    def _exception(self, line: dict[str, Any]) -> None:
        eid = self._id(line, self._exceptions)
        module = required(line, "module", str, "exception.module")
        self._exceptions[eid] = (module, required(line, "qualname", str, "exception.qualname"))

    def _group(self, line: dict[str, Any]) -> None:
        gid = self._id(line, self._groups)
        self._groups[gid] = _Group(
            _defined(line, "function", self._functions),
            _defined(line, "schema", self._schemas),
            _defined(line, "meta", self._metas),
            _defined(line, "tags", self._tags),
            member(line, "token", str, "group.token", self.token),
        )

    def call(self, line: Any) -> Call:
        """The call of a decoded call line (a JSON array), with the marks of the calls
        made inside it; the marks it adds to the call it was made in wait in ``pending``.

        Raises:
            ResultFileError: for a line that is no call of this file.
        """
        line = expect(line, list, "a call")
        if len(line) < 7:
            raise ResultFileError(f"a call has 7 fields and its points, not {len(line)} values")
        gid, number, lane, started, duration, parent, exception = line[:7]
        if not all(type(v) is int for v in (number, lane, started, duration)):
            raise ResultFileError("number, lane, started and duration of a call must be integers")
        if parent is not None and type(parent) is not int:
            raise ResultFileError(f"parent must be a call number or null, not {parent!r}")
        group = self._groups.get(gid)
        if group is None:
            raise ResultFileError(f"a call names an unknown group {gid!r}")
        if exception == 0:
            error = None
        elif exception in self._exceptions:
            error = self._exceptions[exception]
        else:
            raise ResultFileError(f"a call names an unknown exception {exception!r}")
        ended = started + duration
        step = group.width + 1
        rest = line[7:]
        if len(rest) % step:
            raise ResultFileError(
                f"a call's points have {len(rest)} values, not a multiple of {step}"
                f" (time and {group.width} values each)"
            )
        points = []
        for start in range(0, len(rest), step):
            offset = rest[start]
            if type(offset) is not int:
                raise ResultFileError(f"a point's time must be an integer, not {offset!r}")
            row = rest[start + 1 : start + step]
            for index in group.floats:
                if isinstance(row[index], str):
                    row[index] = decode_number(row[index])
            points.append((ended + offset, row))
        record = CallRecord(
            group.function,
            group.schema,
            group.token,
            number,
            lane,
            started,
            ended,
            group.tags,
            error,
            parent,
            points,
            group.meta,
        )
        pending = self._pending
        own = pending.pop(number, [])
        if parent is not None:
            pending.setdefault(parent, []).extend([*nested_marks(record), *own])
        return Call(record, own)


__all__ = ["EXTENSION", "FORMAT", "VERSION", "Call", "Decoder", "Encoder", "Pending"]
