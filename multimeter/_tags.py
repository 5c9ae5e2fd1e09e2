"""Validation and normalisation of tags: string keys, string values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FORBIDDEN = {chr(c) for c in range(32)} | {"\x7f"}


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (what ``os.fsdecode()`` makes of a
    file name that is not UTF-8, ``'caf\\udce9'``) become their escape
    (``'caf\\\\udce9'``), which every storage can write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def tag_value_to_str(key: str, value: Any) -> str:
    """Convert a tag value to its stored string form.

    Strings are kept; ``bool`` becomes ``"true"``/``"false"``; ``int`` and
    ``float`` become ``str(value)``. Anything else raises ``ValueError``.
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        raise ValueError(
            f"tag {key!r}: value {value!r} of type {type(value).__name__} cannot be stored;"
            " allowed: str, int, float, bool"
        )
    if _FORBIDDEN.intersection(text):
        raise ValueError(f"tag {key!r}: value {text!r} contains a control character")
    return clean_text(text)


def normalize_tags(tags: Mapping[Any, Any] | None) -> dict[str, str]:
    """Return ``tags`` as a new ``dict[str, str]``, or raise ``ValueError`` naming the tag."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ValueError(
            f"tags must be a mapping of str keys to values such as {{'stage': 'etl'}}, got {tags!r}"
        )
    normalized = {}
    for key, value in tags.items():
        if not isinstance(key, str):
            raise ValueError(f"tag key {key!r} must be a str, not {type(key).__name__}")
        if not key:
            raise ValueError("tag key must not be empty")
        if _FORBIDDEN.intersection(key):
            raise ValueError(f"tag key {key!r} contains a control character")
        normalized[clean_text(key)] = tag_value_to_str(key, value)
    return normalized
