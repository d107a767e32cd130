"""The client's reconnection delays: socket.io-client's exponential backoff with jitter.

socket.io-client's ``Manager`` waits ``backoff.duration()`` milliseconds before each reconnection
attempt, with ``min = reconnectionDelay`` (1000), ``max = reconnectionDelayMax`` (5000),
``jitter = randomizationFactor`` (0.5) and ``factor`` 2 (the backo2 component,
``contrib/backo2.ts``).  For attempt number ``n`` (0 for the first) and one uniform random
number ``rand`` in [0, 1)::

    ms        = min * factor ** n
    deviation = floor(rand * jitter * ms)
    ms        = ms - deviation   if floor(rand * 10) is even
                ms + deviation   if floor(rand * 10) is odd
    delay     = min(ms, max), truncated to an integer

So with the defaults the first delay is 1000 ms +- up to 500, the second 2000 +- 1000, the third
4000 +- 2000 (capped at 5000), and from the fourth on ``8000 +- 4000`` capped at 5000: between
4000 and 5000 ms.  The same ``rand`` picks both the size and the sign of the deviation (its
first decimal digit's parity), so the sign is not independent of the size.  ``attempts``
counts delays handed out since the last :meth:`Backoff.reset` (a successful reconnection or a
new outage).

python-socketio's client does something else (``_handle_reconnect``): seconds, the cap applied
*before* the jitter, and an absolute jitter ``+- randomization_factor`` seconds, so its delays
run from 0.5 s to 5.5 s.
"""

from __future__ import annotations

import math
import random

__all__ = ["Backoff", "backoff_delay"]


def backoff_delay(attempt: int, rand: float, *, min_ms: int = 1000, max_ms: int = 5000,
                  factor: int = 2, jitter: float = 0.5) -> int:
    """The delay in milliseconds before reconnection attempt ``attempt`` (0-based).

    ``rand`` is the uniform random number in [0, 1) the reference draws with ``Math.random()``.
    Exact for every attempt: once ``min_ms * factor ** attempt`` is ten times ``max_ms`` the
    result is ``max_ms`` whatever ``rand`` (the deviation is at most 0.9 of it when it is
    subtracted), so the power stops growing there and stays finite.
    """
    ms: float = min_ms
    for _ in range(attempt):
        if ms >= 10 * max_ms:
            break
        ms *= factor
    if jitter:
        deviation = math.floor(rand * jitter * ms)
        ms = ms - deviation if math.floor(rand * 10) % 2 == 0 else ms + deviation
    return int(min(ms, max_ms))


class Backoff:
    """The stateful form, as the reference's component: :meth:`duration` then :meth:`reset`.

    ``rng`` supplies the random numbers (``rng.random()``): pass ``random.Random(seed)`` for
    reproducible delays.
    """

    def __init__(self, *, min_ms: int = 1000, max_ms: int = 5000, factor: int = 2,
                 jitter: float = 0.5, rng: random.Random | None = None) -> None:
        if min_ms <= 0 or max_ms < min_ms:
            raise ValueError("need 0 < min_ms <= max_ms")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter (randomizationFactor) must be between 0 and 1")
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.factor = factor
        self.jitter = jitter
        self.rng = rng if rng is not None else random.Random()
        self.attempts = 0

    def duration(self) -> int:
        """The next delay in milliseconds; counts one more attempt."""
        rand = self.rng.random() if self.jitter else 0.0
        delay = backoff_delay(self.attempts, rand, min_ms=self.min_ms, max_ms=self.max_ms,
                              factor=self.factor, jitter=self.jitter)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from the first delay."""
        self.attempts = 0

    def __repr__(self) -> str:
        return (f"Backoff(min_ms={self.min_ms}, max_ms={self.max_ms}, factor={self.factor}, "
                f"jitter={self.jitter}, attempts={self.attempts})")
