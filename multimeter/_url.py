"""URL checks for the settings that take one."""

from __future__ import annotations

import urllib.parse
from typing import Any


def is_http_url(url: Any) -> bool:
    """Whether ``url`` is an ``http://`` or ``https://`` URL with a host and a valid port."""
    if not isinstance(url, str):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError for a port that is no number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0
