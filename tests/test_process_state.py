"""Everything that belongs to a process lives in one ``ProcessState``.

multimeter's threads, queues, locks, counters and caches of one process must not
be used by a forked child. One object holds them all (``multimeter._process``),
replaced as a whole by the one fork hook; these tests read the code and fail,
naming file and line, where a module keeps state of its own again or registers
another fork hook.
"""

from __future__ import annotations

import ast
import os
import pathlib
import textwrap

import pytest

import multimeter
from multimeter import _process

PACKAGE = pathlib.Path(multimeter.__file__).parent

#: Calls whose result is state that changes (a lock, a queue, a counter...).
_STATEFUL_CALLS = {
    "BoundedSemaphore",
    "Condition",
    "Counter",
    "Event",
    "Lock",
    "OrderedDict",
    "Queue",
    "RLock",
    "Semaphore",
    "SimpleQueue",
    "WeakKeyDictionary",
    "WeakSet",
    "WeakValueDictionary",
    "bytearray",
    "count",
    "defaultdict",
    "deque",
    "local",
}
_CONTAINER_CALLS = {"dict", "list", "set"}
#: Methods that change a container.
_MUTATORS = {
    "add",
    "append",
    "appendleft",
    "clear",
    "discard",
    "extend",
    "insert",
    "pop",
    "popitem",
    "popleft",
    "remove",
    "setdefault",
    "update",
}
#: The one module-level name that may change: the state itself.
_ALLOWED = {("_process.py", "_state")}


def _modules() -> list[tuple[pathlib.Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(PACKAGE.rglob("*.py"))]


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _top_level_assignments(body: list[ast.stmt]) -> list[tuple[str, ast.expr, int]]:
    found = []
    for node in body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [(t.id, node.value, node.lineno) for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.If | ast.Try):
            found += _top_level_assignments(node.body + node.orelse)
    return found


def _mutable_module_state() -> list[str]:
    """Module-level names that hold changing state, as ``file:line name (why)``."""
    found = []
    for path, tree in _modules():
        rebound: set[str] = set()
        changed: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                rebound.update(node.names)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _MUTATORS
                and isinstance(node.func.value, ast.Name)
            ):
                changed.add(node.func.value.id)
            elif isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                changed.update(
                    t.value.id
                    for t in targets
                    if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                )
        for name, value, line in _top_level_assignments(tree.body):
            if (path.name, name) in _ALLOWED:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line} {name}"
            is_container = isinstance(
                value, ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp
            ) or (isinstance(value, ast.Call) and _called(value) in _CONTAINER_CALLS)
            if name in rebound:
                found.append(f"{where} (rebound with 'global')")
            elif isinstance(value, ast.Call) and _called(value) in _STATEFUL_CALLS:
                found.append(f"{where} ({_called(value)}())")
            elif is_container and name in changed:
                found.append(f"{where} (a container that is changed)")
    return found


def _state_set_from_outside() -> list[str]:
    """``module.name = ...`` and ``module.name.append(...)`` on multimeter's modules."""
    found = []
    for path, tree in _modules():
        modules = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("multimeter")
            for alias in node.names
            if alias.name.startswith("_")
        }
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _MUTATORS
            ):
                targets = [node.func.value]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in modules
                ):
                    where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                    found.append(f"{where} {target.value.id}.{target.attr}")
    return found


def test_no_module_keeps_state_of_its_own():
    """Besides ``_process._state``, no module-level name of multimeter changes: what
    belongs to a process is in ProcessState (a module's own part of it through
    ``ProcessState.part()``); caches are ``functools.lru_cache`` functions."""
    assert [] == _mutable_module_state()
    assert [] == _state_set_from_outside()


def test_the_process_state_has_the_only_fork_hook():
    """One ``os.register_at_fork`` in the whole package, in ``_process``."""
    hooks = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "register_at_fork"
    ]
    assert ["multimeter/_process.py:" + hooks[0].rsplit(":", 1)[1]] == hooks


class _Counter:
    """A module's per-process part, as a module would keep one."""

    def __init__(self) -> None:
        self.count = 0


class _Carried(_Counter):
    """A part that a forked child carries on from its parent's."""

    def after_fork_in_child(self) -> _Carried:
        return self


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_has_a_state_of_its_own():
    """In the child: a new state (token, writer, sampler), fresh parts, except those
    that ask to be carried on; the parent's state is untouched."""
    parent = _process.current()
    parent.part(_Counter).count = 3
    parent.part(_Carried).count = 5
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        child = _process.current()
        facts = [
            child is not parent,
            child.token != parent.token,
            child.writer is not parent.writer,
            child.sampler is not parent.sampler,
            child.part(_Counter).count == 0,
            child.part(_Carried).count == 5,
        ]
        os.write(write, repr(facts).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        facts = pipe.read()
    os.waitpid(pid, 0)
    assert "[True, True, True, True, True, True]" == facts
    assert parent is _process.current()
    assert 3 == parent.part(_Counter).count


def test_the_scans_find_what_they_look_for(tmp_path, monkeypatch):
    """The scans above are not blind: a module with a lock, a rebound global, a
    changed list and a fork hook of its own is caught on each count."""
    package = tmp_path / "multimeter"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_bad.py").write_text(
        textwrap.dedent(
            """
            import os
            import threading
            from multimeter import _other
            _lock = threading.Lock()
            _seen = []
            _flag = False

            def note(x):
                global _flag
                _flag = True
                _seen.append(x)
                _other.hook = note

            os.register_at_fork(after_in_child=note)
            """
        )
    )
    monkeypatch.setitem(globals(), "PACKAGE", package)
    assert 3 == len(_mutable_module_state())
    assert 1 == len(_state_set_from_outside())
    with pytest.raises(AssertionError):
        test_the_process_state_has_the_only_fork_hook()
