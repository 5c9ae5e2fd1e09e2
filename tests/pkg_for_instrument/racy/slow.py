from . import gate


def a():
    return "a"


if gate is not None:  # the test instruments the package while the import waits here
    started, proceed = gate
    started.set()
    proceed.wait(10)

from .other import b  # noqa: E402 - imported in the middle on purpose


def c():
    return "c"


__all__ = ["a", "b", "c"]
