"""What ``multimeter run``'s mark sink costs a ``@measured`` call.

``multimeter run`` makes every measured call of a script add its enter and exit
marks to the run's result through the process's mark sink
(``ProcessState.marks``, see ``multimeter._marks``), which is ``None`` otherwise: a
call with no enclosing call then pays one check at its end. In the same run, 9
interleaved rounds of 20,000 single calls of an empty measured function (each
timed with ``perf_counter_ns``, the median taken, the bare function's median
subtracted):

- off: no sink (every program not under ``multimeter run``);
- on: the sink of ``multimeter run`` collects the marks;
- the checks alone: a function doing two such checks, against an empty one.

Targets: the checks cost at most 2 % of an enabled call (off); a call under
``multimeter run`` (on) costs at most 1.2x one that is not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from _common import Discard, finish, per_call, report

import multimeter
from multimeter import _process
from multimeter._marks import MarkSink

CALLS = 20_000
ROUNDS = 9


hook: Callable[[int, str], None] | None = None


def two_checks() -> None:
    if hook is not None:
        pass
    if hook is not None:
        pass


def empty() -> None:
    pass


def main() -> None:
    multimeter.configure(storage=Discard(), probes=["resource"])

    @multimeter.measured
    def work() -> None:
        pass

    def bare() -> None:
        pass

    off, on, checks = [], [], []
    for _ in range(ROUNDS):
        base = per_call(bare, CALLS)
        _process.current().marks = None
        off.append(per_call(work, CALLS) - base)
        _process.current().marks = MarkSink()
        on.append(per_call(work, CALLS) - base)
        _process.current().marks = None
        multimeter.flush()
        # The checks alone are below the timer's resolution per call: time a loop.
        started = time.perf_counter_ns()
        for _ in range(CALLS):
            two_checks()
        middle = time.perf_counter_ns()
        for _ in range(CALLS):
            empty()
        checks.append(max(2 * middle - started - time.perf_counter_ns(), 0) / CALLS / 1e9)
    off_us = statistics.median(off) * 1e6
    on_us = statistics.median(on) * 1e6
    checks_us = statistics.median(checks) * 1e6
    ratios = statistics.median(b / a for a, b in zip(off, on, strict=True) if a > 0)
    ok = report(
        "run_marks",
        {
            "measured_call_us_hook_off": round(off_us, 3),
            "measured_call_us_hook_on": round(on_us, 3),
            "on_vs_off": round(ratios, 3),
            "two_checks_us": round(checks_us, 4),
            "two_checks_share_of_call": round(checks_us / off_us, 4),
        },
        {
            "two checks <= 2% of a call": checks_us <= 0.02 * off_us,
            "on <= 1.2x off": ratios <= 1.2,
        },
    )
    finish(ok)


if __name__ == "__main__":
    main()
