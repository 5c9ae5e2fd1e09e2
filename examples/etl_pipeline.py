"""Measure a small, realistic ETL job: each phase measured, the whole job too.

Generates CSV sales records, parses them, cleans and enriches them, and
aggregates revenue per region and month. Each phase is a ``@measured``
function tagged with its stage, and the job that calls them is measured as
well, so its result holds the job's time series with every phase as marks.
Results go to ``./multimeter-results/`` (one JSON file per call); a short
summary of the job is printed. Then look at it:

    python examples/etl_pipeline.py [--rows 300000]
    multimeter show multimeter-results
    multimeter report multimeter-results -o multimeter-report.html
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
from collections import defaultdict

import multimeter
from multimeter import FileStorage, JsonFormat

REGIONS = ("north", "south", "east", "west", "central")
PRODUCTS = {f"P{n:03d}": round(random.Random(n).uniform(2, 300), 2) for n in range(200)}


@multimeter.measured(tags={"stage": "generate"})
def generate(rows: int, seed: int = 7) -> str:
    """CSV text of ``rows`` sales records, some of them dirty."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["order_id", "date", "region", "product", "quantity", "discount"])
    for order in range(rows):
        quantity = str(rng.randint(1, 20)) if rng.random() > 0.01 else "n/a"
        writer.writerow(
            [
                order,
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                rng.choice(REGIONS).upper() if rng.random() < 0.1 else rng.choice(REGIONS),
                rng.choice(tuple(PRODUCTS)),
                quantity,
                f"{rng.choice((0, 0, 0, 5, 10, 15))}%",
            ]
        )
    return out.getvalue()


@multimeter.measured(tags={"stage": "parse"})
def parse(text: str) -> list[dict[str, str]]:
    """The CSV records as dictionaries."""
    return list(csv.DictReader(io.StringIO(text)))


@multimeter.measured(tags={"stage": "transform"})
def transform(records: list[dict[str, str]]) -> list[tuple[str, str, float]]:
    """Clean records: drop bad quantities, normalise regions, compute revenue."""
    cleaned = []
    for record in records:
        if not record["quantity"].isdigit():
            continue
        price = PRODUCTS[record["product"]]
        discount = int(record["discount"].rstrip("%")) / 100
        revenue = int(record["quantity"]) * price * (1 - discount)
        cleaned.append((record["region"].lower(), record["date"][:7], revenue))
    return cleaned


@multimeter.measured(tags={"stage": "aggregate"})
def aggregate(rows: list[tuple[str, str, float]]) -> dict[tuple[str, str], dict[str, float]]:
    """Revenue total, mean and median per (region, month)."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for region, month, revenue in rows:
        groups[(region, month)].append(revenue)
    return {
        key: {
            "total": sum(values),
            "mean": statistics.fmean(values),
            "median": statistics.median(values),
        }
        for key, values in groups.items()
    }


@multimeter.measured(tags={"stage": "job"})
def etl_job(rows: int) -> tuple[int, int, dict[tuple[str, str], dict[str, float]]]:
    """The whole job: its result holds the time series, each phase a pair of marks."""
    records = parse(generate(rows))
    cleaned = transform(records)
    return len(records), len(cleaned), aggregate(cleaned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--cycle-time", type=float, default=0.05)
    parser.add_argument("--out", default="multimeter-results")
    args = parser.parse_args()

    # Once, at start-up: where results go, what is read and how often the job is sampled
    # (psutil's figures give the current memory, getrusage only the high-water mark).
    multimeter.configure(
        storage=FileStorage(args.out, JsonFormat()),
        probes=["resource", "psutil"],
        cycle_time=args.cycle_time,
    )
    records, clean, summary = etl_job(args.rows)
    multimeter.flush()  # here only to print the summary below: exit would flush too

    result = max(
        (r for r in multimeter.load_results(args.out) if r.tags.get("stage") == "job"),
        key=lambda r: r.start or 0,
    )
    figures = result.summary()
    (region, month), best = max(summary.items(), key=lambda item: item[1]["total"])
    print(
        f"ETL: {records} records, {clean} clean, {len(summary)} groups;"
        f" best {region} {month} with {best['total']:.2f}"
    )
    print(f"duration     {figures['duration_s']:.3f} s")
    print(f"cpu user     {figures['cpu_user_s']:.3f} s")
    print(f"cpu system   {figures['cpu_system_s']:.3f} s")
    peak = figures["peak_memory_bytes"]
    print(f"peak memory  {'n/a' if peak is None else f'{peak / 2**20:.1f} MiB'}")
    print(f"points       {figures['points']}")
    print(f"marks        {', '.join(m.label for m in result.marks)}")
    print(f"stored in    {args.out}/ ({result.identifier}.json and one file per phase)")


if __name__ == "__main__":
    main()
