"""After os.fork() the child has a working sampler of its own."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from multimeter import FileStorage, JsonFormat, Multimeter, ResourceProbe, load_result

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


def _meter(directory) -> Multimeter:
    return Multimeter(
        ResourceProbe(), cycle_time=0.01, storage=FileStorage(directory, JsonFormat())
    )


def test_a_forked_child_measures_its_own_calls_and_not_the_parents(tmp_path):
    """The child stores its own results; the parent's open measurement is stored by the parent."""
    meter = _meter(tmp_path)
    parent = meter.measure("parent")
    parent.start()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            with meter.measure("child") as result:
                deadline = time.monotonic() + 10
                while len(result) < 2 and time.monotonic() < deadline:  # sampler ticks here
                    sum(i * i for i in range(10_000))
            parent.end()  # owned by the parent: not stored here
            code = 0 if len(result) >= 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    assert ["child.json"] == sorted(os.listdir(tmp_path))
    parent.end()
    assert ["child.json", "parent.json"] == sorted(os.listdir(tmp_path))
    child = load_result(tmp_path / "child.json")
    assert str(pid) == child.meta_data["pid"]


def _measure_in_child(directory: str) -> None:
    with _meter(directory).measure(f"mp-{os.getpid()}"):
        sum(i * i for i in range(100_000))


def test_multiprocessing_fork_children_store_their_results(tmp_path):
    """Processes started with the fork method measure and store like the parent."""
    context = multiprocessing.get_context("fork")
    with _meter(tmp_path).measure("around"):
        processes = [
            context.Process(target=_measure_in_child, args=(str(tmp_path),)) for _ in range(3)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
    assert all(0 == p.exitcode for p in processes)
    names = sorted(os.listdir(tmp_path))
    assert 4 == len(names)
    assert sorted(f"mp-{p.pid}.json" for p in processes) == [
        n for n in names if n.startswith("mp-")
    ]
