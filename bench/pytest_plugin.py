"""What the pytest plugin costs: unasked (installed, not switched on) and asked (--multimeter).

The machine is shared and noisy: the same suite's wall time varies by 30 % and
more from run to run, far more than the plugin adds. So the targets are checked
on figures that noise does not swamp, and the wall times are given beside them:

1. Unasked: what an unasked plugin adds is importing ``pytest_multimeter``;
   its own import time against pytest's (median of 11 fresh interpreters).
   Target: at most 2 % of pytest's. Beside it: 500 trivial tests, unasked
   against ``-p no:multimeter`` (the fastest of ROUNDS alternating runs).
2. Asked, per test: 500 trivial tests with ``--multimeter`` and
   ``-p _plugin_timer``, which clocks the plugin's own work (making it, each
   test's start and end, the phase marks, the session's end): microseconds
   per test and the fixed part.
3. Asked, on a real suite: this project's own tests (a selection of modules by
   default; ``--all`` for the whole suite) with ``--multimeter``: the run's
   seconds over the run's seconds less the plugin's own work. Target: at most
   1.1x. Beside it: the same suite with and without ``--multimeter``, the
   fastest of REAL_ROUNDS alternating runs, wall and CPU (pytest and its
   children).
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from _common import finish, report

ROUNDS = 5
REAL_ROUNDS = 3
BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
#: Modules of this project's suite that run in about ten seconds together.
REAL_SELECTION = [
    "tests/test_measured.py",
    "tests/test_result.py",
    "tests/test_measurement.py",
    "tests/test_sampler.py",
    "tests/test_config.py",
    "tests/test_wrappers.py",
    "tests/test_call_semantics.py",
]
_ENV = {
    k: v
    for k, v in os.environ.items()
    if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("MULTIMETER_")
}


def _trivial_suite(directory: pathlib.Path, count: int = 500) -> pathlib.Path:
    path = directory / "test_trivial.py"
    path.write_text(
        "import pytest\n\n\n"
        f"@pytest.mark.parametrize('n', range({count}))\n"
        "def test_trivial(n):\n"
        "    assert n >= 0\n"
    )
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _seconds(arguments: list[str], cwd: pathlib.Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of pytest and its children)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=cwd,
        env=_ENV,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"pytest {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, _children_cpu() - cpu


def _pair(
    a: list[str], b: list[str], cwd: pathlib.Path, rounds: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The fastest (wall, CPU) of ``a`` and of ``b``, run alternately."""
    _seconds(a, cwd)  # warm the caches
    _seconds(b, cwd)
    times_a, times_b = [], []
    for _ in range(rounds):
        times_a.append(_seconds(a, cwd))
        times_b.append(_seconds(b, cwd))
    return min(times_a), min(times_b)


def _import_ratio() -> tuple[int, int]:
    """Median microseconds of importing pytest_multimeter (its own part) and pytest."""
    ours, theirs = [], []
    for _ in range(11):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import pytest, pytest_multimeter"],
            env=_ENV,
            capture_output=True,
            text=True,
            check=True,
        )
        lines = done.stderr.splitlines()
        ours.append(
            next(int(x.split("|")[1]) for x in lines if x.rstrip().endswith("| pytest_multimeter"))
        )
        theirs.append(next(int(x.split("|")[1]) for x in lines if x.rstrip().endswith("| pytest")))
    return int(statistics.median(ours)), int(statistics.median(theirs))


def _own_work(
    arguments: list[str], cwd: pathlib.Path, report_file: pathlib.Path
) -> dict[str, float]:
    """The plugin's own seconds in a run with ``-p _plugin_timer`` (see that module)."""
    environment = {
        **_ENV,
        "MULTIMETER_TIMER_REPORT": str(report_file),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), _ENV.get("PYTHONPATH", "")])),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "_plugin_timer",
            *arguments,
        ],
        cwd=cwd,
        env=environment,
        capture_output=True,
        check=False,
    )
    figures: dict[str, float] = json.loads(report_file.read_text())
    return figures


def main() -> None:
    real = ["tests"] if "--all" in sys.argv else REAL_SELECTION
    plugin_us, pytest_us = _import_ratio()
    with tempfile.TemporaryDirectory() as temporary:
        directory = pathlib.Path(temporary)
        suite = str(_trivial_suite(directory))
        results = str(directory / "results")
        (without, _), (unasked, _) = _pair(
            ["-p", "no:multimeter", suite], [suite], directory, ROUNDS
        )
        trivial = _own_work(
            [suite, "--multimeter", f"--multimeter-dir={results}"], directory, directory / "t.json"
        )
        own = _own_work(
            ["-m", "not slow", "--multimeter", f"--multimeter-dir={results}", *real],
            ROOT,
            directory / "r.json",
        )
        (real_plain, real_plain_cpu), (real_asked, real_asked_cpu) = _pair(
            ["-m", "not slow", *real],
            ["-m", "not slow", "--multimeter", f"--multimeter-dir={results}", *real],
            ROOT,
            REAL_ROUNDS,
        )
    own_ratio = own["run_s"] / (own["run_s"] - own["plugin_s"])
    ok = report(
        "pytest_plugin",
        {
            "plugin_import_us": plugin_us,
            "pytest_import_us": pytest_us,
            "import_share": round(plugin_us / pytest_us, 4),
            "trivial_500_no_plugin_s": round(without, 3),
            "trivial_500_unasked_s": round(unasked, 3),
            "unasked_wall_ratio": round(unasked / without, 3),
            "own_work_per_test_us": round(trivial["plugin_s"] / trivial["tests"] * 1e6),
            "own_work_fixed_s": round(
                own["plugin_s"] - own["tests"] * trivial["plugin_s"] / trivial["tests"], 3
            ),
            "real_suite": "all" if real == ["tests"] else f"{len(real)} modules",
            "real_tests": int(own["tests"]),
            "real_run_s": round(own["run_s"], 2),
            "real_own_work_s": round(own["plugin_s"], 3),
            "real_own_work_ratio": round(own_ratio, 3),
            "real_plain_s": round(real_plain, 2),
            "real_measured_s": round(real_asked, 2),
            "real_wall_ratio": round(real_asked / real_plain, 3),
            "real_plain_cpu_s": round(real_plain_cpu, 2),
            "real_measured_cpu_s": round(real_asked_cpu, 2),
            "real_cpu_ratio": round(real_asked_cpu / real_plain_cpu, 3),
        },
        {
            "import_share<=0.02": plugin_us / pytest_us <= 0.02,
            "real_own_work_ratio<=1.1": own_ratio <= 1.1,
        },
    )
    finish(ok)


if __name__ == "__main__":
    main()
