"""The report page: the template, styles and scripts shipped as package data,
with the data embedded as JSON, written as one self-contained HTML file."""

from __future__ import annotations

import html
import json
import os
import re
from importlib import resources
from typing import Any

from multimeter._cli._output import writing
from multimeter._version import __version__

#: The package data inlined into every page (see ``assets/``; uPlot's licence is
#: ``assets/uPlot.LICENSE``).
_ASSETS = {
    "uplot_css": "uPlot.min.css",
    "uplot_js": "uPlot.iife.min.js",
    "report_css": "report.css",
    "report_js": "report.js",
}
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def _asset(name: str) -> str:
    assets = resources.files("multimeter._report").joinpath("assets")
    return assets.joinpath(name).read_text("utf-8")


def embedded_json(data: Any) -> str:
    """``data`` as compact JSON that is safe inside a ``<script>`` element: every
    ``<`` is escaped, so no ``</script>`` or ``<!--`` in a label can end it.

    >>> embedded_json({"label": "</script>"})
    '{"label":"\\\\u003c/script>"}'
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: Any, title: str) -> str:
    """The HTML page for ``data`` (see ``_data.chart_data``), titled ``title``."""
    values = {name: _asset(file) for name, file in _ASSETS.items()}
    values["data"] = embedded_json(data)
    values["title"] = html.escape(title)
    values["version"] = html.escape(__version__)
    return _PLACEHOLDER.sub(lambda match: values[match[1]], _asset("report.html"))


def write_page(output: str | os.PathLike[str], text: str) -> None:
    """Write the page ``text`` to ``output``: ``-`` for stdout, a FIFO or device
    written into, a file replaced atomically (see ``multimeter._cli._output``)."""
    with writing(os.fspath(output)) as stream:
        stream.write(text.encode("utf-8"))
