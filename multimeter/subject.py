"""Subjects: what a metric is measured on."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CALLS", "CHILDREN", "PROC", "PROCESS", "PYTHON", "SYSTEM", "Subject", "TREE"]


@dataclass(frozen=True)
class Subject:
    """Something measured, such as the current process.

    >>> Subject("process", "The current process").key
    'process'
    """

    key: str
    description: str = ""


PROCESS = Subject("process", "The current process, all of its threads")
CHILDREN = Subject(
    "children",
    "All child processes of the current process that have ended and been waited for",
)
PYTHON = Subject(
    "python", "The Python interpreter of this process (its heap and garbage collector)"
)
CALLS = Subject("calls", "The calls of one measured function (and tag set) that ended in one cycle")
PROC = Subject("proc", "The process read with psutil: this one, or the one whose pid was given")
TREE = Subject("tree", "That process and all its live descendants (recursively), summed")
SYSTEM = Subject("system", "The whole machine (or container, as the kernel shows it)")
