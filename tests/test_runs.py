"""Every result carries a ``run`` meta datum that pairs the results of one run."""

import textwrap

from multimeter import load_results
from tests import _programs

PROGRAM = textwrap.dedent(
    """
    import multiprocessing
    import multimeter

    @multimeter.measured
    def work(n):
        return sum(range(n))

    if __name__ == "__main__":
        work(10)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(work, [1000, 2000])
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.map(work, [3000])
    """
)


def _run_program(tmp_path, directory, **environment):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    env = _programs.environment(
        MULTIMETER_DIR=str(tmp_path / directory), MULTIMETER_FORMAT="json", **environment
    )
    _programs.run_python(script, cwd=tmp_path, env=env, check=True, timeout=120)
    return list(load_results(tmp_path / directory))


def _runs(results):
    return {result.meta_data["run"] for result in results}


def test_the_results_of_one_program_and_its_forked_workers_share_one_run(tmp_path):
    results = _run_program(tmp_path, "one")
    forked = [r for r in results if r.meta_data["pid"] != results[0].meta_data["pid"]]
    assert 4 == len(results)
    assert forked
    # The spawned worker is a new process start: its own run (documented).
    by_pid = {}
    for result in results:
        by_pid.setdefault(result.meta_data["pid"], set()).add(result.meta_data["run"])
    assert all(1 == len(runs) for runs in by_pid.values())
    assert 2 == len(_runs(results))


def test_two_starts_of_a_program_are_two_runs_that_sort_by_time(tmp_path):
    script = tmp_path / "one_call.py"
    script.write_text("import multimeter\nmultimeter.measured(print)('hi')\n")
    runs = []
    for directory in ("first", "second"):
        results = str(tmp_path / directory)
        env = _programs.environment(MULTIMETER_DIR=results, MULTIMETER_FORMAT="json")
        _programs.run_python(script, env=env, check=True, timeout=60)
        (run,) = _runs(load_results(tmp_path / directory))
        runs.append(run)
    first, second = runs
    assert first != second
    assert first[:15] <= second[:15]  # the start time, to the second, comes first


def test_multimeter_run_names_the_run_of_every_process(tmp_path):
    results = _run_program(tmp_path, "ci", MULTIMETER_RUN="build-1234")
    assert {"build-1234"} == _runs(results)
