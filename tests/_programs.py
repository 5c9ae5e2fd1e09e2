"""Running a user's program in a subprocess, the way the tests of this suite do it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap


def run_program(
    tmp_path: pathlib.Path, code: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``python -c``, its results in ``tmp_path/results``
    and no other ``MULTIMETER_*`` setting of this environment; it must exit 0."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MULTIMETER_")}
    environment["MULTIMETER_DIR"] = str(tmp_path / "results")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
