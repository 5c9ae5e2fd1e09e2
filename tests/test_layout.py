"""The package's layout: imports flow one way (no circles).

The graph is read from the code with `ast`. Its edges are the imports that run when a
module is imported (module level, also inside a module-level `if`/`try`/`with` or class
body), not those inside functions and never those under `if TYPE_CHECKING:`. A second
reading adds the imports inside functions: moving an import into a function makes a
circle work, it does not break it.
"""

from __future__ import annotations

import ast
import functools
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("multimeter", "pytest_multimeter")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports(body: list[ast.stmt], inside_functions: bool):
    """The import statements that run when the module is imported (and, with
    ``inside_functions``, those that run when its functions are called)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _imports(node.body, inside_functions)
            yield from _imports(node.orelse, inside_functions)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _imports(block, inside_functions)
            for handler in node.handlers:
                yield from _imports(handler.body, inside_functions)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _imports(node.body, inside_functions)
        elif inside_functions:
            for inner in ast.iter_child_nodes(node):
                if isinstance(inner, ast.stmt):
                    yield from _imports([inner], inside_functions)
                elif isinstance(inner, ast.excepthandler):
                    yield from _imports(inner.body, inside_functions)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.cache
def import_graph(*, inside_functions: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules its import runs (its own parent packages left out:
    they are imported before it anyway); with ``inside_functions`` also those its
    functions import."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        own_parents = set(_ancestors(name))
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _imports(tree.body, inside_functions):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
                reads: set[str] = set()
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                imported = [module for module in submodules if module in modules]
                # Names defined in `base` itself: `from multimeter import configure`
                # reads the package, even from inside it.
                reads = {base} if len(imported) < len(submodules) else set()
                imported.extend(reads)
            for module in imported:
                for target in [*_ancestors(module), module]:
                    if (
                        target in modules
                        and target != name
                        and (target not in own_parents or target in reads)
                    ):
                        targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest cycle through the group's first module (breadth first)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & group):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no cycle in {group}")  # pragma: no cover - Tarjan's groups have one


#: The one circle closed by an import inside a function: ``_process`` imports
#: ``_lifecycle`` when the process's writer first starts (its exit hooks are installed
#: then, not at import), and ``_lifecycle`` needs the process state.
LAZY_CIRCLES = [["multimeter._lifecycle", "multimeter._process", "multimeter._lifecycle"]]


def _text(found: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in found)


def test_finds_a_cycle_and_names_it():
    """The check itself: a circle of three modules is reported as the path around it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [["a", "b", "c", "a"]] == cycles(graph)


def test_the_graph_reads_imports_in_functions_only_when_asked():
    """`pytest_multimeter` imports the measuring plugin inside a hook only."""
    assert "multimeter._testrun.plugin" not in import_graph()["pytest_multimeter"]
    everywhere = import_graph(inside_functions=True)
    assert "multimeter._testrun.plugin" in everywhere["pytest_multimeter"]


def test_the_graph_leaves_out_imports_for_type_checking():
    """`measurement` names `Multimeter` in annotations only: an edge to it would be a
    circle that never runs."""
    everywhere = import_graph(inside_functions=True)
    assert "multimeter.multimeter" not in everywhere["multimeter.measurement"]
    assert "multimeter.measurement" in everywhere["multimeter.multimeter"]


def test_no_import_cycles():
    """No module imports, through any chain of module-level imports, a module that
    imports it: the package loads in one order, from the bottom up."""
    found = cycles(import_graph())
    assert [] == found, _text(found)


def test_imports_inside_functions_close_no_other_circle():
    """Counting imports inside functions too, the only circle is the documented one."""
    found = cycles(import_graph(inside_functions=True))
    assert LAZY_CIRCLES == found, _text(found)


def test_the_measuring_plugin_does_not_import_the_pytest_entry_point():
    """Imports go one way, `pytest_multimeter` -> `multimeter._testrun`, also inside
    functions: the entry point hands the plugin its option defaults."""
    users = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "multimeter").rglob("*.py")
        if any(
            (
                isinstance(node, ast.Import)
                and any(alias.name.split(".")[0] == "pytest_multimeter" for alias in node.names)
            )
            or (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] == "pytest_multimeter"
            )
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    assert [] == users
