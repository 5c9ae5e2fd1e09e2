"""Running a user's program in a subprocess, the way the tests of this suite do it.

User-facing guarantees are tested the way a user meets them: a fresh interpreter runs a
program, and the test reads its exit status, its output and what it stored. Every test
that starts ``python`` does it through this module, so that each program

- sees this environment without any ``MULTIMETER_*`` setting of the test run (the
  settings a test gives are the only ones), unless the test passes its own ``env``;
- has its stdout and stderr captured as text, for the test to read and to show on failure;
- is stopped, and fails its test, if it runs past its ``timeout`` (a hang never takes
  the suite with it).

``run_python`` is the general form; ``run_code``, ``run_program`` and
``multimeter_command`` are the common cases.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent

PathArg = os.PathLike[str] | str


def environment(*, pythonpath: Iterable[PathArg] = (), **settings: str) -> dict[str, str]:
    """This process's environment without its ``MULTIMETER_*`` settings, then ``settings``;
    ``pythonpath`` entries go before any ``PYTHONPATH`` already set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTIMETER_")}
    paths = [str(p) for p in pythonpath]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (*paths, env.get("PYTHONPATH")) if p)
    env.update(settings)
    return env


def run_python(
    *arguments: PathArg,
    cwd: PathArg | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    check: bool = False,
    text: bool = True,
    **options: Any,
) -> subprocess.CompletedProcess[Any]:
    """Run ``python ARGUMENTS`` (this interpreter) and wait for it; stdout and stderr
    captured (as text, or bytes if not ``text``). ``env`` defaults to ``environment()``;
    ``check`` raises on a non-zero exit; ``options`` go to ``subprocess.run`` (``input``,
    ``preexec_fn``...)."""
    return subprocess.run(
        [sys.executable, *map(str, arguments)],
        cwd=cwd,
        env=environment() if env is None else dict(env),
        capture_output=True,
        text=text,
        timeout=timeout,
        check=check,
        **options,
    )


def run_code(
    code: str,
    *,
    cwd: PathArg | None = None,
    timeout: float = 120,
    check: bool = False,
    options: Iterable[str] = (),
    pythonpath: Iterable[PathArg] = (),
    **settings: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``python OPTIONS -c``, in ``environment(**settings)``."""
    return run_python(
        *options,
        "-c",
        textwrap.dedent(code),
        cwd=cwd,
        env=environment(pythonpath=pythonpath, **settings),
        timeout=timeout,
        check=check,
    )


def run_program(
    tmp_path: pathlib.Path, code: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``python -c``, its results in ``tmp_path/results``
    and no other ``MULTIMETER_*`` setting of this environment; it must exit 0."""
    return run_code(code, timeout=timeout, check=True, MULTIMETER_DIR=str(tmp_path / "results"))


def multimeter_command(
    *arguments: PathArg,
    cwd: PathArg | None = None,
    timeout: float = 120,
    **settings: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m multimeter ARGUMENTS`` as a user would, in ``environment(**settings)``
    without ``COLUMNS`` (the width of the test's terminal is not the program's)."""
    env = environment(**settings)
    if "COLUMNS" not in settings:
        env.pop("COLUMNS", None)
    return run_python("-m", "multimeter", *arguments, cwd=cwd, env=env, timeout=timeout)
