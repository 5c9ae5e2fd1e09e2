"""The run's own result: the marks of measured calls, where it was stored, its summary."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable
from typing import Any

from multimeter import _process
from multimeter._cli._common import format_bytes, printable
from multimeter._marks import MarkSink
from multimeter.result import Result, us_to_datetime
from multimeter.storages.base import Storage
from multimeter.storages.dummy import DummyStorage
from multimeter.storages.file import FileStorage
from multimeter.storages.jsonl import JsonLinesStorage
from multimeter.storages.log import LogStorage

#: The most marks a run keeps (enter and exit of measured calls): a hot function
#: measured a million times would otherwise make the run's result huge.
MAX_MARKS = 100_000


def put_marks_on(marks: MarkSink, result: Result) -> None:
    """Add the run's marks to ``result`` in time order (a thread's marks may come
    late), and how many were left out."""
    for timestamp_us, label in marks.marks():
        result.add_mark(us_to_datetime(timestamp_us), label)
    if marks.left_out:
        result.add_meta_data(marks_left_out=marks.left_out)


class Located(Storage):
    """Stores through ``inner`` and finds out where the result went (a path, a
    spool, InfluxDB, a log); a failure is kept in :attr:`error`, not raised (the
    command prints it on stderr: the library would log it)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.where: str | None = None
        self.error: BaseException | None = None

    def store(self, result: Result) -> None:
        """Store ``result`` with the wrapped storage; remember where it went."""
        target = getattr(self.inner, "inner", self.inner)  # aggregate mode passes it on
        before = _files(target)
        try:
            self.inner.store(result)
        except Exception as error:  # noqa: BLE001 - reported by the command
            self.error = error
            return
        self.where = _where(target, result, before)

    def close(self) -> None:
        """Close the wrapped storage."""
        self.inner.close()

    def __repr__(self) -> str:
        return repr(self.inner)


def _files(storage: Storage) -> dict[str, int]:
    """The files a store may add to or grow, with their sizes."""
    if isinstance(storage, JsonLinesStorage):
        pattern = f"calls-{_process.current().token}-*.jsonl"
        return _sizes(storage.directory.glob(pattern))
    spool = getattr(storage, "spool", None)
    if spool is not None and isinstance(getattr(spool, "directory", None), pathlib.Path):
        return _sizes(spool.directory.glob("*"))
    return {}


def _sizes(paths: Iterable[pathlib.Path]) -> dict[str, int]:
    sizes = {}
    for path in paths:
        try:
            sizes[str(path)] = path.stat().st_size
        except OSError:
            continue
    return sizes


def _where(storage: Storage, result: Result, before: dict[str, int]) -> str:
    if isinstance(storage, DummyStorage):
        return "not stored (storage: none)"
    if isinstance(storage, LogStorage):
        return "logged (structlog event 'measurement')"
    if isinstance(storage, FileStorage):
        path = storage.path_for(result.identifier)
        if path.exists():
            return os.path.abspath(path)
        return f"stored in {os.path.abspath(storage.save_directory)}"
    after = _files(storage)
    changed = [path for path, size in after.items() if before.get(path) != size]
    if isinstance(storage, JsonLinesStorage):
        if len(changed) == 1:
            return os.path.abspath(changed[0])
        return f"stored in {os.path.abspath(storage.directory)}"
    spool = getattr(storage, "spool", None)
    if spool is not None:
        if changed:
            from multimeter.storages.influx import InfluxDBStorage

            server = "InfluxDB" if isinstance(storage, InfluxDBStorage) else "the OTLP endpoint"
            return (
                f"kept in the spool {spool.directory} ({server} could not be reached;"
                " `multimeter push` sends it later)"
            )
        return f"sent to {storage!r}"
    return f"stored by {storage!r}"


def _integral(result: Result, keys: Iterable[str]) -> dict[str, float]:
    """CPU seconds of each rate in ``keys``: each point's rate times its interval."""
    wanted = [key for key in keys if key in {m.key for m in result.schema.measures}]
    totals = dict.fromkeys(wanted, 0.0)
    previous = result.start
    for point in result.points:
        if previous is not None:
            seconds = max((point.datetime - previous).total_seconds(), 0.0)
            for key in wanted:
                rate = point.values.get(key)
                if rate is not None and rate == rate:
                    totals[key] += rate * seconds
        previous = point.datetime
    return totals


def _highest(result: Result, key: str) -> float | None:
    if key not in {m.key for m in result.schema.measures}:
        return None
    values = [v for v in result.values(key) if v is not None and v == v and v > 0]
    return max(values) if values else None


def _children_peak(result: Result) -> float | None:
    """The highest RSS of a waited-for process of a command's tree, where it tells.

    Linux counts in a child's ``max_rss`` the memory of the process it was forked
    from, before it ran the command: multimeter's own. A figure no higher than
    multimeter's (``process.max_rss``) may be nothing but that, so it tells nothing.
    """
    children = _highest(result, "children.max_rss")
    own = _highest(result, "process.max_rss")
    if children is None or (own is not None and children <= own):
        return None
    return children


def figures(result: Result, *, tree: bool) -> dict[str, Any]:
    """Duration, CPU user and system seconds and peak memory of the run.

    A script's run: its process and the children it waited for (``resource``
    probe), or its ``psutil`` figures. A command's run (``tree``): the larger of
    the command's process tree as sampled (``tree.*``) and of the children
    waited for (``children.*``: every process of the tree that was waited for,
    short-lived ones too). ``None`` where the probes do not tell.
    """
    summary = result.summary()
    keys = ("process", "children", "proc", "tree")
    rates = _integral(
        result, [f"{subject}.cpu_{kind}" for subject in keys for kind in ("user", "system")]
    )
    cpu: dict[str, float | None] = {}
    for kind in ("user", "system"):
        if tree:
            found = [rates.get(f"tree.cpu_{kind}"), rates.get(f"children.cpu_{kind}")]
            known = [value for value in found if value is not None]
            cpu[kind] = max(known) if known else None
        elif f"process.cpu_{kind}" in rates:
            cpu[kind] = rates[f"process.cpu_{kind}"] + rates.get(f"children.cpu_{kind}", 0.0)
        else:
            cpu[kind] = rates.get(f"proc.cpu_{kind}")
    if tree:
        peak = _highest(result, "tree.rss") or _children_peak(result)
    else:  # the process is the run: its lifetime high-water mark is the run's
        peak = summary["max_rss_bytes"] or summary["peak_memory_bytes"]
    return {
        "duration_s": summary["duration_s"],
        "cpu_user_s": cpu["user"],
        "cpu_system_s": cpu["system"],
        "peak_memory_bytes": peak,
        "points": summary["points"],
        "marks": summary["marks"],
    }


def summary_lines(name: str, ending: str, result: Result, where: str, *, tree: bool) -> list[str]:
    """The summary printed at the end of a run (three lines; control characters of
    the name, the run and where the result went escaped)."""
    found = figures(result, tree=tree)

    def seconds(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} s"

    duration = found["duration_s"]
    peak = found["peak_memory_bytes"]
    lines = [
        f"multimeter run: {name} {ending} after {seconds(duration)}",
        f"  CPU {seconds(found['cpu_user_s'])} user, {seconds(found['cpu_system_s'])} system;"
        f" peak memory {'n/a' if peak is None else format_bytes(peak)};"
        f" {found['points']} points, {found['marks']} marks",
        f"  result: {where} (run {result.meta_data.get('run', '?')})",
    ]
    return [printable(line) for line in lines]
