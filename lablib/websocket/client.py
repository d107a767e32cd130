"""asyncio WebSocket client: ``async with connect("ws://127.0.0.1:8765/") as ws: ...``.

A thin driver: it opens TCP with a :class:`ClientConnection` (an asyncio protocol, see
:mod:`.aio`) on it, sends the request of a :class:`~lablib.websocket.handshake.ClientHandshake`,
and waits until the sans-I/O :class:`~lablib.websocket.connection.Connection` has checked the
server's answer: ``Accepted`` (the connection is open) or ``Rejected`` (raised as
:class:`~lablib.errors.HandshakeError`).
"""

from __future__ import annotations

import asyncio
import random
from typing import Sequence
from urllib.parse import urlsplit

from ..http import Response
from .aio import WebSocket
from .connection import Connection, Role
from .events import Accepted, Rejected
from .deflate import DeflateOptions, compression_options
from .handshake import ClientHandshake

__all__ = ["connect", "ClientConnection"]


class ClientConnection(WebSocket):
    """The client's side of an open connection; ``response`` is the server's 101."""

    request_headers: list[tuple[str, str]]
    response: Response


def parse_uri(uri: str) -> tuple[str, int, str]:
    """``ws://host:port/path?query`` -> (host, port, target).  Only ``ws://`` (no TLS here)."""
    parts = urlsplit(uri)
    if parts.scheme != "ws":
        raise ValueError(f"unsupported URI scheme {parts.scheme!r}: lablib speaks ws:// only")
    if not parts.hostname:
        raise ValueError(f"no host in {uri!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, target


class connect:
    """Open a WebSocket connection; ``await connect(...)`` or ``async with connect(...) as ws``.

    ``max_size`` bounds one received message (1 MiB by default, like ``websockets``), before
    and after inflating; ``rng`` (a seeded ``random.Random``) makes the key and masking keys
    reproducible.

    ``compression``: ``None`` (the default) offers no compression; ``"deflate"`` offers
    permessage-deflate (RFC 7692) with ``websockets``' client settings
    (``permessage-deflate; client_max_window_bits``, zlib ``memLevel=5``), a
    :class:`~lablib.websocket.deflate.DeflateOptions` chooses every parameter.  ``websockets``'
    client (and Node's ``ws`` client, and browsers) offer it by default; lablib's does not, so
    that every frame of the lab stays readable on the wire and a chapter's byte counts do not
    depend on the server; ask for it where compression is the subject.
    """

    def __init__(self, uri: str, *, subprotocols: Sequence[str] | None = None,
                 origin: str | None = None,
                 additional_headers: Sequence[tuple[str, str]] | None = None,
                 max_size: int | None = 1 << 20, max_queue: int = 16,
                 ping_interval: float | None = 20, ping_timeout: float | None = 20,
                 close_timeout: float = 10, open_timeout: float | None = 10,
                 compression: str | DeflateOptions | None = None,
                 rng: random.Random | None = None) -> None:
        self.uri = uri
        self.compression = compression_options(compression, client=True)
        self.host, self.port, self.target = parse_uri(uri)
        self.subprotocols = list(subprotocols or [])
        self.origin = origin
        self.additional_headers = list(additional_headers or [])
        self.max_size = max_size
        self.options = dict(max_queue=max_queue, ping_interval=ping_interval,
                            ping_timeout=ping_timeout, close_timeout=close_timeout)
        self.open_timeout = open_timeout
        self.rng = rng
        self._ws: ClientConnection | None = None

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info) -> None:
        assert self._ws is not None
        await self._ws.close()

    async def _open(self) -> ClientConnection:
        return await asyncio.wait_for(self._handshake(), self.open_timeout)

    async def _handshake(self) -> ClientConnection:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal (RFC 3986)
        handshake = ClientHandshake(host=host if self.port == 80 else f"{host}:{self.port}",
                                    path=self.target, subprotocols=self.subprotocols,
                                    origin=self.origin, extra_headers=self.additional_headers,
                                    rng=self.rng, compression=self.compression)
        conn = Connection(Role.CLIENT, handshake=handshake, max_message_size=self.max_size,
                          rng=self.rng)
        loop = asyncio.get_running_loop()
        transport, ws = await loop.create_connection(
            lambda: ClientConnection(conn, rng=self.rng, **self.options), self.host, self.port)
        try:
            transport.write(handshake.request_bytes())
            # data_received() feeds the answer to the connection; the outcome lands here.
            outcome = await ws.handshake_done
        except BaseException:
            transport.abort()
            raise
        if isinstance(outcome, Rejected):
            transport.abort()
            raise outcome.error
        assert isinstance(outcome, Accepted)
        ws.request_headers = handshake.request_headers()
        ws.response = outcome.response
        return ws
