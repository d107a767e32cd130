"""What every layer shares: the parsers' ``NEED_DATA`` sentinel, session ids, and the
:class:`Changes` the asyncio clients wait on.

One object for every incremental parser (HTTP, WebSocket frames, MQTT packets, RESP values),
so ``result is NEED_DATA`` holds whichever module it was imported from (h11's sentinel idea:
a name that says what it means, where ``None`` would say nothing).
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
from typing import Callable

__all__ = ["NEED_DATA", "NeedData", "generate_sid", "Changes"]


class NeedData:
    """The type of :data:`NEED_DATA`: "the parser needs more bytes"."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


def generate_sid(rng: random.Random | None = None) -> str:
    """20 characters of URL-safe base64 from 15 random bytes, like the reference's base64id
    (Engine.IO session ids, and Socket.IO's per-namespace ids).

    A sid is a bearer token (whoever knows it can poll the session), so by default its bytes
    come from the operating system's CSPRNG (:func:`secrets.token_urlsafe`).  A seeded
    ``rng`` gives reproducible sids, for notebooks and tests only.
    """
    if rng is None:
        return secrets.token_urlsafe(15)
    return base64.urlsafe_b64encode(rng.randbytes(15)).decode("ascii")


class Changes:
    """What an asyncio driver's tasks wait on: ``pulse()`` after anything changes, and
    ``await until(condition, timeout)`` to wait until ``condition()`` holds (checked again at
    each pulse); it returns False on timeout.

    (``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` can swallow a
    cancellation that arrives just as the awaited thing completes.)
    """

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def pulse(self) -> None:
        """Wake every task waiting in :meth:`until`, so that it checks its condition again."""
        self._changed.set()
        self._changed.clear()

    async def until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._changed.wait()
            return True
        except TimeoutError:
            return False
