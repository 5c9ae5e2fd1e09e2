"""Count the mutable module-level names in multimeter/ (issue 20, item 2).

Reads the code with `ast`; imports nothing. A name counts as mutable module-level state
when, in a module of multimeter/, it is

1. bound by a statement at module level (also inside a module-level `if`, `try` or
   `with`, never inside a function or class) to a mutable value: a list, dict or set
   display or comprehension, or a call of a mutable constructor (`list`, `dict`, `set`,
   `bytearray`, `deque`, `defaultdict`, `OrderedDict`, `Counter`, `array`,
   `WeakKeyDictionary`, `WeakValueDictionary`, `WeakSet`, `Queue`/`SimpleQueue`,
   `threading.local`, `itertools.count`, and the locks `Lock`, `RLock`, `Condition`,
   `Semaphore`, `BoundedSemaphore`, `Event`), or a call of a class defined in the same
   module that subclasses ``threading.local`` or whose methods assign to attributes of
   ``self`` outside ``__init__`` (an object that changes, such as
   ``state = ProcessState()``); upper-case names (lookup tables such as
   `_FIELDS = {...}`) count only when the module changes them in place
   (`NAME.append(...)`, `NAME[key] = ...`, `del NAME[key]`, ...); `__all__` never counts;
2. or named in a `global` statement inside a function of that module (rebound at run
   time, whatever its value).

Each (module, name) counts once. Not counted: `ContextVar`s (per context, not per
process), compiled patterns, frozen value objects, objects of classes imported from
elsewhere. The script prints every name it counts (``--list``), so a reader can check
the figure.

Run: ``python bench/module_state.py`` (from the repository root); ``--list`` prints the
names, one a line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "multimeter"

MUTABLE_CALLS = frozenset(
    {
        "list",
        "dict",
        "set",
        "bytearray",
        "deque",
        "defaultdict",
        "OrderedDict",
        "Counter",
        "array",
        "WeakKeyDictionary",
        "WeakValueDictionary",
        "WeakSet",
        "Queue",
        "SimpleQueue",
        "local",
        "Lock",
        "RLock",
        "Condition",
        "Semaphore",
        "BoundedSemaphore",
        "Event",
        "count",
    }
)
MUTATORS = frozenset(
    {
        "append",
        "appendleft",
        "extend",
        "insert",
        "add",
        "update",
        "setdefault",
        "pop",
        "popleft",
        "popitem",
        "remove",
        "discard",
        "clear",
    }
)


def _is_mutable(value: ast.expr | None, changing_classes: set[str]) -> bool:
    if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        if isinstance(func, ast.Name) and func.id in changing_classes:
            return True
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return name in MUTABLE_CALLS
    return False


def _changing_classes(tree: ast.Module) -> set[str]:
    """Module-level classes with a method (other than ``__init__``) that assigns to
    ``self.x``, and subclasses of ``threading.local``."""
    names = set()
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        if any(ast.unparse(base) in ("local", "threading.local") for base in node.bases):
            names.add(node.name)  # per-thread state, changed from outside
        for method in node.body:
            if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if method.name == "__init__":
                continue
            for inner in ast.walk(method):
                targets = []
                if isinstance(inner, ast.Assign):
                    targets = inner.targets
                elif isinstance(inner, (ast.AugAssign, ast.AnnAssign)):
                    targets = [inner.target]
                if any(
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    for t in targets
                ):
                    names.add(node.name)
    return names


def _module_level(body: list[ast.stmt]):
    """Statements at module level, also those inside module-level if/try/with blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level(block)
            for handler in node.handlers:
                yield from _module_level(handler.body)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    else:
        return []
    return [target.id for target in targets if isinstance(target, ast.Name)]


def _mutated_in_place(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
            and isinstance(node.func.value, ast.Name)
        ):
            names.add(node.func.value.id)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, (ast.Store, ast.Del))
            and isinstance(node.value, ast.Name)
        ):
            names.add(node.value.id)
    return names


def state_names(path: Path) -> set[str]:
    """The names of ``path`` that count as mutable module-level state (see above)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mutated = _mutated_in_place(tree)
    changing = _changing_classes(tree)
    names = set()
    for node in _module_level(tree.body):
        value = getattr(node, "value", None)
        if not _is_mutable(value, changing):
            continue
        for name in _targets(node):
            if name == "__all__":
                continue
            if (
                name.lstrip("_").isupper()
                and name not in mutated
                and not (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id in changing
                )
            ):
                continue
            names.add(name)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Global):
                    names.update(inner.names)
    return names


def count(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module path (relative to the package's parent) -> its state names, non-empty only."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        names = state_names(path)
        if names:
            found[str(path.relative_to(package.parent))] = names
    return found


def main() -> None:
    found = count()
    if "--list" in sys.argv:
        for module, names in found.items():
            for name in sorted(names):
                print(f"{module}: {name}")
    total = sum(len(names) for names in found.values())
    print(f"{total} mutable module-level names in {len(found)} modules")


if __name__ == "__main__":
    main()
