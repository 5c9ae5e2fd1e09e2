"""The test suites of real packages, plain and with the whole package instrumented (issue 8).

For each package (pinned in ``SUITES``): download its sdist into a cache
directory, unpack it, install it and its test requirements into the running
interpreter's environment, then run its test suite with pytest three ways,
each in a fresh process:

- ``plain``: as it is;
- ``off``: the whole package instrumented, ``MULTIMETER_STORAGE=none``;
- ``file``: the whole package instrumented, the default file storage in a
  temporary ``MULTIMETER_DIR``.

Instrumenting is ``_instrument_plugin.py`` beside this file, loaded with
``-p``. Every run gets the same Hypothesis seed, no deadline and no example
database. The outcome of every test of an instrumented run must equal the
plain run's: outcomes come from ``--junitxml``, the counts of each test's
subtests (and, for a run killed at its timeout, the outcomes of the tests that
ended before) from the plugin's own log.

Figures: wall time of each run, the ratios off/plain and file/off, tests,
functions patched, calls stored by the file run. Targets (issue 8): file/off
<= 1.5, off/plain <= 3. The file run gets a timeout (``--file-timeout``, by
default twice the off run's wall time, at least 60 s): past it the run is
reported as not finished.

Usage::

    python bench/real_suites.py [--packages attrs,more-itertools]
        [--modes plain,off,file] [--json OUT] [--cache DIR] [--keep DIR]
        [--file-timeout SECONDS]

Exits 1 when an outcome differs or a run did not finish, 0 otherwise (the
ratio targets are reported, not enforced: this machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_CACHE = HERE.parent / ".cache" / "real-suites"
PLUGIN = "_instrument_plugin"
MODES = ("plain", "off", "file")
#: The longest a plain or off run may take (seconds): a hung suite must not hang CI.
RUN_TIMEOUT = 900.0
MIN_FILE_TIMEOUT = 60.0
TARGETS = {"off/plain": 3.0, "file/off": 1.5}
#: How many one-result files of a file run are read back (spread over all of them).
CHECKED = 1000


@dataclasses.dataclass(frozen=True)
class Suite:
    """A package whose own test suite is run."""

    #: The distribution's name and pinned version.
    name: str
    version: str
    #: The import names to instrument.
    modules: tuple[str, ...]
    #: What its tests need besides pytest and the package itself.
    requirements: tuple[str, ...]
    #: Test ids left out, each with its reason (keep this short).
    deselect: Mapping[str, str]
    #: The tests' folder inside the sdist.
    tests: str = "tests"
    #: Whether the sdist has its own pytest configuration; without one, an empty
    #: one stops pytest from taking the configuration of a project around it.
    configured: bool = True


SUITES = {
    suite.name: suite
    for suite in (
        Suite(
            name="attrs",
            version="26.1.0",
            modules=("attr", "attrs"),
            # Its "tests" dependency group, less pytest-xdist (we run in one process).
            requirements=("hypothesis>=6.90", "pympler==1.1", "cloudpickle==3.1.3"),
            deselect={
                "tests/test_converters.py::TestPipe::test_wrapped_annotation": (
                    "fails plainly on Python 3.11.7 (25.4.0 too): inspect.signature() of a"
                    " Converter raises TypeError there, so pipe() loses the return type"
                ),
            },
        ),
        Suite(
            name="more-itertools",
            version="11.2.1",
            modules=("more_itertools",),
            requirements=(),
            configured=False,
            deselect={
                "tests/test_recipes.py::PrimeFunctionTests::test_primes": (
                    "25 s plainly, half the suite's time: too slow to run three times in CI"
                ),
                "tests/test_more.py::DiscreteFourierTransformTests::test_roundtrip": (
                    "2.5 s plainly, 97 s instrumented with storage off: some 9 million"
                    " calls of dl_split() and dl_mul(), public helpers (Python 3.11 has no"
                    " math.sumprod), too many to store; see bench/README.md"
                ),
                "tests/test_more.py::SeekableTest::"
                "test_repeated_zero_cache_peek_has_bounded_memory": (
                    "asserts that the whole process allocates under 256 KiB (tracemalloc)"
                    " during 10,000 calls of peek(): with storing on, the calls waiting"
                    " for the writer thread (about 1 kB each) count too"
                ),
            },
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one test ended."""

    #: passed, failed, error, skipped, xfailed or xpassed.
    outcome: str
    #: The first line of why it did not pass (empty when it passed).
    reason: str = ""
    #: How many of its subtests ended how, e.g. ``{"passed": 28}``.
    subtests: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """``passed``, or ``passed, subtests {'passed': 28}``."""
        return f"{self.outcome}, subtests {dict(self.subtests)}" if self.subtests else self.outcome


@dataclasses.dataclass
class Run:
    """One run of one suite."""

    mode: str
    wall_s: float
    #: pytest's exit status; None: killed at the timeout.
    returncode: int | None
    timeout_s: float
    #: Test id (junit's ``classname::name``) -> outcome; for a killed run, the
    #: tests that ended before it was killed.
    outcomes: dict[str, Outcome]
    patched: int | None = None
    stored: Mapping[str, int] | None = None
    log_tail: str = ""

    @property
    def finished(self) -> bool:
        """pytest ran every test: it exited 0 (all passed) or 1 (some failed)."""
        return self.returncode in (0, 1)

    def figures(self) -> dict[str, Any]:
        counts = collections.Counter(test.outcome for test in self.outcomes.values())
        subtests: collections.Counter[str] = collections.Counter()
        for test in self.outcomes.values():
            subtests.update(test.subtests)
        figures: dict[str, Any] = {
            "wall_s": round(self.wall_s, 2),
            "finished": self.finished,
            "returncode": self.returncode,
            "timeout_s": round(self.timeout_s),
            "tests": len(self.outcomes),
            "outcomes": dict(sorted(counts.items())),
            "subtests": dict(sorted(subtests.items())),
        }
        if self.patched is not None:
            figures["patched"] = self.patched
        if self.stored is not None:
            figures["stored"] = dict(self.stored)
        if not self.finished:
            figures["log_tail"] = self.log_tail
        return figures


# -- preparing a suite --------------------------------------------------------------


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True
    )


def _cached_sdist(suite: Suite, downloads: pathlib.Path) -> pathlib.Path | None:
    for name in (
        f"{suite.name.replace('-', '_')}-{suite.version}",
        f"{suite.name}-{suite.version}",
    ):
        for extension in (".tar.gz", ".zip"):
            if (downloads / (name + extension)).is_file():
                return downloads / (name + extension)
    return None


def _sdist(suite: Suite, cache: pathlib.Path) -> pathlib.Path:
    """The cached sdist, downloaded first if missing."""
    downloads = cache / "sdists"
    found = _cached_sdist(suite, downloads)
    if found is None:
        downloads.mkdir(parents=True, exist_ok=True)
        _pip(
            "download", "--no-deps", "--no-binary", ":all:",
            f"{suite.name}=={suite.version}", "--dest", str(downloads),
        )  # fmt: skip
        found = _cached_sdist(suite, downloads)
    if found is None:
        raise RuntimeError(f"pip download left no sdist of {suite.name} {suite.version}")
    return found


def _unpack(sdist: pathlib.Path, cache: pathlib.Path) -> pathlib.Path:
    """The sdist's folder (it holds the tests), unpacked first if missing."""
    folder = cache / "src" / sdist.name.removesuffix(".tar.gz").removesuffix(".zip")
    if not (folder / "PKG-INFO").is_file():
        if folder.exists():
            shutil.rmtree(folder)
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            if sdist.suffix == ".zip":
                shutil.unpack_archive(sdist, scratch)
            else:
                with tarfile.open(sdist) as archive:
                    if hasattr(tarfile, "data_filter"):  # 3.10.12, 3.11.4 and later
                        archive.extractall(scratch, filter="data")
                    else:  # an older Python: the archive is the pinned sdist
                        archive.extractall(scratch)
            (top,) = pathlib.Path(scratch).iterdir()
            folder.parent.mkdir(parents=True, exist_ok=True)
            top.rename(folder)
    return folder


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def prepare(suite: Suite, cache: pathlib.Path) -> pathlib.Path:
    """Download, unpack and install ``suite`` and its test requirements; its folder."""
    sdist = _sdist(suite, cache)
    folder = _unpack(sdist, cache)
    if suite.requirements:
        _pip("install", *suite.requirements)
    if _installed_version(suite.name) != suite.version:
        _pip("install", "--no-deps", str(sdist))
    return folder


# -- running a suite ------------------------------------------------------------------


def _junit_outcome(case: ElementTree.Element) -> tuple[str, str]:
    """(outcome, reason) of one junit ``testcase``."""
    found = {child.tag: child for child in case}
    for tag in ("error", "failure", "skipped"):
        child = found.get(tag)
        if child is None:
            continue
        lines = (child.get("message") or child.text or "").strip().splitlines()
        reason = lines[0][:200] if lines else ""
        if tag == "skipped":
            return ("xfailed" if child.get("type") == "pytest.xfail" else "skipped"), reason
        return ("error" if tag == "error" else "failed"), reason
    return "passed", ""


def read_junit(path: pathlib.Path) -> dict[str, tuple[str, str]]:
    """Test id (``classname::name``) -> (outcome, reason)."""
    return {
        f"{case.get('classname', '')}::{case.get('name', '')}": _junit_outcome(case)
        for case in ElementTree.parse(path).iter("testcase")
    }


def junit_id(nodeid: str) -> str:
    """The id junit gives the test with pytest's ``nodeid``."""
    head, bracket, parameters = nodeid.partition("[")
    path, *names = head.split("::")
    *outer, name = [re.sub(r"\.py$", "", path.replace("/", ".")), *names]
    return f"{'.'.join(outer)}::{name}{bracket}{parameters}"


def read_log(path: pathlib.Path) -> dict[str, Outcome]:
    """Test id -> outcome, from the plugin's log; tests without a teardown are left out."""
    reports: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):  # the last line of a killed run
                report = json.loads(line)
                reports[report["id"]].append(report)
    outcomes = {}
    for nodeid, test in reports.items():
        phases = {r["when"]: r for r in test if r["subtest"] is None}
        if "teardown" not in phases:
            continue  # still running when the run was killed
        subtests = collections.Counter(r["outcome"] for r in test if r["subtest"] is not None)
        outcome, reason = "passed", ""
        for when in ("setup", "call", "teardown"):
            report = phases.get(when)
            if report is None or report["outcome"] == "passed":
                if report is not None and when == "call" and report["xfail"]:
                    outcome = "xpassed"
                continue
            reason = report["message"]
            if report["outcome"] == "skipped":
                outcome = "xfailed" if report["xfail"] else "skipped"
            else:
                outcome = "failed" if when == "call" else "error"
            break
        outcomes[junit_id(nodeid)] = Outcome(outcome, reason, dict(sorted(subtests.items())))
    return outcomes


def outcomes_of(junit: pathlib.Path, log: pathlib.Path, finished: bool) -> dict[str, Outcome]:
    """Every test's outcome: junit's for a finished run (subtests from the log), else the log's."""
    logged = read_log(log)
    if not finished or not junit.is_file():
        return logged
    return {
        test_id: Outcome(outcome, reason, logged[test_id].subtests if test_id in logged else {})
        for test_id, (outcome, reason) in read_junit(junit).items()
    }


def count_stored(directory: pathlib.Path) -> dict[str, int]:
    """How many results the file storage left under ``directory``.

    ``*.json`` and ``*.line`` files hold one result each: they are counted by
    name, and up to ``CHECKED`` of them, spread over all, read with
    ``multimeter.load_result``. Any other file is read with
    ``multimeter.load_results`` (batched files) where multimeter has it.
    """
    import multimeter

    load_results = getattr(multimeter, "load_results", None)
    singles: list[pathlib.Path] = []
    others: list[pathlib.Path] = []
    for path in directory.rglob("*"):
        if path.is_file():
            (singles if path.suffix in (".json", ".line") else others).append(path)
    counts = {"results": len(singles), "checked": 0, "unreadable_files": 0}
    for path in singles[:: max(1, len(singles) // CHECKED)][:CHECKED]:
        try:
            multimeter.load_result(path)
            counts["checked"] += 1
        except (ValueError, OSError):
            counts["unreadable_files"] += 1
    for path in others:
        try:
            if load_results is None:
                raise ValueError(path)
            found = sum(1 for _ in load_results(path))
        except (ValueError, OSError):
            counts["unreadable_files"] += 1
        else:
            counts["results"] += found
            counts["checked"] += found
    return counts


def _environment(suite: Suite, mode: str, work: pathlib.Path, stem: str) -> dict[str, str]:
    # Neither multimeter's settings nor a coverage run of the caller (CI's --cov) reach
    # the suites: both would change what is timed.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MULTIMETER_", "COV_CORE_", "COVERAGE_PROCESS_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["MULTIMETER_SUITE_REPORT"] = str(work / f"{stem}-plugin.json")
    env["MULTIMETER_SUITE_OUTCOMES"] = str(work / f"{stem}-outcomes.jsonl")
    if mode != "plain":
        env["MULTIMETER_SUITE_PACKAGES"] = ",".join(suite.modules)
        env["MULTIMETER_STORAGE"] = "none" if mode == "off" else "file"
    if mode == "file":
        env["MULTIMETER_DIR"] = str(work / f"{stem}-results")
    return env


def _command(suite: Suite, folder: pathlib.Path, work: pathlib.Path, stem: str) -> list[str]:
    config = []
    if not suite.configured:
        (work / "pytest.ini").write_text("[pytest]\n")
        config = ["-c", str(work / "pytest.ini")]
    return [
        sys.executable, "-m", "pytest", *config, f"--rootdir={folder}",
        "-p", PLUGIN, "-p", "no:cacheprovider", "-q",
        f"--junitxml={work / f'{stem}.xml'}", "--hypothesis-seed=0",
        suite.tests, *(f"--deselect={test_id}" for test_id in suite.deselect),
    ]  # fmt: skip


def _tail(path: pathlib.Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_suite(
    suite: Suite, folder: pathlib.Path, mode: str, timeout: float, work: pathlib.Path
) -> Run:
    """Run ``suite``'s tests once in ``mode``, in a fresh process; killed at ``timeout``."""
    stem = f"{suite.name}-{mode}"
    results = work / f"{stem}-results"
    for earlier in (f"{stem}.xml", f"{stem}-outcomes.jsonl", f"{stem}-plugin.json"):
        (work / earlier).unlink(missing_ok=True)  # left in --keep's folder by an earlier run
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir()
    log = work / f"{stem}.log"
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            _command(suite, folder, work, stem),
            cwd=folder,
            env=_environment(suite, mode, work, stem),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with its children
        )
        returncode: int | None
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        wall = time.perf_counter() - started
    run = Run(
        mode=mode,
        wall_s=wall,
        returncode=returncode,
        timeout_s=timeout,
        outcomes=outcomes_of(
            work / f"{stem}.xml", work / f"{stem}-outcomes.jsonl", returncode in (0, 1)
        ),
        log_tail=_tail(log),
    )
    plugin = work / f"{stem}-plugin.json"
    if mode != "plain" and plugin.is_file():
        run.patched = json.loads(plugin.read_text())["patched"]
    if mode == "file":
        run.stored = count_stored(results)
    shutil.rmtree(results, ignore_errors=True)
    return run


# -- comparing ------------------------------------------------------------------------


def differences(plain: Run, other: Run) -> list[dict[str, str]]:
    """The tests whose outcome (or subtests' outcomes) in ``other`` differ from ``plain``.

    For a run killed at its timeout, only the tests that ended before count.
    """
    tests = plain.outcomes.keys() | other.outcomes.keys()
    if not other.finished:
        tests = plain.outcomes.keys() & other.outcomes.keys()
    missing = Outcome("missing")
    differing = []
    for test_id in sorted(tests):
        expected = plain.outcomes.get(test_id, missing)
        actual = other.outcomes.get(test_id, missing)
        if (expected.outcome, expected.subtests) != (actual.outcome, actual.subtests):
            reason = actual.reason or expected.reason
            if expected.outcome == actual.outcome:
                reason = f"subtests: {dict(expected.subtests)} -> {dict(actual.subtests)}"
            differing.append(
                {
                    "test": test_id,
                    "plain": expected.summary(),
                    other.mode: actual.summary(),
                    "reason": reason,
                }
            )
    return differing


def grouped(differing: Sequence[Mapping[str, str]]) -> dict[str, int]:
    """How many differing tests share each reason (addresses and numbers blanked)."""
    reasons = (
        re.sub(r"0x[0-9a-f]+|\d+", "N", difference["reason"])[:120] for difference in differing
    )
    return dict(collections.Counter(reasons).most_common())


def measure_suite(
    suite: Suite,
    folder: pathlib.Path,
    modes: Sequence[str],
    file_timeout: float | None,
    keep: pathlib.Path | None = None,
) -> dict[str, Any]:
    """Run ``suite`` in each of ``modes`` and compare the outcomes; its report.

    The runs' logs, junit files and outcome logs go to a temporary folder, or
    to ``keep`` (which then keeps them).
    """
    runs: dict[str, Run] = {}
    with contextlib.ExitStack() as stack:
        if keep is None:
            work = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            work = keep
            work.mkdir(parents=True, exist_ok=True)
        for mode in modes:
            timeout = RUN_TIMEOUT
            if mode == "file":
                if file_timeout is not None:
                    timeout = file_timeout
                elif "off" in runs and runs["off"].finished:
                    timeout = max(MIN_FILE_TIMEOUT, 2 * runs["off"].wall_s)
            run = runs[mode] = run_suite(suite, folder, mode, timeout, work)
            print(f"{suite.name} {mode}: {json.dumps(run.figures())}", file=sys.stderr, flush=True)
    figures: dict[str, Any] = {
        "version": suite.version,
        "deselected": dict(suite.deselect),
        "runs": {mode: run.figures() for mode, run in runs.items()},
    }
    for ratio in TARGETS:
        top, bottom = (runs.get(mode) for mode in ratio.split("/"))
        if top is not None and bottom is not None and top.finished and bottom.finished:
            figures[ratio] = round(top.wall_s / bottom.wall_s, 2)
    figures["targets"] = {
        f"{ratio} <= {limit}": figures[ratio] <= limit
        for ratio, limit in TARGETS.items()
        if ratio in figures
    }
    if "plain" in runs:
        for mode in modes:
            if mode != "plain":
                differing = differences(runs["plain"], runs[mode])
                figures[f"differing_{mode}"] = differing
                figures[f"differing_{mode}_by_reason"] = grouped(differing)
    figures["same_outcomes"] = all(
        not figures.get(f"differing_{mode}") for mode in modes if mode != "plain"
    )
    figures["all_finished"] = all(run.finished for run in runs.values())
    return figures


def _summary(name: str, figures: Mapping[str, Any]) -> Iterator[str]:
    yield f"== {name} {figures['version']}"
    for mode, run in figures["runs"].items():
        if run["finished"]:
            state = f"{run['wall_s']:.1f} s"
        elif run["returncode"] is None:
            state = f"did not finish within {run['timeout_s']} s; before that"
        else:
            state = f"pytest exited {run['returncode']} after {run['wall_s']:.1f} s;"
        state += f" {run['tests']} tests {run['outcomes']}"
        if run["subtests"]:
            state += f", subtests {run['subtests']}"
        extra = "".join(f", {key} {run[key]}" for key in ("patched", "stored") if key in run)
        yield f"  {mode:5}: {state}{extra}"
    for ratio in TARGETS:
        if ratio in figures:
            yield f"  {ratio}: {figures[ratio]} (target <= {TARGETS[ratio]})"
    for key, value in figures.items():
        if key.startswith("differing_") and key.endswith("_by_reason") and value:
            mode = key.removeprefix("differing_").removesuffix("_by_reason")
            yield f"  differing in {mode}: {len(figures[f'differing_{mode}'])} tests"
            for reason, count in value.items():
                yield f"    {count:5} x {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", default=",".join(SUITES), help="comma-separated")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--json", type=pathlib.Path, help="write the full report here")
    parser.add_argument("--cache", type=pathlib.Path, default=DEFAULT_CACHE)
    parser.add_argument("--keep", type=pathlib.Path, help="keep the runs' logs in this folder")
    parser.add_argument(
        "--file-timeout", type=float, help="seconds (default: 2x the off run, at least 60)"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.packages.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [n for n in names if n not in SUITES] + [m for m in modes if m not in MODES]
    if unknown:
        allowed = f"packages: {', '.join(SUITES)}; modes: {', '.join(MODES)}"
        parser.error(f"unknown: {', '.join(unknown)}; {allowed}")
    args.cache.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"python": sys.version.split()[0], "packages": {}}
    for name in names:
        suite = SUITES[name]
        folder = prepare(suite, args.cache)
        report["packages"][name] = measure_suite(suite, folder, modes, args.file_timeout, args.keep)
        print("\n".join(_summary(name, report["packages"][name])), flush=True)
    report["ok"] = all(
        p["same_outcomes"] and p["all_finished"] for p in report["packages"].values()
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
