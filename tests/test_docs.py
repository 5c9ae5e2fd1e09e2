"""The documentation cannot rot: its examples run, and its generated parts match the code."""

from __future__ import annotations

import ast
import pathlib
import re
import sys

import pytest

from multimeter import _env
from tests._programs import run_python

ROOT = pathlib.Path(__file__).parent.parent
DOCS = ROOT / "docs"
#: A Python example, unless the line before it says why it cannot run here.
EXAMPLE = re.compile(
    r"(?:<!-- docs-test: skip \((?P<reason>[^)]*)\) -->\n)?```python\n(?P<code>.*?)```", re.S
)


def _examples() -> list:
    cases = []
    for page in sorted(DOCS.rglob("*.md")):
        for number, match in enumerate(EXAMPLE.finditer(page.read_text()), 1):
            name = f"{page.relative_to(DOCS)}#{number}"
            marks = [pytest.mark.skip(reason=match["reason"])] if match["reason"] else []
            cases.append(pytest.param(match["code"], id=name, marks=marks))
    return cases


@pytest.mark.parametrize("code", _examples())
def test_every_python_example_in_the_guides_runs_as_it_is(code, tmp_path):
    completed = run_python("-c", code, cwd=tmp_path, timeout=120)
    assert 0 == completed.returncode, completed.stderr[-3000:]
    assert completed.stdout.strip(), "an example shows what it did"


def test_every_guide_with_code_has_an_example_that_runs():
    for page in sorted((DOCS / "guides").glob("*.md")):
        matches = list(EXAMPLE.finditer(page.read_text()))
        if matches:
            assert any(not m["reason"] for m in matches), page


def _variables_read_by_the_code() -> set[str]:
    names = set()
    paths = [*(ROOT / "multimeter").rglob("*.py"), *(ROOT / "pytest_multimeter").rglob("*.py")]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"MULTIMETER_[A-Z0-9_]*[A-Z0-9]", node.value)
                # set by the visualization tool for its compose file, not read
                and not node.value.startswith("MULTIMETER_VISU_")
            ):
                names.add(node.value)
    return names


def test_the_environment_table_lists_exactly_the_variables_the_code_reads():
    documented = [variable.name for variable in _env.VARIABLES]
    assert len(documented) == len(set(documented))
    assert _variables_read_by_the_code() == set(documented)


def test_the_environment_guide_shows_the_table_made_from_the_code(tmp_path):
    page = (DOCS / "guides" / "environment.md").read_text()
    assert "<!-- multimeter:environment-table -->" in page
    sys.path.insert(0, str(DOCS))
    try:
        import hooks  # the MkDocs hook

        rendered = hooks.on_page_markdown(page)
    finally:
        sys.path.remove(str(DOCS))
    for variable in _env.VARIABLES:
        assert f"| `{variable.name}` | {variable.meaning} | {variable.default} |" in rendered


def _reference_modules() -> list[str]:
    """The modules the API reference documents (``::: module`` lines)."""
    found = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        found += re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M)
    return found


def test_the_reference_covers_every_public_module():
    modules = set(_reference_modules())
    public = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "multimeter").rglob("*.py")
        if not any(part.startswith("_") for part in path.relative_to(ROOT).parts)
    }
    assert public - {"multimeter.probes", "multimeter.storages"} <= modules | {"multimeter"}


@pytest.mark.parametrize("module_name", _reference_modules())
def test_every_public_name_in_the_reference_has_a_docstring(module_name):
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
    undocumented = []
    for name in names:
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not (value.__doc__ or "").strip():
            undocumented.append(name)
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                function = member.fget if isinstance(member, property) else member
                if attribute.startswith("_") or not callable(function):
                    continue
                if not (function.__doc__ or "").strip():
                    undocumented.append(f"{name}.{attribute}")
    assert [] == undocumented


def test_every_link_in_the_readme_points_at_a_file_here():
    """README.md is read on the repository's page, outside the site's strict build: its
    relative links (the guides, the screenshot) must name files that exist."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    relative = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert relative, "the README links to its guides"
    assert [] == [link for link in relative if not (ROOT / link).exists()]
