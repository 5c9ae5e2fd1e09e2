"""OpenTelemetry: resource figures on every span (``pip install 'multimeter[otel]'``).

``@measured`` calls and measurements put their figures on the current span by
themselves, once the program imported OpenTelemetry (see ``configure(spans=...)``).
:class:`MultimeterSpanProcessor` does the same for every span of a
``TracerProvider``, measured or not::

    from opentelemetry.sdk.trace import TracerProvider
    from multimeter.otel import MultimeterSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(MultimeterSpanProcessor())

The attribute names and units are :data:`ATTRIBUTES` (see the guide
"OpenTelemetry").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multimeter import _config
from multimeter._log import warn_once
from multimeter._reentry import BUSY
from multimeter._spans import (
    ATTRIBUTES,
    CPU_SYSTEM,
    CPU_USER,
    IO_READ,
    IO_WRITE,
    MEMORY_ADDED,
    MEMORY_PEAK,
    PAGE_FAULTS_MAJOR,
    PAGE_FAULTS_MINOR,
    Around,
)

try:
    from opentelemetry.sdk.trace import SpanProcessor
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "multimeter.otel needs opentelemetry-sdk: pip install 'multimeter[otel]'"
    ) from error

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span

    from multimeter.multimeter import Multimeter

__all__ = [
    "ATTRIBUTES",
    "CPU_SYSTEM",
    "CPU_USER",
    "IO_READ",
    "IO_WRITE",
    "MEMORY_ADDED",
    "MEMORY_PEAK",
    "PAGE_FAULTS_MAJOR",
    "PAGE_FAULTS_MINOR",
    "MultimeterSpanProcessor",
]


class MultimeterSpanProcessor(SpanProcessor):
    """Adds the process's resource figures while a span ran to every recording span.

    At a span's start it reads the probes of the configuration (those a
    ``@measured`` call reads: by default ``getrusage``, about a microsecond),
    and just before the span ends it reads them again and sets the span's
    attributes (:data:`ATTRIBUTES`) from the two readings, as a measured call's
    figures are computed. Every processor and exporter of the provider sees
    them, whatever the order they were added in. Figures a measured call put
    on the span are replaced by the span's own (they cover the whole span).
    The figures are the process's (every thread's CPU time): spans that
    overlap share them.

    It never raises into the traced code and never changes a span otherwise.

    Args:
        multimeter: Whose probes are read; default: the global configuration
            (``multimeter.configure()``) as of each span's start.
    """

    def __init__(self, multimeter: Multimeter | None = None) -> None:
        from multimeter.multimeter import Multimeter

        if multimeter is not None and not isinstance(multimeter, Multimeter):
            raise ValueError(
                "multimeter must be a Multimeter (whose probes give the figures) or None"
                f" (the global configuration), got {multimeter!r}"
            )
        self._multimeter = multimeter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Read the probes and arrange for the figures to be set when ``span`` ends."""
        try:
            if BUSY.busy or not span.is_recording():
                return
            meter = self._multimeter
            snapshot = meter.snapshot if meter is not None else _config.current()
            around = Around(span, snapshot)
            ending = span.end

            def end(end_time: int | None = None) -> None:
                # Set while the span can still take attributes, then ended as it would be.
                try:
                    vars(span).pop("end", None)  # once; and no cycle left behind
                    around.end(add=False)
                finally:
                    ending(end_time)

            span.end = end  # type: ignore[method-assign]
        except Exception as failure:  # noqa: BLE001 - tracing must never break the traced code
            warn_once(
                ("span processor", type(failure)),
                "MultimeterSpanProcessor failed",
                error=repr(failure),
            )

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing: the figures were set just before the span ended."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is held back: ``True``."""
        return True
