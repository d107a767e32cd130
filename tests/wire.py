"""Raw-socket helpers shared by the tests: a hand-made peer that writes exact bytes.

The tests of the asyncio servers talk to them the way a learner's capture shows them: HTTP/1.1
requests written byte for byte, WebSocket frames masked by hand, answers read exactly (the head up
to the empty line, then ``Content-Length`` bytes of body).  What the tests assert is the bytes, so
the client side must not be the library under test; where a WebSocket client is needed, it is
lablib's *sans-I/O* :class:`~lablib.websocket.connection.Connection` driven by hand over a plain
TCP stream (:class:`RawWebSocket`), so every byte either side wrote can still be read.

Also here: the recorders that turn a client's callbacks into one ordered list of events, and
:class:`RawSocketIO`, an Engine.IO client whose messages are Socket.IO packets written by hand.

Import with ``from tests.wire import Peer, RawWebSocket, masked`` (pyproject.toml puts the
repository root on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import socket
import struct

from lablib.engineio import AsyncClient
from lablib.websocket import (Accepted, BinaryReceived, Connection, WebSocketClosed,
                                         Role, TextReceived)
from lablib.websocket.handshake import ClientHandshake
from tests.aio_support import GUARD_TIMEOUT

#: The example Sec-WebSocket-Key of RFC 6455 §1.3 (its accept value: ``s3pPLMBiTxaQ9kYGzzhZRbK+xOo=``).
KEY = "dGhlIHNhbXBsZSBub25jZQ=="

#: Guard (seconds) on one read of a :class:`Peer`: a hang fails the test, it is never a measurement.
WAIT = 5.0


# --- HTTP/1.1 by hand ---------------------------------------------------------------------------

def request(method: str, target: str, body: bytes = b"", headers=()) -> bytes:
    """The bytes of an HTTP/1.1 request: ``Host: 127.0.0.1``, then ``headers`` in order; a POST
    gets a ``Content-Length`` unless ``headers`` already frame the body."""
    fields = [("Host", "127.0.0.1")] + list(headers)
    if method == "POST" and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in fields):
        fields.append(("Content-Length", str(len(body))))
    head = "".join(f"{k}: {v}\r\n" for k, v in fields)
    return f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


def upgrade_request(target: str = "/", host: str = "127.0.0.1", version: str = "13") -> bytes:
    """A WebSocket upgrade request (RFC 6455 §4.1) with the example key :data:`KEY`."""
    return (f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n\r\n").encode("latin-1")


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of the next HTTP response: the head up to and with the empty line, then
    exactly ``Content-Length`` bytes of body (none without the field)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def status(head: bytes) -> bytes:
    """The status line of a response head (``b"HTTP/1.1 200 OK"``)."""
    return head.split(b"\r\n", 1)[0]


def body_of(answer: bytes) -> bytes:
    """What follows the head of a whole response."""
    return answer.split(b"\r\n\r\n", 1)[1]


async def open_upgraded(port: int, target: str = "/") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open TCP, send :func:`upgrade_request` (``Host: 127.0.0.1:<port>``), check the 101 and
    its ``Sec-WebSocket-Accept``; return the streams, ready for frames."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request(target, host=f"127.0.0.1:{port}"))
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head, head
    return reader, writer


def eio_target(path: str = "/engine.io/", transport: str = "polling", sid: str | None = None,
               eio: str = "4") -> str:
    """An Engine.IO request target: ``/engine.io/?EIO=4&transport=polling[&sid=...]``."""
    return f"{path}?EIO={eio}&transport={transport}" + (f"&sid={sid}" if sid else "")


async def polling_handshake(peer: "Peer", path: str = "/engine.io/") -> str:
    """Open an Engine.IO session over polling on ``peer``; return its sid."""
    head, body = await peer.request("GET", eio_target(path))
    assert status(head) == b"HTTP/1.1 200 OK", head
    assert body.startswith(b'0{"sid":"')
    return json.loads(body[1:])["sid"]


# --- WebSocket frames by hand ------------------------------------------------------------------

def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame (RFC 6455 §5.2) masked with the key 00 00 00 00, so the payload reads as
    is on the wire; the 7-bit, 16-bit or 64-bit length as the payload needs."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        head = bytes([first, 0x80 | len(payload)])
    elif len(payload) < 1 << 16:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", len(payload))
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", len(payload))
    return head + b"\0\0\0\0" + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """An unmasked (server) close frame (§5.5.1) with ``code`` and ``reason``."""
    payload = code.to_bytes(2, "big") + reason
    return bytes([0x88, len(payload)]) + payload


# --- a raw TCP peer -----------------------------------------------------------------------------

class Peer:
    """A raw TCP connection to 127.0.0.1 that records every byte the server sends it.

    Reads are guarded by :data:`WAIT`; a connection reset reads as the end of the stream.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = bytearray()

    @classmethod
    async def open(cls, port: int, rcvbuf: int | None = None) -> "Peer":
        """Connect; with ``rcvbuf``, a socket whose receive buffer (and stream limit) is that
        small, so a server that writes faster than the peer reads meets backpressure early."""
        if rcvbuf is None:
            return cls(*await asyncio.open_connection("127.0.0.1", port))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(*await asyncio.open_connection(sock=sock, limit=rcvbuf))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_request(self, method: str, target: str, body: bytes = b"", headers=()) -> None:
        """Write an HTTP request (:func:`request`) without waiting for its answer."""
        self.send(request(method, target, body, headers))

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end of the stream (or after a reset)."""
        async with asyncio.timeout(WAIT):
            try:
                data = await self.reader.read(n)
            except ConnectionResetError:
                data = b""
        self.received += data
        return data

    async def read_exactly(self, n: int) -> bytes:
        """Exactly the next ``n`` bytes."""
        async with asyncio.timeout(WAIT):
            data = await self.reader.readexactly(n)
        self.received += data
        return data

    async def read_all(self) -> bytes:
        """Everything until the server closes the connection (EOF or reset)."""
        chunks = []
        while data := await self.read():
            chunks.append(data)
        return b"".join(chunks)

    async def closed_by_server(self) -> bool:
        """Whether the server closes the connection without sending anything more."""
        return await self.read_all() == b""

    async def answer(self) -> tuple[bytes, bytes]:
        """(head, body) of the next HTTP response (:func:`read_answer`)."""
        async with asyncio.timeout(WAIT):
            head, body = await read_answer(self.reader)
        self.received += head + body
        return head, body

    async def request(self, method: str, target: str, body: bytes = b"", headers=()) -> tuple[bytes, bytes]:
        """Send a request and read its answer (one keep-alive connection, one at a time)."""
        self.send_request(method, target, body, headers)
        return await self.answer()

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER with a zero timeout)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()


# --- a hand-driven WebSocket client ----------------------------------------------------------------

class RawWebSocket:
    """lablib's ClientHandshake + sans-I/O Connection over a :class:`Peer`: messages come out
    decoded, yet the test can also read the raw bytes (:meth:`raw`) or write any frame
    (``ws.peer.send(masked(...))``).  Masks and the handshake key come from ``Random(seed)``."""

    #: The :class:`Peer` class to connect with (a test module may record its peers).
    peer_type = Peer

    def __init__(self, peer: Peer, conn: Connection) -> None:
        self.peer, self.conn = peer, conn
        self.pending: list = []

    @classmethod
    async def open(cls, port: int, target: str, seed: int = 1, rcvbuf: int | None = None) -> "RawWebSocket":
        """Connect and complete the handshake; frames that came right behind the 101 wait in
        :attr:`pending` (over Engine.IO's direct WebSocket: the open packet)."""
        peer = await cls.peer_type.open(port, rcvbuf)
        handshake = ClientHandshake(f"127.0.0.1:{port}", target, rng=random.Random(seed))
        conn = Connection(Role.CLIENT, handshake=handshake, rng=random.Random(seed))
        peer.send(handshake.request_bytes())
        ws = cls(peer, conn)
        while True:
            data = await peer.read(4096)
            if not data:
                raise ConnectionError("the server refused the WebSocket (or closed)")
            events = conn.receive_data(data)
            if any(isinstance(e, Accepted) for e in events):
                break
        ws.pending = conn.receive_data(b"")
        return ws

    async def raw(self, n: int) -> bytes:
        """Exactly the next ``n`` bytes from the server (fed to the connection, events dropped)."""
        data = await self.peer.read_exactly(n)
        self.conn.receive_data(data)
        return data

    async def message(self) -> str | bytes | WebSocketClosed:
        """The next text or binary message, or the WebSocketClosed event (then TCP is over).
        What the connection owes the server (a pong, the close echo) is written on the way."""
        while True:
            while self.pending:
                event = self.pending.pop(0)
                if isinstance(event, (TextReceived, BinaryReceived)):
                    return event.data
                if isinstance(event, WebSocketClosed):
                    self.peer.send(self.conn.data_to_send())
                    return event
            data = await self.peer.read(65536)
            self.pending = self.conn.receive_eof() if not data else self.conn.receive_data(data)
            if not self.peer.writer.is_closing():
                self.peer.send(self.conn.data_to_send())

    async def closed(self) -> WebSocketClosed:
        """Skip messages until the connection closes; return the WebSocketClosed event."""
        while not isinstance(event := await self.message(), WebSocketClosed):
            pass
        assert await self.peer.read_all() == b""   # and the server closed TCP
        return event

    def send_text(self, text: str) -> None:
        self.peer.send(self.conn.send_text(text))

    def send_binary(self, data: bytes) -> None:
        self.peer.send(self.conn.send_binary(data))


# --- Socket.IO packets by hand over lablib's Engine.IO client --------------------------------------

class RawSocketIO:
    """An Engine.IO client whose messages are raw Socket.IO packets (``0``, ``21["echo","hi"]``):
    the test writes and reads the Socket.IO layer exactly, the Engine.IO layer is lablib's."""

    def __init__(self) -> None:
        self.client = AsyncClient(rng=random.Random(1), close_timeout=0.3)
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.client.on("message", self.inbox.put_nowait)
        self.client.on("disconnect", lambda reason: self.disconnected.set())

    async def open(self, port: int, transport: str = "websocket") -> "RawSocketIO":
        """Connect to ``/socket.io/`` over ``transport`` ("polling", "websocket", or "upgrade":
        polling first, then the upgrade)."""
        transports = ["polling", "websocket"] if transport == "upgrade" else [transport]
        await self.client.connect(f"http://127.0.0.1:{port}", transports=transports,
                                  path="/socket.io/")
        return self

    async def send(self, *messages: str | bytes) -> None:
        for message in messages:
            await self.client.send(message)

    async def recv(self) -> str | bytes:
        return await asyncio.wait_for(self.inbox.get(), GUARD_TIMEOUT)

    async def join(self, namespace: str = "/", auth: dict | None = None) -> str:
        """CONNECT to ``namespace``; return the sid from the server's CONNECT."""
        prefix = "0" if namespace == "/" else f"0{namespace},"
        await self.send(prefix + (json.dumps(auth, separators=(",", ":")) if auth else ""))
        answer = await self.recv()
        assert answer.startswith(prefix + "{")
        return json.loads(answer[len(prefix):])["sid"]

    async def close(self) -> None:
        await self.client.disconnect()


# --- recorders: a client's callbacks as one ordered list ------------------------------------------

def eio_recorder(client) -> list:
    """Record an Engine.IO client's events: ``"connect"``, each message, ``("disconnect", reason)``."""
    events: list = []
    client.on("connect", lambda: events.append("connect"))
    client.on("message", lambda data: events.append(data))
    client.on("disconnect", lambda reason: events.append(("disconnect", reason)))
    return events


def sio_recorder(client, namespace: str = "/", manager: bool = True, also: tuple[str, ...] = ()) -> list:
    """Record a Socket.IO client's events in ``namespace`` (connect, disconnect, connect_error,
    and each event named in ``also`` as ``(name, args)``) and, with ``manager``, the
    connection's reconnection events, in one list."""
    events: list = []
    client.on("connect", lambda: events.append("connect"), namespace=namespace)
    client.on("disconnect", lambda reason: events.append(("disconnect", reason)), namespace=namespace)
    client.on("connect_error", lambda data: events.append(("connect_error", data)), namespace=namespace)
    for name in also:
        client.on(name, functools.partial(lambda name, *args: events.append((name, args)), name),
                  namespace=namespace)
    if not manager:
        return events
    for name in ("reconnect_attempt", "reconnect", "reconnect_error"):
        client.on(name, functools.partial(lambda name, arg: events.append((name, arg)), name))
    client.on("reconnect_failed", lambda: events.append("reconnect_failed"))
    return events


def names(events: list) -> list[str]:
    """The event names of a recorder's list."""
    return [e if isinstance(e, str) else e[0] for e in events]
