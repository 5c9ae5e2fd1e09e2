"""One series of measurement: start, marks, end, stored."""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from multimeter import _env, _meta, _process
from multimeter._log import describe, safe_log, warn_once
from multimeter._reentry import BUSY, made_by_signal_handler
from multimeter._sampler import Sampler
from multimeter._session import Session
from multimeter._spans import around_current
from multimeter._tags import normalize_tags
from multimeter._writer import ResultJob
from multimeter.result import Result, us_to_datetime

if TYPE_CHECKING:
    from multimeter.multimeter import Multimeter

__all__ = ["Measurement"]

#: Seconds :meth:`Measurement.end` waits for its result to be stored.
STORE_WAIT = _env.DEFAULT_EXIT_TIMEOUT


def generate_identifier() -> str:
    """A unique identifier from the current UTC time, the pid and a counter.

    For example ``20261127T215301.123456Z-4242-1``: valid as a file name on
    every platform and as an InfluxDB measurement name.
    """
    now_ns = time.time_ns()
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds))
    return f"{stamp}.{nanos // 1000:06d}Z-{os.getpid()}-{next(_process.current().names)}"


class Measurement:
    """A single series of measurement, made by :meth:`Multimeter.measure`.

    Sampling runs on the process's shared sampler thread from :meth:`start` to
    :meth:`end`; :meth:`end` adds a final point, so even a measurement shorter
    than one cycle has data, then stores the result through the process's
    writer, as ``@measured`` calls are stored (in the order things ended, with
    the storage's spool, and flushed at exit). The result's ``start``
    is the moment :meth:`start` was called (meta data ``started``), its ``end``
    the final point.

    As a context manager it starts on entry, returns the
    :class:`~multimeter.result.Result`, and ends on exit (also when the block
    raises; the exception is not touched).

    Args:
        multimeter: Its probes, cycle time, storage and tags (as of now) are used.
        identifier: Identifies this measurement; ``None`` generates a unique
            one from the current time.
        **tags: Tags for later telling measurements apart (values stored as strings).

    Raises:
        ValueError: for a tag that cannot be stored.
    """

    def __init__(self, multimeter: Multimeter, identifier: str | None, **tags: Any) -> None:
        self._setup = setup = multimeter.snapshot
        self.identifier = identifier or generate_identifier()
        self.tags = {**setup.tags, **normalize_tags(tags)}
        self.result: Result | None = None
        self._sampler: Sampler | None = None
        self._session: Session | None = None
        self._process: _process.ProcessState | None = None
        self._span: Any = None  # the OpenTelemetry span its figures go to (_spans.Around)

    def start(self) -> Result:
        """Start measuring and return the (growing) result.

        Raises:
            RuntimeError: when the measurement was started before.
        """
        if self._session is not None:
            raise RuntimeError(f"measurement {self.identifier!r} was already started")
        setup = self._setup
        self._process = process = _process.current()
        self._sampler = sampler = process.sampler
        result = Result(identifier=self.identifier, schema=setup.schema)
        result.tags = self.tags
        result.meta_data = _meta.process_meta_data()
        result.meta_data["started"] = us_to_datetime(sampler.clock.time_us()).isoformat()
        self.result = result
        self._session = session = Session(result, setup.probes, setup.cycle_time, setup.plan)
        if BUSY.busy:
            # A signal's handler that interrupted multimeter's own code in this thread
            # (the sampler's lock may be held): the measurement is not sampled, and
            # not stored (as a measured call made there is not measured).
            warn_once(
                ("measurement", "busy"),
                "measure() in a signal handler that interrupted multimeter: not measured",
            )
            self._process = None
            return result
        sampler.begin(session)
        self._span = around_current(setup)
        return result

    def add_mark(self, label: str) -> None:
        """Add a mark labelled ``label`` at the current time.

        Raises:
            RuntimeError: before :meth:`start`.
        """
        session = self._session
        if session is None or self._sampler is None:
            raise RuntimeError("add_mark() needs a started measurement")
        session.builder.add_mark(self._sampler.clock.time_us(), str(label))

    def end(self) -> None:
        """Stop measuring, add the final point and store the result.

        The result goes to the process's writer, like the results of
        ``@measured`` calls, and ``end()`` waits until the writer has stored it,
        with what was queued before it (at most :data:`STORE_WAIT` seconds; what
        is not stored by then is stored later, or at the process's exit). In a
        signal's handler it does not wait. A storage error is logged (with the
        identifier and the storage) and not raised: the result stays available
        as :attr:`result`. A measurement ended in a forked child that did not
        start it is not stored there (the parent owns it). Ending twice does
        nothing the second time.

        Raises:
            RuntimeError: before :meth:`start`.
        """
        session = self._session
        if session is None or self.result is None or self._sampler is None:
            raise RuntimeError("end() needs a started measurement")
        process = _process.current()
        if process is not self._process or not session.active:
            return  # begun before a fork (the parent owns it), not sampled, or ended already
        self._sampler.finish(session)
        around = self._span
        if around is not None:
            self._span = None
            around.end()
        storage = self._setup.storage
        if not self._setup.stores:
            return
        try:
            process.writer.put(ResultJob(self.result, storage))
            if not BUSY.busy and not made_by_signal_handler(sys._getframe(1)):
                # A handler's measurement does not wait: the code it interrupted may
                # be the one making the writer's backlog.
                process.writer.flush(STORE_WAIT)
        except Exception as error:  # noqa: BLE001 - storing must not break the measured code
            safe_log(
                "error",
                "storing the result failed",
                identifier=self.identifier,
                storage=describe(storage),
                error=repr(error),
            )

    def __enter__(self) -> Result:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end()
