"""``multimeter show DIR`` on 100,000 result files, end to end.

The files are what a program writes with one ``.json`` file per ``@measured``
call (``FileStorage(dir, JsonFormat())``, the ``resource`` probe: about 6.5 kB
each, most of it the schema), or one ``.line`` file (``LineFormat()``) with the
second argument ``line``. A real program writes ``REAL`` of them in a
subprocess (three functions, one of which raises, one with a tag); the other
files are copies of those, each with its own identifier in the file name and in
the document (a template copy: writing 100,000 through the library would take
minutes here and measure the writer, not ``show``). Then ``python -m multimeter
show DIR`` runs in a subprocess, ``RUNS`` times, and its wall time (interpreter
start included; warm page cache: the files were just written) is reported, with
``--json`` once to check the figures: every call counted, per function.
Target: at most 10 s for 100,000 files.

    .venv/bin/python bench/show_many.py [FILES] [json|line]
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from _common import finish, report

FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
#: json (JsonFormat) or line (LineFormat): the format of the per-call files.
FORMAT = sys.argv[2] if len(sys.argv) > 2 else "json"
REAL = 1_000
RUNS = 3
TARGET_S = 10.0

PROGRAM = textwrap.dedent(
    """
    import sys
    import multimeter

    file_format = multimeter.JsonFormat() if sys.argv[2] == "json" else multimeter.LineFormat()
    multimeter.configure(storage=multimeter.FileStorage(sys.argv[1], file_format))

    @multimeter.measured(tags={"stage": "parse"})
    def parse(line):
        return line.split(",")

    @multimeter.measured
    def total(rows):
        return sum(len(row) for row in rows)

    @multimeter.measured
    def check(row):
        if len(row) > 2:
            raise ValueError(row)

    for i in range(%d):
        row = parse(f"{i},b,c")
        total([row])
        if i %% 3 == 0:
            try:
                check(row)
            except ValueError:
                pass
    multimeter.flush()
    """
)


def _write_real(directory: pathlib.Path) -> list[pathlib.Path]:
    """Have a real program write about REAL per-call result files."""
    calls = REAL * 3 // 7  # 7 calls per 3 iterations
    code = PROGRAM % calls
    subprocess.run([sys.executable, "-c", code, str(directory), FORMAT], check=True)
    return sorted(directory.glob(f"*.{FORMAT}"))


def _copy(templates: list[pathlib.Path], directory: pathlib.Path, count: int) -> None:
    """Fill ``directory`` with ``count`` files, copies of ``templates`` with new identifiers."""
    texts = []
    for path in templates:
        text = path.read_text(encoding="utf-8")
        identifier = path.stem
        prefix = identifier.rsplit("-", 1)[0]
        texts.append((identifier, prefix, text))
    for number in range(count):
        identifier, prefix, text = texts[number % len(texts)]
        new = f"{prefix}-c{number}"
        if FORMAT == "json":
            data = text.replace(f'"identifier":"{identifier}"', f'"identifier":"{new}"', 1)
        else:  # the header, and the measurement name that starts every line
            data = text.replace(f'"identifier": "{identifier}"', f'"identifier": "{new}"', 1)
            data = data.replace(f"\n{identifier},", f"\n{new},")  # tags follow
            data = data.replace(f"\n{identifier} ", f"\n{new} ")  # no tags
        (directory / f"{new}.{FORMAT}").write_text(data, encoding="utf-8")


def _show(directory: pathlib.Path, *options: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "multimeter", "show", str(directory), *options],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parent = pathlib.Path(tempfile.mkdtemp(prefix="show-many-"))
    try:
        real = parent / "real"
        templates = _write_real(real)
        files = parent / "files"
        files.mkdir()
        started = time.perf_counter()
        _copy(templates, files, FILES)
        generate_s = time.perf_counter() - started
        size = sum(entry.stat().st_size for entry in os.scandir(files))
        load_before = os.getloadavg()[0]
        times = [_show(files)[0] for _ in range(RUNS)]
        json_s, text = _show(files, "--json")
        document = json.loads(text)
        functions = {row["function"]: row["calls"] for row in document["runs"][0]["functions"]}
        _, table = _show(files)
        print(table, file=sys.stderr)
        median = statistics.median(times)
        ok = report(
            "show_many",
            {
                "files": FILES,
                "format": FORMAT,
                "templates": len(templates),
                "megabytes": round(size / 1e6, 1),
                "generate_s": round(generate_s, 1),
                "show_s": [round(t, 2) for t in times],
                "show_median_s": round(median, 2),
                "show_json_s": round(json_s, 2),
                "us_per_file": round(median / FILES * 1e6, 1),
                "calls_by_function": json.dumps(functions),
                "load_average_1min_before_after": [
                    round(load_before, 2),
                    round(os.getloadavg()[0], 2),
                ],
            },
            {
                f"show of {FILES} files <= {TARGET_S} s": median <= TARGET_S,
                "every file counted": sum(functions.values()) == FILES,
            },
        )
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    finish(ok)


if __name__ == "__main__":
    main()
