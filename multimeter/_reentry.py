"""Which threads are running multimeter's own code (their calls are not measured).

Measured code that a storage, a probe or a log processor calls would otherwise
feed itself: every result it stores would make another result.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class _Busy(threading.local):
    busy = False


#: ``BUSY.busy`` is true on multimeter's own threads (sampler, writer) and, on a
#: user's thread, while multimeter reads the probes there.
BUSY = _Busy()


@contextlib.contextmanager
def measuring_off() -> Iterator[None]:
    """Measure no call on this thread meanwhile (probe code, storage code it runs)."""
    was_busy = BUSY.busy
    BUSY.busy = True
    try:
        yield
    finally:
        BUSY.busy = was_busy


def own_thread() -> None:
    """Mark the calling thread as multimeter's own for its whole life.

    It also blocks SIGTERM in this thread, so the kernel hands the signal to a
    thread of the application (the main thread, where Python runs handlers)
    and never wakes only one of ours while the main thread sleeps in a lock.
    """
    BUSY.busy = True
    block = getattr(signal, "pthread_sigmask", None)
    if block is not None:
        with contextlib.suppress(OSError, ValueError):
            block(signal.SIG_BLOCK, {signal.SIGTERM})
