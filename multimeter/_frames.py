"""Wrapper frames that look like the wrapped function's to code that inspects its caller.

``collections.namedtuple()``, ``enum.Enum("Name", ...)``, ``attr.make_class()``,
``typing.NewType()``, ``warnings.warn(stacklevel=2)`` and ``logging`` with
``stacklevel`` read their caller's frame: its globals (``__name__``), its file
and line. When a measured function calls them, the frame above the function
is multimeter's wrapper. :func:`relocate` makes a copy of a wrapper function
whose frames carry the wrapped function's module globals, file name, first
line (every instruction reports the line of the wrapped function's ``def``,
or of its first decorator) and names.

A wrapper to be relocated must not read global names: its code runs with the
wrapped module's globals, where such a name may mean something else. It takes
everything it uses from its closure (see :func:`reads_globals`).
"""

from __future__ import annotations

import dis
import sys
import types
from typing import Any

# Where the line table format is known (3.10 and later), the wrapper's lines are
# rewritten to one line of the wrapped function's file; before, only globals and
# names are (the file stays multimeter's, whose line numbers are then right).
_ONE_LINE_TABLES = sys.version_info >= (3, 10)
_LOCATION_TABLES = sys.version_info >= (3, 11)
# A location-table entry (3.11+): 1, code 13 ("no column information", a signed
# varint line delta follows), length - 1 in the low three bits; delta 0.
_NO_COLUMNS = 0x80 | (13 << 3)


def _one_line_table(units: int) -> bytes:
    """A location table putting ``units`` code units on the first line."""
    table = bytearray()
    if not _LOCATION_TABLES:  # 3.10 (PEP 626): (bytes covered, line delta) pairs
        size = 2 * units
        while size > 0:
            length = min(size, 254)
            table += bytes((length, 0))
            size -= length
        return bytes(table)
    while units > 0:
        length = min(units, 8)
        table += bytes((_NO_COLUMNS | (length - 1), 0))
        units -= length
    return bytes(table)


def _relocated_code(
    code: types.CodeType, filename: str, line: int, name: str | None, qualname: str | None
) -> types.CodeType:
    consts = tuple(
        _relocated_code(c, filename, line, None, None) if isinstance(c, types.CodeType) else c
        for c in code.co_consts
    )
    changes: dict[str, Any] = {"co_consts": consts}
    if name is not None:
        changes["co_name"] = name
        if hasattr(code, "co_qualname"):
            changes["co_qualname"] = qualname or name
    if _ONE_LINE_TABLES:
        changes["co_filename"] = filename
        changes["co_firstlineno"] = line
        changes["co_linetable"] = _one_line_table(len(code.co_code) // 2)
    return code.replace(**changes)


def relocate(wrapper: types.FunctionType, wrapped: Any) -> types.FunctionType:
    """A copy of ``wrapper`` whose frames look like ``wrapped``'s (see the module).

    ``wrapped`` may be a function, a method, or a classmethod/staticmethod's
    function; for anything without Python code (a builtin, a callable object)
    ``wrapper`` is returned unchanged.
    """
    target = getattr(wrapped, "__func__", wrapped)
    code = getattr(target, "__code__", None)
    module_globals = getattr(target, "__globals__", None)
    if not isinstance(code, types.CodeType) or not isinstance(module_globals, dict):
        return wrapper
    name = getattr(target, "__name__", None) or code.co_name
    qualname = getattr(target, "__qualname__", None) or name
    relocated = types.FunctionType(
        _relocated_code(wrapper.__code__, code.co_filename, code.co_firstlineno, name, qualname),
        module_globals,
        name,
        wrapper.__defaults__,
        wrapper.__closure__,
    )
    relocated.__kwdefaults__ = wrapper.__kwdefaults__
    return relocated


def reads_globals(code: types.CodeType) -> list[str]:
    """The global (or builtin) names that ``code`` and its nested code read."""
    names = [
        str(instruction.argval)
        for instruction in dis.get_instructions(code)
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL")
    ]
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names += reads_globals(constant)
    return names
