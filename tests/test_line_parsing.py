"""LineFormat files load back equal, whatever characters names, tags and strings hold."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multimeter import LineFormat, load_result
from multimeter.result import Result

T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)

# Characters that line protocol escapes, quotes or splits on, and some beyond ASCII.
AWKWARD = [
    'say "hi"',
    '"',
    "a,b",
    "a=b",
    "a b",
    "back\\slash",
    "back\\,comma",
    "back\\ space",
    "back\\=equals",
    'back\\"quote',
    "\\\\double",
    "ünïcødé ✓ 测量",
    "line\u2028separator",
    "next\x85line",
    '" ,= \\x',
]


def _round_trip(tmp_path, result: Result) -> Result:
    """Save with LineFormat to a file (any identifier, even one no file name allows), load."""
    path = tmp_path / "result.line"
    with open(path, "wb") as stream:
        LineFormat().save_result_to_stream(result, stream)
    return load_result(path)


def _result(identifier: str = "m", tags: dict[str, str] | None = None) -> Result:
    result = Result(identifier=identifier, tags=tags or {})
    result.append(T0, {"a.x": 1.5, "a.n": 3})
    return result


@pytest.mark.parametrize("identifier", AWKWARD)
def test_identifiers_with_awkward_characters_load_back(tmp_path, identifier):
    """The measurement name survives quotes, commas, equals signs, spaces and backslashes."""
    result = _result(identifier, {"stage": "etl"})
    assert result == _round_trip(tmp_path, result)


@pytest.mark.parametrize("text", AWKWARD)
def test_tag_keys_with_awkward_characters_load_back(tmp_path, text):
    """A tag key is escaped and unescaped exactly."""
    result = _result(tags={text: "value", "other": "x"})
    assert result == _round_trip(tmp_path, result)


@pytest.mark.parametrize("text", AWKWARD)
def test_tag_values_with_awkward_characters_load_back(tmp_path, text):
    """A tag value is escaped and unescaped exactly, also next to other tags."""
    result = _result(tags={"a": "first", "k": text, "z": "last"})
    assert result == _round_trip(tmp_path, result)


@pytest.mark.parametrize("text", [*AWKWARD, "", "ends with \\", "\\", '\\"', "a\\\\b"])
def test_string_fields_and_marks_with_awkward_characters_load_back(tmp_path, text):
    """Quoted strings keep quotes, backslashes, commas, equals signs and spaces."""
    result = Result(identifier="m", tags={"k": 'v "q"'})
    result.append(T0, {"a.text": text, "a.x": 2.5, "a.after": "x y"})
    result.add_mark(T0 + timedelta(seconds=1), text)
    result.add_mark(T0 + timedelta(seconds=2), "plain")
    assert result == _round_trip(tmp_path, result)


@pytest.mark.parametrize("key", ['quo"te.x', "a b.c", "a,b.c", "a=b.c", "back\\slash.x"])
def test_field_keys_with_awkward_characters_load_back(tmp_path, key):
    """A field key is escaped like a tag key."""
    result = Result(identifier="m")
    result.append(T0, {key: 1.5, "a.text": 'q"'})
    assert result == _round_trip(tmp_path, result)


def test_plain_line_protocol_unescapes_like_influxdb():
    """Header-less line protocol: escapes in names, quotes only in string fields."""
    data = (
        b'my\\ "run,ta\\=g="v\\,1" s="a \\"b\\" \\\\ c",x=1.5,n=3i,b=true 1000\n'
        b'my\\ "run,ta\\=g="v\\,1" mark="done, \\"ok\\"" 2000\n'
    )
    result = LineFormat().load_result_from_stream(io.BytesIO(data))
    assert ('my "run', {"ta=g": '"v,1"'}) == (result.identifier, result.tags)
    assert [{"s": 'a "b" \\ c', "x": 1.5, "n": 3, "b": True}] == [p.values for p in result.points]
    assert ['done, "ok"'] == [m.label for m in result.marks]


# Text a tag, identifier or string field may hold: no control characters (tags and
# identifiers refuse them; line breaks in strings become spaces).
_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
_name = _text.filter(lambda s: not s.startswith("_") and not s.endswith("\\"))
# A measurement starting with "#" makes its lines comments (for InfluxDB too): the line
# format refuses such identifiers (tested below), so they are left out here.
_identifier = _name.filter(lambda s: not s.startswith("#"))


@settings(max_examples=150, deadline=None)
@given(
    identifier=_identifier,
    tags=st.dictionaries(_name, _name, max_size=3),
    key=_name,
    text=_text,
    label=_text,
)
def test_any_names_tags_and_strings_load_back(identifier, tags, key, text, label):
    """Whatever line protocol has to escape, LineFormat reads back what it wrote."""
    result = Result(identifier=identifier, tags=tags)
    result.append(T0, {"a.text": text, key: 0.5})
    result.add_mark(T0, label)
    stream = io.BytesIO()
    LineFormat().save_result_to_stream(result, stream)
    assert result == LineFormat().load_result_from_stream(io.BytesIO(stream.getvalue()))


def test_an_identifier_starting_with_a_hash_is_refused_by_the_line_format():
    """'#x' would make every line a comment, skipped by InfluxDB and by load_result()."""
    with pytest.raises(ValueError, match="comment"):
        LineFormat().save_result_to_stream(Result(identifier="#x"), io.BytesIO())
