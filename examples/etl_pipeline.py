"""Measure a small, realistic ETL job and store the result as JSON.

Generates CSV sales records, parses them, cleans and enriches them, and
aggregates revenue per region and month, with a mark at every phase. The
result goes to ``./multimeter-results/<identifier>.json`` and a short summary
is printed.

    python examples/etl_pipeline.py [--rows 300000] [--cycle-time 0.05]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
from collections import defaultdict

from multimeter import FileStorage, JsonFormat, Multimeter, ResourceProbe

REGIONS = ("north", "south", "east", "west", "central")
PRODUCTS = {f"P{n:03d}": round(random.Random(n).uniform(2, 300), 2) for n in range(200)}


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


def parse(text: str) -> list[dict[str, str]]:
    """The CSV records as dictionaries."""
    return list(csv.DictReader(io.StringIO(text)))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--cycle-time", type=float, default=0.05)
    parser.add_argument("--out", default="multimeter-results")
    args = parser.parse_args()

    storage = FileStorage(args.out, JsonFormat())
    meter = Multimeter(ResourceProbe(), cycle_time=args.cycle_time, storage=storage)
    measurement = meter.measure(None, job="etl-example", rows=args.rows)
    with measurement as result:
        measurement.add_mark("generate")
        text = generate(args.rows)
        measurement.add_mark("parse")
        records = parse(text)
        measurement.add_mark("transform")
        rows = transform(records)
        measurement.add_mark("aggregate")
        summary = aggregate(rows)
        measurement.add_mark("done")

    best = max(summary.items(), key=lambda item: item[1]["total"])
    figures = result.summary()
    print(
        f"ETL: {len(records)} records, {len(rows)} clean, {len(summary)} groups;"
        f" best {best[0]} with {best[1]['total']:.2f}"
    )
    print(f"duration     {figures['duration_s']:.3f} s")
    print(f"cpu user     {figures['cpu_user_s']:.3f} s")
    print(f"cpu system   {figures['cpu_system_s']:.3f} s")
    print(f"peak memory  {figures['peak_memory_bytes'] / 2**20:.1f} MiB (max RSS)")
    print(f"points       {figures['points']}")
    print(f"marks        {', '.join(m.label for m in result.marks)}")
    print(f"stored       {storage.path_for(result.identifier)}")


if __name__ == "__main__":
    main()
