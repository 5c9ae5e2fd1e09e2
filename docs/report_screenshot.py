"""Make ``docs/report.png``: a real job measured, its report opened in Chromium.

The job (generate, parse, transform and aggregate sales records, then write
them out) runs in a subprocess with ``@measured`` phases inside a ``@measured``
job; ``multimeter report`` writes the page of the job's result; Debian's Chromium
(headless, through Playwright) takes the picture.

    .venv/bin/python docs/report_screenshot.py
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

from playwright.sync_api import sync_playwright

HERE = pathlib.Path(__file__).parent

JOB = textwrap.dedent(
    """
    import csv, io, json, os, random, sys, tempfile, time
    from collections import defaultdict
    import multimeter
    from multimeter import FileStorage, JsonFormat

    multimeter.configure(
        storage=FileStorage(sys.argv[1], JsonFormat()), cycle_time=0.02,
        probes=["psutil", "resource"], tags={"job": "sales-etl"},
    )

    @multimeter.measured(tags={"stage": "extract"})
    def extract(rows):
        rng = random.Random(7)
        out = io.StringIO()
        writer = csv.writer(out)
        for order in range(rows):
            writer.writerow([order, rng.choice("NSEW"), rng.randint(1, 20), rng.random()])
        return out.getvalue()

    @multimeter.measured(tags={"stage": "transform"})
    def transform(text):
        records = [(r[1], int(r[2]) * float(r[3])) for r in csv.reader(io.StringIO(text))]
        return sorted(records, key=lambda record: record[1])

    @multimeter.measured(tags={"stage": "aggregate"})
    def aggregate(records):
        totals = defaultdict(float)
        for region, revenue in records:
            totals[region] += revenue
        time.sleep(0.3)
        return dict(totals)

    @multimeter.measured(tags={"stage": "load"})
    def load(records):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "out.jsonl"), "w") as stream:
                for record in records:
                    stream.write(json.dumps(record) + "\\n")
                stream.flush()
                os.fsync(stream.fileno())

    @multimeter.measured(tags={"stage": "etl"})
    def job(rows):
        records = transform(extract(rows))
        aggregate(records)
        load(records)

    job(int(sys.argv[2]))
    """
)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = pathlib.Path(scratch)
        script = directory / "sales_etl.py"
        script.write_text(JOB)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MULTIMETER_")}
        env["MULTIMETER_RUN"] = "nightly-42"
        subprocess.run(
            [sys.executable, str(script), str(directory / "results"), "250000"], check=True, env=env
        )
        jobs = list((directory / "results").glob("job-*.json"))
        page_path = directory / "report.html"
        subprocess.run(
            [sys.executable, "-m", "multimeter", "report", *map(str, jobs), "-o", str(page_path)],
            check=True,
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_path.as_uri())
            page.wait_for_function("window.multimeterReady !== undefined")
            page.screenshot(path=str(HERE / "report.png"))
            browser.close()


if __name__ == "__main__":
    main()
