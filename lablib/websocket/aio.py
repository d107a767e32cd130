"""The asyncio driver shared by :mod:`.client` and :mod:`.server`.

It holds no protocol logic: it reads from a ``StreamReader``, feeds the sans-I/O
:class:`~lablib.websocket.connection.Connection`, writes what the connection returns, and runs
the timers (keepalive pings, close timeout) that a sans-I/O core cannot run itself.

Backpressure: at most ``max_queue`` received messages wait for :meth:`WebSocket.recv`; when the
queue is full the reader stops reading, so TCP's own flow control slows the peer down and memory
stays bounded (``max_queue`` × ``max_size``).  Every send awaits ``drain()``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from typing import Any, AsyncIterable, AsyncIterator, Iterable

from ..errors import ConnectionClosed as ConnectionClosedError
from ..errors import LocalProtocolError
from .connection import (BinaryMessage, CloseReceived, Connection, ConnectionClosed, Ping, Pong,
                         Role, State, TextMessage)
from .frames import CloseCode

logger = logging.getLogger("lablib.websocket")

__all__ = ["WebSocket"]

Data = str | bytes


class WebSocket:
    """An open WebSocket over asyncio streams, in the shape of the ``websockets`` API.

    ``await ws.send(msg)``, ``await ws.recv()``, ``async for msg in ws``, ``await ws.ping()``,
    ``await ws.close(code, reason)``.
    """

    def __init__(self, connection: Connection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, ping_interval: float | None = 20,
                 ping_timeout: float | None = 20, close_timeout: float = 10, max_queue: int = 16,
                 rng: random.Random | None = None) -> None:
        self.connection = connection
        self._reader = reader
        self._writer = writer
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self._rng = rng if rng is not None else random.SystemRandom()
        self._messages: collections.deque[Data] = collections.deque()
        self._message_waiter: asyncio.Future[None] | None = None  # recv() waiting for a message
        self._space_waiter: asyncio.Future[None] | None = None    # reader waiting for queue space
        self._pong_waiters: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._send_lock = asyncio.Lock()
        self._closed = asyncio.get_running_loop().create_future()  # set when TCP is closed
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.latency: float = 0.0  #: the last keepalive round trip, in seconds
        self._reader_task = asyncio.create_task(self._read_loop())
        self._keepalive_task = asyncio.create_task(self._keepalive()) if ping_interval else None

    # ---- public API --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.connection.state

    @property
    def subprotocol(self) -> str | None:
        return self.connection.subprotocol

    @property
    def local_address(self) -> Any:
        return self._writer.get_extra_info("sockname")

    @property
    def remote_address(self) -> Any:
        return self._writer.get_extra_info("peername")

    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~lablib.errors.ConnectionClosed` once the connection is closed and every
        message received before the close has been returned.
        """
        while not self._messages:
            if self._closed.done():
                raise self._closed_error()
            # One waiter shared by every recv() waiting now: a message wakes them all and one
            # of them takes it; the others wait again on a fresh waiter.
            if self._message_waiter is None or self._message_waiter.done():
                self._message_waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._message_waiter, self._closed],
                               return_when=asyncio.FIRST_COMPLETED)
        message = self._messages.popleft()
        if self._space_waiter is not None and not self._space_waiter.done():
            self._space_waiter.set_result(None)
        return message

    async def __aiter__(self) -> AsyncIterator[Data]:
        """Yield messages until the connection closes; a clean close ends the loop quietly."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedError as exc:
                if exc.ok or exc.code == CloseCode.NO_STATUS_RCVD:
                    return
                raise

    async def send(self, message: Data | Iterable[Data] | AsyncIterable[Data]) -> None:
        """Send a text (``str``) or binary (bytes-like) message.

        An iterable (or async iterable) of ``str`` or of bytes sends one fragmented message:
        one frame per item, the last with ``fin=1`` (§5.4).
        """
        async with self._send_lock:
            if isinstance(message, str):
                await self._write(lambda: self.connection.send_text(message))
            elif isinstance(message, (bytes, bytearray, memoryview)):
                await self._write(lambda: self.connection.send_binary(bytes(message)))
            elif isinstance(message, AsyncIterable):
                await self._send_fragments([item async for item in message])
            elif isinstance(message, Iterable):
                await self._send_fragments(list(message))
            else:
                raise TypeError(f"cannot send {type(message).__name__}")

    async def _send_fragments(self, parts: list[Data]) -> None:
        if not parts:
            raise TypeError("a fragmented message needs at least one fragment")
        is_text = isinstance(parts[0], str)
        if any(isinstance(p, str) != is_text for p in parts):
            raise TypeError("all fragments of a message must be str, or all bytes")
        first = self.connection.send_text if is_text else self.connection.send_binary
        last = len(parts) - 1
        await self._write(lambda: first(parts[0], fin=(last == 0)))
        for i, part in enumerate(parts[1:], start=1):
            await self._write(lambda: self.connection.send_continuation(part, fin=(i == last)))

    async def ping(self, data: bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; return a future that resolves to the round-trip time when the pong comes."""
        waiter = asyncio.get_running_loop().create_future()
        async with self._send_lock:
            if data is None:
                data = self._rng.randbytes(4)
                while data in self._pong_waiters:
                    data = self._rng.randbytes(4)
            if data in self._pong_waiters:
                raise LocalProtocolError("a ping with this payload is already waiting for its pong")
            # Wait for the pong *before* the ping leaves: while drain() waits, the pong may
            # already be back, and must not be mistaken for an unsolicited one.
            self._pong_waiters[data] = (waiter, time.monotonic())
            try:
                await self._write(lambda: self.connection.send_ping(data))
            except BaseException:
                self._pong_waiters.pop(data, None)
                raise
        return waiter

    async def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, §5.5.3)."""
        async with self._send_lock:
            await self._write(lambda: self.connection.send_pong(data))

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (§7.1.2) and wait until TCP is closed.

        If the peer does not answer within ``close_timeout`` seconds, the TCP connection is
        closed anyway.
        """
        if self.connection.state is State.OPEN:
            try:
                async with self._send_lock:
                    await self._write(lambda: self.connection.send_close(code, reason))
            except ConnectionClosedError:
                pass
            # A reader blocked on a full queue must go on, to see the peer's close frame.
            if self._space_waiter is not None and not self._space_waiter.done():
                self._space_waiter.set_result(None)
        elif self.connection.state is State.CONNECTING:
            self._abort()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), self.close_timeout)
        except asyncio.TimeoutError:
            self._abort()
            await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self._closed)

    # ---- internals ---------------------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosedError:
        code = self.close_code if self.close_code is not None else CloseCode.ABNORMAL_CLOSURE
        return ConnectionClosedError(code, self.close_reason)

    async def _write(self, make_frame) -> None:
        if self.connection.state is not State.OPEN and self._closed.done():
            raise self._closed_error()
        try:
            data = make_frame()
        except LocalProtocolError:
            if self.connection.state is not State.OPEN:
                raise self._closed_error() from None
            raise
        self._writer.write(data)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            raise self._closed_error() from None

    def _flush_automatic(self) -> None:
        data = self.connection.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self) -> None:
        conn = self.connection
        try:
            events = conn.receive_data(b"")  # frames that arrived with the handshake
            while True:
                await self._handle(events)
                self._flush_automatic()
                if conn.state is State.CLOSED:
                    break
                try:
                    data = await self._reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                events = conn.receive_data(data) if data else conn.receive_eof()
            await self._finish_tcp()
        except asyncio.CancelledError:
            self._abort()
            raise
        except Exception:  # a bug of ours must not leave the peer hanging
            logger.exception("unexpected error in the WebSocket reader")
            self._abort()
        finally:
            self._set_closed()

    async def _handle(self, events) -> None:
        for event in events:
            if isinstance(event, (TextMessage, BinaryMessage)):
                await self._enqueue(event.data)
            elif isinstance(event, Pong):
                self._pong_received(event.payload)
            elif isinstance(event, CloseReceived):
                self.close_code, self.close_reason = event.code, event.reason
            elif isinstance(event, ConnectionClosed):
                if self.close_code is None or event.error is not None:
                    self.close_code, self.close_reason = event.code, event.reason
                if event.error is not None:
                    logger.info("failing the connection: %s", event.error)

    async def _enqueue(self, data: Data) -> None:
        while len(self._messages) >= self.max_queue:
            if self.connection.state is not State.OPEN or self._writer.is_closing():
                return  # we are closing: the application has said it wants nothing more
            self._space_waiter = asyncio.get_running_loop().create_future()
            await self._space_waiter
        self._messages.append(data)
        if self._message_waiter is not None and not self._message_waiter.done():
            self._message_waiter.set_result(None)

    def _pong_received(self, payload: bytes) -> None:
        if payload not in self._pong_waiters:
            return  # unsolicited pong: a heartbeat, nothing to resolve
        # A pong acknowledges its ping and every ping sent before it (they are answered in order).
        now = time.monotonic()
        for key in list(self._pong_waiters):
            waiter, sent_at = self._pong_waiters.pop(key)
            if not waiter.done():
                waiter.set_result(now - sent_at)
            if key == payload:
                self.latency = now - sent_at
                break

    async def _finish_tcp(self) -> None:
        """§7.1.1: the server closes TCP first; the client waits for it, then gives up."""
        if self.connection.role is Role.CLIENT and not self._reader.at_eof():
            try:
                await asyncio.wait_for(self._drain_until_eof(), self.close_timeout)
            except asyncio.TimeoutError:
                pass
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), self.close_timeout)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            self._abort()

    async def _drain_until_eof(self) -> None:
        while await self._reader.read(65536):
            pass

    def _abort(self) -> None:
        self._writer.transport.abort()
        # A reader blocked on a full queue would never see the end of the stream: wake it.
        if self._space_waiter is not None and not self._space_waiter.done():
            self._space_waiter.set_result(None)

    def _set_closed(self) -> None:
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        if not self._closed.done():
            self._closed.set_result(None)
        for waiter, _ in self._pong_waiters.values():
            if not waiter.done():
                waiter.set_exception(self._closed_error())
                waiter.exception()  # mark retrieved: nobody may be awaiting it
        self._pong_waiters.clear()
        if self._message_waiter is not None and not self._message_waiter.done():
            self._message_waiter.set_result(None)
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()

    async def _keepalive(self) -> None:
        """Ping every ``ping_interval`` s; no pong within ``ping_timeout`` s fails with 1011."""
        assert self.ping_interval is not None
        try:
            while True:
                await asyncio.sleep(self.ping_interval)
                if self.connection.state is not State.OPEN:
                    return
                try:
                    waiter = await self.ping()
                except ConnectionClosedError:
                    return
                if self.ping_timeout is None:
                    continue
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), self.ping_timeout)
                except asyncio.TimeoutError:
                    logger.info("no pong within %s s: closing with 1011", self.ping_timeout)
                    await self._fail_locally(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    return
                except ConnectionClosedError:
                    return
        except asyncio.CancelledError:
            pass

    async def _fail_locally(self, code: int, reason: str) -> None:
        """Our side gives up (e.g. no pong): send a close frame if we still can, close TCP."""
        if self.connection.state is State.OPEN:
            self._writer.write(self.connection.send_close(code, reason))
        self.close_code, self.close_reason = code, reason
        # close() flushes the close frame first; the reader then sees the end of the stream.
        self._writer.close()
        if self._space_waiter is not None and not self._space_waiter.done():
            self._space_waiter.set_result(None)
