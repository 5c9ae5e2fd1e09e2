"""The HTML report of ``multimeter report``: one self-contained page, charts by uPlot."""

from __future__ import annotations

from multimeter._report._build import MAX_CHARTED, build, write_report

__all__ = ["MAX_CHARTED", "build", "write_report"]
