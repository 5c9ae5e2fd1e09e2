"""``multimeter report`` on a result of 100,000 points: file size, write time, render time.

One result of 100,000 points of ResourceProbe's 26 measures (a 10 ms cycle for
about 17 minutes, a spike every 9,973 points, a mark every 10,000) is stored as
JSON, then ``multimeter report`` writes its page (timed as a subprocess, and in
phases in this process: loading the result, the chart data, the page). The page
is opened five times in Debian's Chromium (headless, driven by Playwright); the
render time is the
browser's own figure: ``performance.now()`` from navigation start to "all charts
drawn". Baseline in the same run: the same page without downsampling (every
point of every series embedded and drawn). Targets: under 3 MB, best render
under 2 s.

    .venv/bin/python bench/report_render.py
"""

from __future__ import annotations

import math
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from _common import finish, report

from multimeter import FileStorage, JsonFormat, ResourceProbe, Result, load_result
from multimeter._report._build import title_for
from multimeter._report._data import chart_data
from multimeter._report._page import render, write_page

POINTS = 100_000
LOADS = 5
CHROMIUM = "/usr/bin/chromium"


def make_result(directory: pathlib.Path) -> pathlib.Path:
    probe = ResourceProbe()
    result = Result(probe, identifier="big", tags={"size": "100k"})
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    keys = [measure.key for measure in probe.measures]
    for i in range(POINTS):
        moment = start + timedelta(milliseconds=10 * i)
        spike = 50.0 if i % 9973 == 5000 else 0.0
        result.append(
            moment,
            {
                key: abs(math.sin(i / 700 + j)) * (1e8 if "rss" in key else 1) + spike
                for j, key in enumerate(keys)
            },
        )
        if i % 10_000 == 0:
            result.add_mark(moment, f"step {i}")
    storage = FileStorage(directory, JsonFormat())
    storage.store(result)
    return storage.path_for("big")


def render_times(path: pathlib.Path) -> list[float]:
    """Milliseconds from navigation start to all charts drawn, per load."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        times = []
        for _ in range(LOADS):
            page.goto(path.resolve().as_uri())
            page.wait_for_function("window.multimeterReady !== undefined", timeout=120_000)
            times.append(float(page.evaluate("window.multimeterReady")))
        browser.close()
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = pathlib.Path(scratch)
        stored = make_result(directory / "results")
        ours = directory / "report.html"

        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "multimeter", "report", str(stored), "-o", str(ours)],
            check=True,
            capture_output=True,
        )
        command_s = time.perf_counter() - started

        started = time.perf_counter()
        result = load_result(stored)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        data = chart_data([result])
        chart_s = time.perf_counter() - started
        started = time.perf_counter()
        data["generated"] = "now"
        write_page(directory / "again.html", render(data, title_for([stored])))
        page_s = time.perf_counter() - started

        full = directory / "full.html"
        data = chart_data([result], buckets=POINTS)  # no downsampling
        data["generated"] = "baseline"
        write_page(full, render(data, title_for([stored])))

        ours_ms, full_ms = render_times(ours), render_times(full)
        size, full_size = ours.stat().st_size, full.stat().st_size
        stored_size = stored.stat().st_size

    best = min(ours_ms)
    ok = report(
        "report_render",
        {
            "points": POINTS,
            "stored_json_mb": round(stored_size / 1e6, 1),
            "report_mb": round(size / 1e6, 2),
            "command_s": round(command_s, 2),
            "load_result_s": round(load_s, 2),
            "chart_data_s": round(chart_s, 2),
            "page_s": round(page_s, 3),
            "render_best_ms": round(best),
            "render_median_ms": round(statistics.median(ours_ms)),
            "baseline_report_mb": round(full_size / 1e6, 2),
            "baseline_render_best_ms": round(min(full_ms)),
            "baseline_render_median_ms": round(statistics.median(full_ms)),
            "render_ratio": round(statistics.median(ours_ms) / statistics.median(full_ms), 3),
        },
        {"under_3_mb": size < 3_000_000, "render_under_2_s": best < 2000},
    )
    finish(ok)


if __name__ == "__main__":
    main()
