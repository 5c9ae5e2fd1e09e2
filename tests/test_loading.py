"""load_result() on files that are not results: one documented error naming the file."""

from __future__ import annotations

import io
import pickle

import pytest

import multimeter
from multimeter import JsonFormat, LineFormat, ResultFileError, _loading, load_result

_T = '"2026-01-01T00:00:00+00:00"'
_DEEP = b"[" * 100_000 + b"]" * 100_000


def _json(**parts: str) -> bytes:
    """A JSON result document with the given members (as JSON text) over a valid base."""
    members = {"identifier": '"x"', **parts}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in members.items()) + "}").encode()


MALFORMED_JSON = {
    "empty file": (b"", "not JSON"),
    "truncated": (b'{"identifier": "x", "points": [', "not JSON"),
    "not UTF-8": (b'{"identifier": "\xff\xfe"}', "UTF-8"),
    "an array": (b"[]", "must be an object"),
    "a number": (b"3", "must be an object"),
    "an empty object": (b"{}", "identifier"),
    "identifier a number": (b'{"identifier": 3}', "identifier"),
    "identifier empty": (b'{"identifier": ""}', "identifier"),
    "deeply nested arrays": (_DEEP, "nested too deeply"),
    "deeply nested in points": (_json(points=_DEEP.decode()), "nested too deeply"),
    "tags an array": (_json(tags="[1]"), "tags"),
    "tag value null": (_json(tags='{"k": null}'), "tag 'k'"),
    "meta_data an array": (_json(meta_data="[1, 2]"), "meta_data"),
    "schema an array": (_json(schema="[]"), "schema"),
    "metrics an object": (_json(schema='{"metrics": {}}'), "metrics"),
    "metric without key": (_json(schema='{"metrics": [{"unit": "s"}]}'), "key"),
    "metric key a number": (_json(schema='{"metrics": [{"key": 3}]}'), "key"),
    "metric limit a string": (
        _json(schema='{"metrics": [{"key": "m", "min_value": "x"}]}'),
        "min_value",
    ),
    "subject a string": (_json(schema='{"subjects": ["s"]}'), "subjects[0]"),
    "measure of unknown metric": (
        _json(schema='{"subjects": [{"key": "s"}], "measures": [{"subject": "s", "metric": "m"}]}'),
        "unknown metric 'm'",
    ),
    "points an object": (_json(points="{}"), "points"),
    "point a number": (_json(points="[3]"), "points[0]"),
    "point without datetime": (_json(points='[{"values": {}}]'), "points[0].datetime"),
    "point without values": (_json(points=f'[{{"datetime": {_T}}}]'), "points[0].values"),
    "values an array": (_json(points=f'[{{"datetime": {_T}, "values": [1]}}]'), "values"),
    "datetime a number": (_json(points='[{"datetime": 5, "values": {}}]'), "datetime"),
    "datetime not ISO": (_json(points='[{"datetime": "yesterday", "values": {}}]'), "datetime"),
    "datetime naive": (
        _json(points='[{"datetime": "2026-01-01T00:00:00", "values": {}}]'),
        "timezone",
    ),
    "marks an object": (_json(marks="{}"), "marks"),
    "mark without label": (_json(marks=f'[{{"datetime": {_T}}}]'), "marks[0].label"),
    "mark label a number": (_json(marks=f'[{{"datetime": {_T}, "label": 3}}]'), "label"),
    "integer too long": (
        _json(points=f'[{{"datetime": {_T}, "values": {{"a": {"9" * 5000}}}}}]'),
        "digits",
    ),
}

_HEADER = b'# multimeter-result {"identifier": "m"}\n'

MALFORMED_LINE = {
    "empty file": (b"", "no line-protocol data"),
    "only comments": (b"# nothing here\n\n", "no line-protocol data"),
    "garbage": (b"hello world\n", "line 1"),
    "binary garbage": (b"\x00\x01\x02 =,\n", "line 1"),
    "not UTF-8": (b"m x=1 1\n\xff\xfe x=2 2\n", "UTF-8"),
    "no fields": (b"m 1000\n", "line 1"),
    "field without value": (b"m x= 1000\n", "line 1"),
    "field value a word": (b"m x=abc 1000\n", "not a field value"),
    "unterminated string": (b'm x="abc 1000\n', "line 1"),
    "tag without value": (b"m,k x=1 1000\n", "line 1"),
    "timestamp a word": (b"m x=1 soon\n", "line 1"),
    "timestamp too large": (b"m x=1 99999999999999999999999\n", "timestamp"),
    "two spaces": (b"m  x=1 1000\n", "line 1"),
    "bad line after good ones": (b"m x=1 1000\nm x=2 2000\nm x 3000\n", "line 3"),
    "header not JSON": (b"# multimeter-result {not json\n", "line 1"),
    "header an array": (b"# multimeter-result []\n", "must be an object"),
    "header without identifier": (b'# multimeter-result {"tags": {}}\nm x=1 1\n', "identifier"),
    "header deeply nested": (b"# multimeter-result " + _DEEP + b"\n", "nested too deeply"),
    "header after data": (b"m x=1 1000\n" + _HEADER, "line 2"),
}


MALFORMED = [(".json", content, reason) for content, reason in MALFORMED_JSON.values()] + [
    (".line", content, reason) for content, reason in MALFORMED_LINE.values()
]
MALFORMED_IDS = [f"json: {name}" for name in MALFORMED_JSON] + [
    f"line: {name}" for name in MALFORMED_LINE
]


@pytest.mark.parametrize(("suffix", "content", "reason"), MALFORMED, ids=MALFORMED_IDS)
def test_malformed_files_raise_result_file_error_naming_the_file(tmp_path, suffix, content, reason):
    """Whatever is wrong with a .json or .line file: ResultFileError with file and reason."""
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(ResultFileError) as caught:
        load_result(path)
    assert str(path) == caught.value.path
    assert str(path) in str(caught.value)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "file_format", [JsonFormat(), LineFormat()], ids=lambda f: type(f).__name__
)
def test_formats_reading_a_stream_raise_result_file_error_without_a_path(file_format):
    """load_result_from_stream raises the same error; there is no file to name."""
    with pytest.raises(ResultFileError) as caught:
        file_format.load_result_from_stream(io.BytesIO(b"[1, 2"))
    assert caught.value.path is None


def test_result_file_error_is_a_value_error():
    """Callers that catch ValueError keep working."""
    assert issubclass(multimeter.ResultFileError, ValueError)


def test_result_file_error_survives_pickling():
    """The error crosses process boundaries (e.g. multiprocessing) with path and reason."""
    error = ResultFileError("points must be an array", "results/x.json")
    copy = pickle.loads(pickle.dumps(error))
    assert (error.reason, error.path, str(error)) == (copy.reason, copy.path, str(copy))


@pytest.mark.parametrize("name", ["missing.json", "missing.line"])
def test_a_file_that_cannot_be_opened_raises_os_error(tmp_path, name):
    """A missing file is an OSError (FileNotFoundError), not a ResultFileError."""
    with pytest.raises(FileNotFoundError):
        load_result(tmp_path / name)


def test_a_directory_named_like_a_result_raises_os_error(tmp_path):
    """A directory cannot be read as a file: OSError."""
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(IsADirectoryError):
        load_result(tmp_path / "dir.json")


def test_batch_lines_keep_lines_up_to_the_cap_and_read_past_longer_ones(monkeypatch):
    """With a cap of 4 bytes: a 4-byte line is kept, a 5-byte one is None, a short
    partial last line is left out and a long one is None."""
    monkeypatch.setattr(_loading, "MAX_LINE_BYTES", 4)
    text = b"abcd\nabcde\nab\nabcdefghij\nxyz"
    assert [b"abcd\n", None, b"ab\n", None] == list(_loading.batch_lines(io.BytesIO(text)))
    assert [None] == list(_loading.batch_lines(io.BytesIO(b"abcdefgh")))
