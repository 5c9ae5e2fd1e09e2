"""The environment variables multimeter reads, and their parsing.

Each parser takes the raw string and raises ``ValueError`` naming the variable
and the allowed values.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

ENABLED = "MULTIMETER_ENABLED"
STORAGE = "MULTIMETER_STORAGE"
DIR = "MULTIMETER_DIR"
FORMAT = "MULTIMETER_FORMAT"
CYCLE_TIME = "MULTIMETER_CYCLE_TIME"
PROBES = "MULTIMETER_PROBES"
TAGS = "MULTIMETER_TAGS"
SAMPLE_RATE = "MULTIMETER_SAMPLE_RATE"
EXIT_TIMEOUT = "MULTIMETER_EXIT_TIMEOUT"
SPOOL_DIR = "MULTIMETER_SPOOL_DIR"
HANDLE_SIGTERM = "MULTIMETER_HANDLE_SIGTERM"
CALLS = "MULTIMETER_CALLS"
SPANS = "MULTIMETER_SPANS"
INFLUXDB_URL = "MULTIMETER_INFLUXDB_URL"
INFLUXDB_TOKEN = "MULTIMETER_INFLUXDB_TOKEN"
INFLUXDB_ORG = "MULTIMETER_INFLUXDB_ORG"
INFLUXDB_BUCKET = "MULTIMETER_INFLUXDB_BUCKET"
#: The ``run`` meta datum of every result (e.g. a CI build number).
RUN = "MULTIMETER_RUN"
READER = "MULTIMETER_READER"
#: influxdb-client's own variables, used when ours are not set.
INFLUXDB_FALLBACKS = {
    INFLUXDB_URL: "INFLUXDB_V2_URL",
    INFLUXDB_TOKEN: "INFLUXDB_V2_TOKEN",
    INFLUXDB_ORG: "INFLUXDB_V2_ORG",
}

DEFAULT_DIR = "multimeter-results"
DEFAULT_EXIT_TIMEOUT = 5.0
#: The shortest cycle time (seconds): shorter ones cost the measured program
#: more than they tell.
MIN_CYCLE_TIME = 0.001
#: The longest cycle time: a day (longer ones overflowed the clock arithmetic).
MAX_CYCLE_TIME = 86_400.0
#: ``MULTIMETER_READER``'s values.
READER_CHOICES = ("process", "thread")
#: The longest ``MULTIMETER_RUN`` (it is in every result's meta data).
MAX_RUN_LENGTH = 200
STORAGE_CHOICES = ("none", "file", "log", "influxdb", "otlp")
FORMAT_CHOICES = ("jsonl", "json", "line")
#: ``each``: one result per ``@measured`` call; ``aggregate``: sums per function and cycle.
CALLS_CHOICES = ("each", "aggregate")
SPANS_CHOICES = ("attributes", "calls", "off")


@dataclass(frozen=True)
class Variable:
    """One environment variable multimeter reads, as the documentation shows it."""

    name: str
    meaning: str  # what it sets and the values it takes (Markdown)
    default: str  # (Markdown)


#: Every variable multimeter reads, in the documented order: the documentation's
#: table is made from this list, and a test checks the code reads no other.
VARIABLES = (
    Variable(
        ENABLED, "measure at all: `1`/`0`, `true`/`false` (also `yes`/`no`, `on`/`off`)", "`1`"
    ),
    Variable(
        STORAGE,
        "where results go: `none` (measure, store nothing), `file`, `log`, `influxdb`,"
        " `otlp` (OpenTelemetry metrics, configured by the `OTEL_EXPORTER_OTLP_*` variables)",
        "`file`",
    ),
    Variable(DIR, "directory for result files", f"`{DEFAULT_DIR}`"),
    Variable(
        FORMAT,
        "for `file`: `jsonl` (batch files, `JsonLinesStorage`), or one file per result"
        " (`FileStorage`): `json`, `line`",
        "`jsonl`",
    ),
    Variable(
        CYCLE_TIME,
        f"seconds between points, from `{MIN_CYCLE_TIME}` to `{MAX_CYCLE_TIME:g}` (a day)",
        "`1`",
    ),
    Variable(
        PROBES,
        "comma-separated probe names: `resource`, `psutil`, `system`, `tracemalloc`, `gc`, `nvml`",
        "`resource`",
    ),
    Variable(
        READER,
        "`process` (a helper process reads the psutil/system/NVML figures) or `thread`"
        " (a thread of the program does)",
        "`process`",
    ),
    Variable(TAGS, "global tags, `key=value,key=value`", "none"),
    Variable(
        RUN,
        "the `run` meta datum of every result (a CI build number, say): results with the"
        f" same run belong together; one line of printable text, at most {MAX_RUN_LENGTH}"
        " characters",
        "one per process start, kept by forked children",
    ),
    Variable(SAMPLE_RATE, "fraction of calls measured, 0 to 1 (for hot functions)", "`1`"),
    Variable(
        CALLS,
        "`each` (a result per `@measured` call), `aggregate` (sums per function and cycle)",
        "`each`",
    ),
    Variable(
        SPANS,
        "OpenTelemetry spans, where the program imported `opentelemetry`: `attributes`"
        " (each `@measured` call's and measurement's figures on the current span),"
        " `calls` (each call also its own span), `off`",
        "`attributes`",
    ),
    Variable(
        EXIT_TIMEOUT,
        "seconds the exit (also on SIGTERM) waits for pending results, > 0",
        f"`{DEFAULT_EXIT_TIMEOUT:g}`",
    ),
    Variable(HANDLE_SIGTERM, "`1`/`0`: store pending results on SIGTERM", "`1`"),
    Variable(INFLUXDB_URL, "InfluxDB URL (else `INFLUXDB_V2_URL`)", "`http://localhost:8086`"),
    Variable(
        INFLUXDB_TOKEN, "API token (else `INFLUXDB_V2_TOKEN`); required for `influxdb`", "none"
    ),
    Variable(INFLUXDB_ORG, "organisation (else `INFLUXDB_V2_ORG`)", "`kantai`"),
    Variable(INFLUXDB_BUCKET, "bucket", "`multimeter`"),
    Variable(
        SPOOL_DIR, "where undelivered InfluxDB and OTLP data waits", "`<MULTIMETER_DIR>/spool`"
    ),
    Variable(
        "MULTIMETER_PYTEST",
        "`1` (also `true`, `yes`, `on`): the pytest plugin measures every test, as"
        " `pytest --multimeter` does",
        "off",
    ),
)


def markdown_table() -> str:
    """The variables as a Markdown table (the documentation's, generated)."""
    lines = ["| variable | what it sets, and its values | default |", "| --- | --- | --- |"]
    lines += [f"| `{v.name}` | {v.meaning} | {v.default} |" for v in VARIABLES]
    return "\n".join(lines) + "\n"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value with surrounding blanks removed; ``None`` if unset or blank."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def parse_bool(name: str, text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off``, in any case."""
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(
        f"{name}={text!r} is not valid; allowed: 1, 0, true, false (or yes/no, on/off)"
    )


def parse_choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``, case-insensitively."""
    lowered = text.lower()
    if lowered not in choices:
        raise ValueError(f"{name}={text!r} is not valid; allowed: {', '.join(choices)}")
    return lowered


def _parse_number(name: str, text: str, valid: Callable[[float], bool], allowed: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not valid(value):
        raise ValueError(f"{name}={text!r} is not valid; allowed: {allowed}")
    return value


def parse_positive(name: str, text: str) -> float:
    """A finite number of seconds greater than 0."""
    return _parse_number(
        name, text, lambda v: math.isfinite(v) and v > 0, "a number of seconds > 0"
    )


def parse_cycle_time(name: str, text: str) -> float:
    """A number of seconds from :data:`MIN_CYCLE_TIME` to :data:`MAX_CYCLE_TIME`."""
    return _parse_number(
        name,
        text,
        lambda v: MIN_CYCLE_TIME <= v <= MAX_CYCLE_TIME,
        f"a number of seconds from {MIN_CYCLE_TIME} to {MAX_CYCLE_TIME:g}",
    )


#: Control characters (C0, DEL, C1): they would move the cursor or split a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def parse_run(name: str, text: str) -> str:
    """A run identifier: one line of printable text, at most :data:`MAX_RUN_LENGTH` long."""
    control = _CONTROL.search(text)
    if control is not None:
        raise ValueError(
            f"{name}={text!r}: control character {control.group()!r} at position"
            f" {control.start()}; allowed: one line of printable text"
        )
    if len(text) > MAX_RUN_LENGTH:
        raise ValueError(
            f"{name} is {len(text)} characters long; allowed: at most {MAX_RUN_LENGTH}"
        )
    return text


def parse_fraction(name: str, text: str) -> float:
    """A number from 0 to 1."""
    return _parse_number(name, text, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")


def parse_tags(name: str, text: str) -> dict[str, str]:
    """``key=value,key=value``; blanks around keys and values are removed."""
    tags: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"{name}={text!r} is not valid; allowed: key=value,key=value")
        tags[key.strip()] = value.strip()
    return tags


def parse_names(name: str, text: str, choices: tuple[str, ...]) -> list[str]:
    """A comma-separated list of names from ``choices``."""
    names = [item.strip().lower() for item in text.split(",") if item.strip()]
    for item in names:
        if item not in choices:
            raise ValueError(f"{name}={text!r}: unknown {item!r}; allowed: {', '.join(choices)}")
    return names
