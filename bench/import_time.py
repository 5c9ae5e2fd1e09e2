"""`import multimeter` against importing psutil, wrapt and structlog together.

Each import runs in a fresh interpreter; the figure is the median wall time of
20 runs minus that of an empty interpreter. Target: at most 1.3x.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from _common import finish, report

RUNS = 20


# Byte-code caching on, as in a normal environment (this machine's shell sets
# PYTHONDONTWRITEBYTECODE, which would make multimeter, installed editable, compile
# its modules on every import while the other packages' byte code is cached).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _median(code: str) -> float:
    subprocess.run([sys.executable, "-c", code], check=True, env=_ENV)  # warm the caches
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=_ENV)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    empty = _median("pass")
    baseline = _median("import psutil, wrapt, structlog") - empty
    ours = _median("import multimeter") - empty
    ratio = ours / baseline
    ok = report(
        "import_time",
        {
            "import_multimeter_ms": round(ours * 1000, 1),
            "import_psutil_wrapt_structlog_ms": round(baseline * 1000, 1),
            "ratio": round(ratio, 2),
        },
        {"ratio <= 1.3": ratio <= 1.3},
    )
    finish(ok)


if __name__ == "__main__":
    main()
