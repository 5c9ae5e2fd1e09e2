"""The example data loaded at install: real results, measured here and now by multimeter.

A small ETL job is measured through the core API (``Multimeter().measure()``, with
marks between its phases) and a few ``@measured`` functions are called, one of
them raising now and then. The results are encoded exactly as
:class:`~multimeter.storages.influx.InfluxDBStorage` sends them, so the dashboards
show what a program of yours would write.
"""

from __future__ import annotations

import contextlib
import csv
import io
import random

import multimeter
from multimeter.multimeter import Multimeter
from multimeter.probe import ResourceProbe
from multimeter.result import Result
from multimeter.storages.influx import to_line_protocol
from multimeter.testing import InMemoryStorage

#: The identifier of the core-API measurement in the example data.
IDENTIFIER = "example-etl"


@multimeter.measured(tags={"example": "etl"}, tag_args=["kind"])
def example_parse(text: str, kind: str) -> list[dict[str, str]]:
    """Parse CSV records (a measured function of the example)."""
    return list(csv.DictReader(io.StringIO(text)))


@multimeter.measured(tags={"example": "etl"})
def example_total(records: list[dict[str, str]]) -> float:
    """Sum a column (a measured function of the example)."""
    return sum(float(record["amount"]) for record in records)


@multimeter.measured(tags={"example": "etl"})
def example_lookup(key: int) -> int:
    """A lookup that fails for every fifth key (errors for the dashboards)."""
    if key % 5 == 0:
        raise KeyError(key)
    return key * 2


def _csv(rows: int, seed: int) -> str:
    generator = random.Random(seed)
    lines = ["id,customer,amount"]
    lines += [
        f"{i},c{generator.randrange(100)},{generator.uniform(1, 500):.2f}" for i in range(rows)
    ]
    return "\n".join(lines) + "\n"


def _measured_calls(rounds: int) -> list[Result]:
    storage = InMemoryStorage()
    multimeter.configure(storage=storage, probes=["resource"], cycle_time=0.05, calls="each")
    try:
        for round_number in range(rounds):
            records = example_parse(_csv(2000 + 400 * round_number, round_number), "orders")
            example_total(records)
            with contextlib.suppress(KeyError):
                example_lookup(round_number)
        multimeter.flush()
    finally:
        multimeter.configure(enabled=False)
    return list(storage.results)


def _core_measurement(rows: int) -> Result:
    storage = InMemoryStorage()
    meter = Multimeter(ResourceProbe(), cycle_time=0.05, storage=storage)
    measurement = meter.measure(IDENTIFIER, example="etl")
    measurement.start()
    text = _csv(rows, 0)
    measurement.add_mark("generated")
    records = list(csv.DictReader(io.StringIO(text)))
    measurement.add_mark("parsed")
    totals: dict[str, float] = {}
    for record in records:
        totals[record["customer"]] = totals.get(record["customer"], 0.0) + float(record["amount"])
    measurement.add_mark("aggregated")
    measurement.end()
    return storage.results[-1]


def example_results(rows: int = 200_000, rounds: int = 12) -> list[Result]:
    """Measure the example job and the example calls; their results."""
    return [_core_measurement(rows), *_measured_calls(rounds)]


def example_lines(results: list[Result]) -> str:
    """``results`` as the line protocol InfluxDBStorage writes."""
    return "".join(to_line_protocol(result) for result in results)
