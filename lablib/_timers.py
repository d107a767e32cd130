"""The timer task of an asyncio driver (the Engine.IO and Socket.IO servers and clients).

A sans-I/O core keeps its own deadlines (heartbeats, ack timeouts, connect timeouts) and
exposes two calls: ``next_deadline()`` (None: nothing scheduled) and ``tick(now)``.  The
driver runs one task that sleeps until that deadline, or until something wakes it because a
new, earlier deadline appeared, and then ticks the core::

    loop:  deadline = next_deadline()
           sleep until deadline (for ever if None), or until wake()
           tick(clock())           # fires what is due; may fire nothing

Ticking for nothing is harmless (the core only fires what is due), so a deadline that moved
later or went away needs no wake-up: the task ticks, looks again and goes back to sleep.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Awaitable, Callable


class Timers:
    """One driver's timer task: ``await timers.run()`` in a task, ``timers.wake()`` when a
    deadline may have come earlier.

    ``tick(now)`` is the driver's coroutine that ticks its core and carries out the outputs;
    an exception from it is logged (``failure`` on ``logger``) and the task goes on.
    """

    def __init__(self, next_deadline: Callable[[], float | None],
                 tick: Callable[[float], Awaitable[None]], clock: Callable[[], float], *,
                 logger: logging.Logger, failure: str) -> None:
        self._next_deadline = next_deadline
        self._tick = tick
        self._clock = clock
        self._logger = logger
        self._failure = failure
        self._wakeup = asyncio.Event()
        #: The deadline the task sleeps until (inf: none; -inf: awake, it will look again).
        self.sleeping_until = -math.inf

    def wake(self, deadline: float | None = None) -> None:
        """Wake the task: for a new ``deadline`` only if it comes before the one it sleeps
        until; with None, always."""
        if deadline is None or deadline < self.sleeping_until:
            self._wakeup.set()

    async def run(self) -> None:
        """Sleep until the core's next deadline (or a wake-up), then tick; for ever."""
        while True:
            deadline = self._next_deadline()
            self._wakeup.clear()
            delay = None if deadline is None else deadline - self._clock()
            if delay is None or delay > 0:
                self.sleeping_until = math.inf if deadline is None else deadline
                try:
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
            # awake: whatever changes from here on is seen by the next_deadline() above
            self.sleeping_until = -math.inf
            try:
                await self._tick(self._clock())
            except Exception:
                self._logger.exception(self._failure)
