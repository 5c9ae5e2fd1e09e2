"""Our figures agree with independent tools: GNU ``time -v`` and ``psrecord``.

Runs ``bench/workload_check.py`` as a user would (allocate 300 MiB and free
it, burn CPU 2 s, run a child that burns CPU 1 s; see its docstring), which
measures the workload with multimeter, ``/usr/bin/time -v`` and
``psrecord --include-children`` in the same run. Peak memory, total CPU
(parent and children) and the plateau of the RSS curve agree within 10 %, and
both see the memory drop after the free. Peaks and totals are robust on a
busy machine; the curve is compared by its plateau's median and its drop, not
point by point.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests._programs import run_python

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "workload_check.py"


def _psrecord() -> str | None:
    beside = Path(sys.executable).with_name("psrecord")
    return str(beside) if beside.exists() else shutil.which("psrecord")


@pytest.mark.skipif(
    not os.path.exists(shutil.which("time") or "/usr/bin/time"),
    reason="needs GNU time (/usr/bin/time; Debian package 'time')",
)
@pytest.mark.skipif(_psrecord() is None, reason="needs psrecord (pip install psrecord)")
@pytest.mark.timeout(300)  # runs a benchmark three ways
def test_figures_agree_with_time_and_psrecord_within_10_percent() -> None:
    completed = run_python(SCRIPT, "--tolerance", "0.10", cwd=ROOT, timeout=180)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report; stdout={completed.stdout!r} stderr={completed.stderr[-2000:]!r}"
    report = json.loads(lines[-1])
    missed = [name for name, ok in report["targets"].items() if not ok]
    assert [] == missed, json.dumps(report, indent=1)
    assert 0 == completed.returncode, completed.stderr[-2000:]
    # The workload is what it says: a 300 MiB plateau, a few CPU seconds.
    assert 300 <= report["peak_mib"]["time_max_rss"] <= 400
    assert 1.5 <= report["cpu_s"]["time_user_sys"] <= 8.0
