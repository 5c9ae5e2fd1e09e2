"""Who may touch what: Result's internals only in result.py (read with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "multimeter"
RESULT_MODULE = PACKAGE / "result.py"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def result_private_names() -> set[str]:
    """The private attribute and method names of the classes of ``result.py``
    (``Result``, ``Schema``, ...): those defined in a class body and those set on
    ``self`` or on an instance made in a class method."""
    names: set[str] = set()
    tree = ast.parse(RESULT_MODULE.read_text())
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _private(node.name):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and _private(node.attr)
            ):
                names.add(node.attr)
    return names


def result_reach_ins() -> list[str]:
    """``file:line: code`` of each access, outside ``result.py``, to an attribute
    named like a private one of ``result.py``'s classes. An object's access to its
    own attributes (``self._marks`` in a class of another module) is its own
    business and not counted."""
    names = result_private_names()
    found = []
    for path in _modules():
        if path == RESULT_MODULE:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr in names):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            where = path.relative_to(PACKAGE.parent)
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_knows_the_private_names_of_result():
    """The names the check looks for include Result's columns, marks and builders."""
    assert {"_times", "_columns", "_marks", "_append_row", "_sync_hook"} <= (result_private_names())


def test_no_module_but_result_py_touches_a_private_attribute_of_a_result():
    """Rows, marks and meta data go through ResultBuilder and Result.data()."""
    assert [] == result_reach_ins()


def test_no_class_outside_result_py_subclasses_result():
    """A subclass would reach into Result's private attributes as ``self``."""
    found = []
    for path in _modules():
        if path == RESULT_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                if any(base in ("Result", "result.Result") for base in bases):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert [] == found


def test_the_documented_probe_protocol_is_never_called_legacy():
    """Probe is the protocol, not a legacy: no module calls anything "legacy"
    except NVML's and Docker's own old interfaces."""
    allowed = {PACKAGE / "probes" / "nvml.py", PACKAGE / "_visualization" / "_docker.py"}
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in _modules()
        if path not in allowed
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "legacy" in line.lower()
    ]
    assert [] == found
