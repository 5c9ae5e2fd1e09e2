"""The thread that runs a sampler's ticks when they are due: scheduling only.

What is due, and what a tick does, is the sampler's business: the ticker asks
its ``plan(now)`` (under the sampler's lock) when to wake next, sleeps until
then or until it is rung (a new, earlier deadline), and calls ``run(now)``.
A late wake-up runs the tick at once; a plan of ``None`` ends the thread.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from multimeter._clock import Clock
from multimeter._log import warn_once
from multimeter._reentry import OwnThread

#: ``plan(now)`` answers (when to wake, whether that is a tick), or ``None``: stop.
Plan = Callable[[float], "tuple[float, bool] | None"]


class Ticker:
    """Wakes on a sampler's deadlines and runs its due ticks, in a daemon thread.

    Args:
        lock: The sampler's lock; ``plan`` is called, and the thread started,
            under it.
        clock: The monotonic clock.
        plan: When to wake next (see :data:`Plan`).
        run: Runs the ticks due at ``now``.
        name: The thread's name.
    """

    def __init__(
        self,
        lock: AbstractContextManager[Any],
        clock: Clock,
        plan: Plan,
        run: Callable[[float], object],
        *,
        name: str = "multimeter-sampler",
    ) -> None:
        self._lock = lock
        self._clock = clock
        self._plan = plan
        self._run = run
        self._name = name
        self._bell = threading.Lock()  # held while nobody rings; released to wake the thread
        self._bell.acquire()
        #: The tick the thread sleeps towards (``inf`` while it only lingers).
        self.sleeping_until = math.inf
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self.thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread (the sampler's lock is held, and none runs)."""
        thread = OwnThread(self._loop, self._name)
        self.thread = thread
        thread.start()

    def ring(self) -> None:
        """Wake the thread: it asks for its plan again."""
        with contextlib.suppress(RuntimeError):  # already rung
            self._bell.release()

    def _loop(self) -> None:
        me = threading.current_thread()
        clock = self._clock
        bell = self._bell
        while True:
            with self._lock:
                if self.thread is not me:
                    return
                now = clock.monotonic()
                plan = self._plan(now)
                if plan is None:
                    self.thread = None
                    return
                when, tick = plan
                self.sleeping_until = when if tick else math.inf
                wait = when - now
            if wait > 0:
                if bell.acquire(True, wait):
                    continue  # rung: a new deadline may be earlier
                now = clock.monotonic()
                if now < self.sleeping_until:
                    continue  # woke early, or only lingered
            try:
                self._run(now)
            except Exception as error:  # noqa: BLE001 - the sampler must survive anything
                warn_once(("sampler", type(error)), "sampler tick failed", error=repr(error))
