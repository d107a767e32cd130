"""RFC 6455 §4 — the opening handshake.

The client sends an HTTP/1.1 GET with ``Upgrade: websocket``, ``Connection: Upgrade``, a fresh
``Sec-WebSocket-Key`` (16 random bytes, base64) and ``Sec-WebSocket-Version: 13`` (§4.1).  The
server proves it understood by answering ``101 Switching Protocols`` with
``Sec-WebSocket-Accept = base64(SHA-1(key + GUID))`` (§4.2.2).  From then on, the TCP connection
carries frames.

Extensions (§9) are negotiated in the same exchange: the client offers them in
``Sec-WebSocket-Extensions``, the server answers with those it accepts.  The one lablib speaks
is permessage-deflate (RFC 7692, :mod:`.deflate`), when a ``compression`` option asks for it;
the agreed parameters are then in the handshake's ``deflate`` attribute.

:class:`ClientHandshake` and :class:`ServerHandshake` are sans-I/O: they produce and consume bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import HandshakeError
from ..http import (NEED_DATA, Request, RequestParser, Response, ResponseParser,
                    error_response, format_request, format_response)
from .deflate import DeflateOptions, DeflateParameters

__all__ = [
    "GUID", "accept_key", "generate_key", "ClientHandshake", "ServerHandshake",
    "validate_request", "validate_response", "NEED_DATA",
]

#: §1.3: the globally unique identifier concatenated to the key before hashing.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """§4.2.2 step 5.4: ``base64(SHA-1(Sec-WebSocket-Key + GUID))``.

    >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key(rng: random.Random | None = None) -> str:
    """§4.1: a nonce of 16 random bytes, base64-encoded (24 characters).

    Pass a seeded ``random.Random`` for reproducible notebook output; the default draws from
    the operating system.
    """
    source = rng if rng is not None else random.SystemRandom()
    return base64.b64encode(source.randbytes(16)).decode("ascii")


def _is_valid_key(key: str | None) -> bool:
    if key is None:
        return False
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


# --- server side ----------------------------------------------------------------------------

def validate_request(request: Request, *, origins: Sequence[str | None] | None = None) -> str:
    """Check a client's opening handshake (§4.2.1) and return its ``Sec-WebSocket-Key``.

    Each failure raises :class:`HandshakeError` carrying the status and headers to answer with.
    ``origins`` is an optional allow-list for the ``Origin`` header (``None`` in the list allows
    requests without one, e.g. from non-browser clients); a refused origin gets 403.
    """
    headers = request.headers
    if request.method != "GET":
        raise HandshakeError(405, f"method {request.method} not allowed: the handshake is a GET",
                             [("Allow", "GET")])
    if request.http_version != "1.1":
        raise HandshakeError(400, f"HTTP/{request.http_version} request: the handshake needs HTTP/1.1")
    if "host" not in headers:
        raise HandshakeError(400, "missing Host header")
    upgrade_headers = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if "websocket" not in headers.tokens("Upgrade"):
        raise HandshakeError(426, "missing 'Upgrade: websocket' header: this is a WebSocket endpoint",
                             upgrade_headers)
    if "upgrade" not in headers.tokens("Connection"):
        raise HandshakeError(426, "the Connection header must contain the 'upgrade' token",
                             upgrade_headers)
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        found = ", ".join(versions) or "none"
        raise HandshakeError(426, f"unsupported Sec-WebSocket-Version ({found}); this server speaks 13",
                             [("Sec-WebSocket-Version", "13")])
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1 or not _is_valid_key(keys[0]):
        raise HandshakeError(400, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes")
    if origins is not None:
        origin = headers.get("Origin")
        if origin not in origins:
            raise HandshakeError(403, f"origin {origin!r} is not allowed")
    return keys[0].strip()


def choose_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """§4.2.2 step 5.5: the server picks one of the client's subprotocols, or none.

    We pick the first of the server's own list that the client offered: the server decides.
    """
    for name in supported:
        if name in offered:
            return name
    return None


class ServerHandshake:
    """Sans-I/O server handshake: feed bytes until a :class:`Request`, then accept or reject.

    >>> hs = ServerHandshake()
    >>> req = hs.receive_data(b"GET /chat HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
    ...     b"Connection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
    ...     b"Sec-WebSocket-Version: 13\\r\\n\\r\\n")
    >>> hs.accept().split(b"\\r\\n")[3]
    b'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """

    def __init__(self, *, subprotocols: Sequence[str] = (), origins: Sequence[str | None] | None = None,
                 max_request_size: int = 16 * 1024,
                 compression: DeflateOptions | None = None) -> None:
        self.subprotocols = list(subprotocols)
        self.origins = origins
        self.compression = compression  #: permessage-deflate settings; None: decline any offer
        self._parser = RequestParser(max_header_size=max_request_size, max_body_size=0)
        self.request: Request | None = None
        self.key: str | None = None
        self.subprotocol: str | None = None
        self.deflate: DeflateParameters | None = None  #: what our answer agrees, if anything
        self._extensions_answer: str | None = None

    def receive_data(self, data: bytes) -> Request | object:
        """Return the validated request, or ``NEED_DATA``; raise :class:`HandshakeError`."""
        result = self._parser.receive_data(data)
        if result is NEED_DATA:
            return NEED_DATA
        return self.receive_request(result)

    def receive_request(self, request: Request) -> Request:
        """Validate a request parsed elsewhere (by a server that also answers plain HTTP, such
        as Engine.IO's) and return it; raise :class:`HandshakeError`."""
        self.request = request
        self.key = validate_request(request, origins=self.origins)
        self.subprotocol = choose_subprotocol(self.offered_subprotocols, self.subprotocols)
        self._negotiate_extensions(request)
        return request

    def _negotiate_extensions(self, request: Request) -> None:
        """§9.1: answer the offers we can accept (permessage-deflate, if configured)."""
        offers = request.headers.get_all("Sec-WebSocket-Extensions")
        if self.compression is None or not offers:
            return
        accepted = self.compression.accept_offer(offers)
        if accepted is not None:
            self._extensions_answer, self.deflate = accepted

    @property
    def offered_subprotocols(self) -> list[str]:
        if self.request is None:
            return []
        return [t.strip() for v in self.request.headers.get_all("Sec-WebSocket-Protocol")
                for t in v.split(",") if t.strip()]

    @property
    def origin(self) -> str | None:
        return self.request.headers.get("Origin") if self.request else None

    @property
    def trailing_data(self) -> bytes:
        """Bytes the client sent after its request (already frames)."""
        return self._parser.trailing_data

    def accept(self, extra_headers: Iterable[tuple[str, str]] = ()) -> bytes:
        """The 101 response (§4.2.2 step 5)."""
        if self.key is None:
            raise HandshakeError(500, "accept() before a valid request was received")
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Accept", accept_key(self.key))]
        if self.subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", self.subprotocol))
        if self._extensions_answer is not None:
            headers.append(("Sec-WebSocket-Extensions", self._extensions_answer))
        return format_response(101, headers + list(extra_headers))

    @staticmethod
    def reject(error: HandshakeError) -> bytes:
        """The HTTP error answer for a failed handshake: status, headers and a text reason."""
        return error_response(error.status or 400, error.reason, error.headers)


# --- client side ----------------------------------------------------------------------------

def validate_response(response: Response, key: str, offered_subprotocols: Sequence[str] = (),
                      offered_extensions: bool = False) -> str | None:
    """Check the server's answer (§4.1, "the client MUST validate") and return the subprotocol.

    The ``Sec-WebSocket-Extensions`` answer is checked here only when we offered none
    (``offered_extensions=False``): then any is an error.  Otherwise the offer's owner checks
    it (:meth:`.deflate.DeflateOptions.accept_response`).
    """
    if response.status != 101:
        body = response.body.decode("utf-8", "replace").strip()
        raise HandshakeError(response.status, f"server rejected the WebSocket handshake: "
                             f"{response.status} {response.reason}" + (f" ({body})" if body else ""))
    headers = response.headers
    if "websocket" not in headers.tokens("Upgrade"):
        raise HandshakeError(response.status, "101 response without 'Upgrade: websocket'")
    if "upgrade" not in headers.tokens("Connection"):
        raise HandshakeError(response.status, "101 response without 'Connection: Upgrade'")
    if headers.get("Sec-WebSocket-Accept") != accept_key(key):
        raise HandshakeError(response.status, "Sec-WebSocket-Accept does not match our key")
    if headers.get_all("Sec-WebSocket-Extensions") and not offered_extensions:
        raise HandshakeError(response.status, "server selected an extension we did not offer")
    protocols = headers.get_all("Sec-WebSocket-Protocol")
    if not protocols:
        return None
    if len(protocols) > 1 or protocols[0] not in offered_subprotocols:
        raise HandshakeError(response.status, f"server selected subprotocol {protocols!r} we did not offer")
    return protocols[0]


@dataclass
class ClientHandshake:
    """Sans-I/O client handshake: :meth:`request_bytes`, then feed the answer to :meth:`receive_data`.

    ``host`` is the Host header value (``"127.0.0.1:8765"``), ``path`` the request target;
    ``compression`` (a :class:`~lablib.websocket.deflate.DeflateOptions`) offers
    permessage-deflate, and ``deflate`` holds what the server agreed (None: no compression).
    """

    host: str
    path: str = "/"
    subprotocols: Sequence[str] = ()
    origin: str | None = None
    extra_headers: Sequence[tuple[str, str]] = ()
    rng: random.Random | None = None
    key: str = ""
    compression: DeflateOptions | None = None

    def __post_init__(self) -> None:
        if not self.key:
            self.key = generate_key(self.rng)
        self.subprotocol: str | None = None
        self.deflate: DeflateParameters | None = None
        self.response: Response | None = None
        self._parser = ResponseParser(method="GET", target=self.path,
                                      headers=[("Host", self.host), ("Connection", "Upgrade"),
                                               ("Upgrade", "websocket")])

    def request_headers(self) -> list[tuple[str, str]]:
        headers = [("Host", self.host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", "13")]
        if self.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
        if self.origin is not None:
            headers.append(("Origin", self.origin))
        if self.compression is not None:
            headers.append(("Sec-WebSocket-Extensions", self.compression.offer()))
        return headers + list(self.extra_headers)

    def request_bytes(self) -> bytes:
        return format_request("GET", self.path, self.request_headers())

    def receive_data(self, data: bytes) -> Response | object:
        """Return the validated 101 :class:`Response` or ``NEED_DATA``; raise HandshakeError."""
        result = self._parser.receive_data(data)
        if result is NEED_DATA:
            if not data:
                raise HandshakeError(0, "connection closed during the opening handshake")
            return NEED_DATA
        self.response = result
        self.subprotocol = validate_response(result, self.key, self.subprotocols,
                                             offered_extensions=self.compression is not None)
        if self.compression is not None:
            self.deflate = self.compression.accept_response(
                result.headers.get_all("Sec-WebSocket-Extensions"))
        return result

    @property
    def trailing_data(self) -> bytes:
        """Bytes the server sent after its 101 (already frames)."""
        return self._parser.trailing_data
