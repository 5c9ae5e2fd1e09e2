"""The suite's promises about itself: a hang fails one test, and every test starts
its programs the same way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _pytest_option(name: str) -> str:
    """A setting of pyproject's [tool.pytest.ini_options] (tomllib needs Python 3.11)."""
    section = (ROOT / "pyproject.toml").read_text().split("[tool.pytest.ini_options]")[1]
    match = re.search(rf"^{name} = (.*)$", section.split("\n[")[0], re.M)
    assert match is not None, name
    return match.group(1).strip('"')


def test_every_test_has_a_time_limit_of_at_most_two_minutes_unless_it_says_why():
    """pytest-timeout's default applies to every test; a longer one is a mark on the
    test or its module, and none is above 25 minutes."""
    assert 120 >= float(_pytest_option("timeout"))
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "pytest.mark.timeout"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                assert node.args[0].value <= 1500, f"{path.name}:{node.lineno}"


def test_no_test_module_keeps_its_own_copy_of_the_program_runner():
    """The environment a user's program sees is made in tests/_programs.py only."""
    copy = 'if not k.startswith("' + 'MULTIMETER_")'  # split: not a copy itself
    copies = [
        path.name
        for path in sorted(TESTS.glob("*.py"))
        if path.name != "_programs.py" and copy in path.read_text()
    ]
    assert [] == copies
