"""MkDocs hook: pages that show what the code defines are filled from the code."""

from __future__ import annotations

from typing import Any

ENV_TABLE = "<!-- multimeter:environment-table -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace the environment table's placeholder with the table made from the code."""
    if ENV_TABLE in markdown:
        from multimeter._env import markdown_table

        markdown = markdown.replace(ENV_TABLE, markdown_table())
    return markdown
