"""What every layer shares: the parsers' ``NEED_DATA`` sentinel, and session ids.

One object for every incremental parser (HTTP, WebSocket frames, MQTT packets, RESP values),
so ``result is NEED_DATA`` holds whichever module it was imported from (h11's sentinel idea:
a name that says what it means, where ``None`` would say nothing).
"""

from __future__ import annotations

import base64
import random
import secrets

__all__ = ["NEED_DATA", "NeedData", "generate_sid"]


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
