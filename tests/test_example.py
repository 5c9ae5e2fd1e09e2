"""The README's example job runs as the quick start says and stores what it says."""

import pathlib

from multimeter import load_results
from tests._programs import run_python

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "etl_pipeline.py"


def test_the_etl_example_stores_each_phase_and_the_job_with_its_phases_as_marks(tmp_path):
    completed = run_python(EXAMPLE, "--rows", "20000", cwd=tmp_path, timeout=120, check=True)
    results = list(load_results(tmp_path / "multimeter-results"))
    stages = sorted(result.tags["stage"] for result in results)
    assert ["aggregate", "generate", "job", "parse", "transform"] == stages
    job = next(result for result in results if result.tags["stage"] == "job")
    labels = [mark.label for mark in job.marks]
    for phase in ("generate", "parse", "transform", "aggregate"):
        assert labels.index(f"{phase}:enter") < labels.index(f"{phase}:exit")
    assert "20000 records" in completed.stdout
    assert f"{job.identifier}.json" in completed.stdout


def test_the_quick_start_report_of_the_example_job_is_written_where_it_says(tmp_path):
    run_python(EXAMPLE, "--rows", "5000", cwd=tmp_path, timeout=120, check=True)
    jobs = sorted(str(p) for p in (tmp_path / "multimeter-results").glob("etl_job-*.json"))
    completed = run_python(
        "-m", "multimeter", "report", *jobs, "-o", "multimeter-report.html", cwd=tmp_path
    )
    report = tmp_path / "multimeter-report.html"
    assert (0, "") == (completed.returncode, completed.stdout)
    assert f"wrote {report}" in completed.stderr
    assert "etl_job" in report.read_text()
