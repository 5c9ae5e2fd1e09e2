"""The summary of a measured test run: one row per test, stored as one JSON file per run.

Layout under the results directory (``--multimeter-dir``, default ``.multimeter``)::

    <run-id>/                      the tests' results (JSON Lines batch files, one per process)
    <run-id>/pytest-summary.json   {"format": ..., "run": ..., "started": ..., "tests": [row, ...]}

Run identifiers sort by their start time (``20261130T231502-1a2b3c``).
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

FORMAT = "multimeter-pytest-summary"
VERSION = 1
SUMMARY_NAME = "pytest-summary.json"


@dataclass(frozen=True)
class Row:
    """One test's figures (seconds, bytes); ``None`` where a figure is not known."""

    #: The pytest node id.
    test: str
    #: passed, failed, skipped, error, xfailed or xpassed.
    outcome: str
    #: Setup start to teardown end.
    duration_s: float | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    #: How far the resident set size rose above its size at the test's start, at its peak.
    peak_memory_bytes: int | None
    #: The resident set size at the test's peak.
    peak_rss_bytes: int | None
    setup_s: float | None = None
    call_s: float | None = None
    teardown_s: float | None = None
    #: The xdist worker that ran it (``gw0``), empty without xdist.
    worker: str = ""
    #: The identifier of the test's result in the run folder.
    identifier: str = ""

    @property
    def cpu_s(self) -> float | None:
        """User plus system CPU seconds."""
        if self.cpu_user_s is None or self.cpu_system_s is None:
            return None
        return self.cpu_user_s + self.cpu_system_s

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object."""
        return {name: getattr(self, name) for name in _ROW_FIELDS}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Row:
        """The row from :meth:`to_json` (unknown keys are passed over)."""
        return cls(**{k: v for k, v in value.items() if k in _ROW_FIELDS})


_ROW_FIELDS = tuple(f.name for f in fields(Row))


@dataclass(frozen=True)
class Summary:
    """A stored run: its identifier, start and rows."""

    run: str
    started: str
    rows: tuple[Row, ...]
    path: pathlib.Path | None = None

    def by_test(self) -> dict[str, Row]:
        """The rows by node id (the last one where a test ran twice)."""
        return {row.test: row for row in self.rows}


def write_summary(
    directory: pathlib.Path,
    run: str,
    started: str,
    rows: Sequence[Row],
    meta_data: Mapping[str, str],
) -> pathlib.Path:
    """Write ``<directory>/pytest-summary.json`` atomically; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SUMMARY_NAME
    header = {
        "format": FORMAT,
        "version": VERSION,
        "run": run,
        "started": started,
        "meta_data": dict(meta_data),
    }
    # One row a line: readable with grep and diff, cheap to write.
    lines = ",\n".join(json.dumps(row.to_json()) for row in rows)
    text = json.dumps(header)[:-1] + ', "tests": [\n' + lines + "\n]}\n"
    # Not mkstemp: its 0600 would keep the summary from the other users the results
    # files (0644 less the umask) are readable by.
    temporary = directory / f".summary-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_summary(path: pathlib.Path) -> Summary:
    """A summary file (or the summary in a run folder).

    Raises:
        ValueError: naming the file, when it is not a summary of this format.
        OSError: when it cannot be read.
    """
    if path.is_dir():
        path = path / SUMMARY_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError("not a multimeter pytest summary")
        rows = tuple(Row.from_json(row) for row in document["tests"])
        return Summary(str(document["run"]), str(document["started"]), rows, path)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{str(path)!r} is not a readable run summary: {error}") from None


def stored_summaries(directory: pathlib.Path) -> Iterable[pathlib.Path]:
    """The summary files of the runs stored under ``directory``."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"*/{SUMMARY_NAME}"))


def latest_before(directory: pathlib.Path, run: str, started: str) -> Summary | None:
    """The run stored under ``directory`` that started last before ``started``
    (other than ``run``); unreadable summaries and runs that measured no test
    (``-k`` matching nothing, a run stopped in its collection) are passed over: a gate
    against them would pass anything."""
    best: Summary | None = None
    for path in stored_summaries(directory):
        try:
            summary = read_summary(path)
        except (ValueError, OSError):
            continue
        if summary.run == run or path.parent.name == run or summary.started >= started:
            continue
        if not summary.rows:
            continue
        if best is None or (summary.started, summary.run) > (best.started, best.run):
            best = summary
    return best
