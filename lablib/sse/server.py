"""asyncio SSE server: ``async with serve(handler, "127.0.0.1", 0) as server: server.port``.

For each request the server calls ``await handler(stream)`` with an :class:`EventStream`:

* ``stream.request`` is the :class:`~lablib.http.Request`; ``stream.last_event_id`` the
  client's ``Last-Event-ID`` header (None on a first connection), so the handler can resume;
* ``await stream.send("data", event=..., id=...)`` (or ``send(EventReceived(...))``) writes one
  event; ``await stream.comment("...")`` a comment;
* ``await stream.reject(204)`` answers without a stream: 204 tells an ``EventSource`` to stop
  reconnecting (§9.2.3: any status but 200 "fails the connection"); other statuses work too;
  ``await stream.respond(200, html, "text/html")`` serves an ordinary page instead.

The response head (``200``, ``Content-Type: text/event-stream``, ``Cache-Control: no-store``)
goes out with the first event or comment, or on ``await stream.open()``; then the server's
``retry`` (if set) as a ``retry:`` field, so every client uses it from the start.  While the
handler is silent for ``keepalive`` seconds, a comment line goes out (it keeps proxies and NATs
from dropping an idle connection, and lets the server notice a dead client).

The body uses chunked transfer-coding (RFC 9112 §7.1), not a close-delimited body: with chunks
the end of a stream (the last chunk, ``0\\r\\n\\r\\n``) differs from a cut connection, so a
client, a proxy and the dissector can tell "the server finished" from "the network failed".
When the handler returns, the server sends the last chunk and closes the connection; if the
client goes away, the handler task is cancelled.  ``server.close()`` ends every stream the same
clean way.  A handler that raises before opening gets a 500; after opening, its stream ends.

Limits (constructor arguments): ``request_timeout`` and ``max_request_size`` for the request;
``send_timeout``: a client that stops reading (its TCP window full) for that long is dropped,
and the handler's ``send`` raises :class:`~lablib.errors.ConnectionClosed`, so a stalled client
never holds a handler forever.  ``headers`` are added to every 200 head (e.g.
``Access-Control-Allow-Origin`` for a browser's ``EventSource`` from another origin).

An event stream only goes from server to client.  What the client has to say travels in
ordinary requests beside it (a browser's ``fetch(url, {method: "POST", body})``): with
``max_body_size`` > 0 the server also accepts ``POST`` with a body up to that size and hands it
to the same handler (``stream.request.method``, ``stream.request.body``), which answers with
``respond()`` or ``reject()``.  By default (0) a POST gets 405, like any method but GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable, Iterable

from ..errors import ConnectionClosed, HandshakeError, LocalProtocolError
from ..http import NEED_DATA, Request, RequestParser, error_response, format_response
from .codec import MEDIA_TYPE, encode, encode_comment
from .events import EventReceived

logger = logging.getLogger("lablib.sse.server")

__all__ = ["serve", "Server", "EventStream", "chunk", "LAST_CHUNK"]

#: RFC 9112 §7.1: the chunk of size zero that ends a chunked body (no trailers).
LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """RFC 9112 §7.1: ``size-in-hex CRLF data CRLF``."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class EventStream:
    """The server's side of one event-stream response (see the module docstring)."""

    def __init__(self, request: Request, writer: asyncio.StreamWriter, *,
                 retry: int | None = None, keepalive: float | None = None,
                 headers: Iterable[tuple[str, str]] = (),
                 send_timeout: float | None = None) -> None:
        self.request = request
        self.headers = list(headers)
        self.send_timeout = send_timeout
        self.last_event_id: str | None = request.headers.get("last-event-id")
        self.retry, self.keepalive = retry, keepalive
        self.opened = False       # the 200 head went out
        self.answered = False     # some head went out (200 or a rejection)
        self.closed = asyncio.Event()
        self._writer = writer
        self._lock = asyncio.Lock()
        self._activity = asyncio.Event()

    @property
    def path(self) -> str:
        return self.request.path

    # -- what a handler calls ---------------------------------------------------------------

    async def open(self) -> None:
        """Send the 200 head (and the server's retry) now, if not yet sent."""
        if self.answered:
            if not self.opened:
                raise LocalProtocolError("this request was rejected: no stream to open")
            return
        self.answered = self.opened = True
        head = format_response(200, [("Content-Type", MEDIA_TYPE), ("Cache-Control", "no-store"),
                                     ("Transfer-Encoding", "chunked")] + self.headers)
        first = chunk(encode(retry=self.retry)) if self.retry is not None else b""
        await self._write(head + first)

    async def send(self, data: str | EventReceived | None = None, *, event: str | None = None,
                   id: str | None = None, retry: int | None = None) -> None:
        """Send one event (see :func:`~lablib.sse.codec.encode`)."""
        if isinstance(data, EventReceived):
            data, event, id = (data.data, None if data.event == "message" else data.event,
                               data.last_event_id or None)
        payload = encode(data, event=event, id=id, retry=retry)   # errors before any byte
        await self.open()
        await self._write(chunk(payload))

    async def comment(self, text: str = "") -> None:
        """Send a comment line (a browser ignores it)."""
        payload = encode_comment(text)
        await self.open()
        await self._write(chunk(payload))

    async def reject(self, status: int = 204, message: str = "") -> None:
        """Answer ``status`` instead of a stream (204: "stop reconnecting")."""
        if status == 204:
            await self._answer(format_response(204, [("Connection", "close")]))
        else:
            await self.respond(status, message or f"status {status}")

    async def respond(self, status: int, body: str,
                      content_type: str = "text/plain; charset=utf-8") -> None:
        """Answer with an ordinary response and close: an error, or a page (e.g. the HTML that
        hosts a browser's ``EventSource``, served from the same origin as the stream)."""
        await self._answer(error_response(status, body, [("Cache-Control", "no-store")],
                                          content_type=content_type))

    async def _answer(self, response: bytes) -> None:
        if self.answered:
            raise LocalProtocolError("the response has already started")
        self.answered = True
        await self._write(response)

    # -- driver ---------------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionClosed(1006, "the client went away")
        async with self._lock:
            self._writer.write(data)
            self._activity.set()
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self._writer.drain()
            except TimeoutError:     # a client that stopped reading: drop it, never wait forever
                self._writer.transport.abort()
                self.closed.set()
                raise ConnectionClosed(1006, f"the client read nothing for "
                                             f"{self.send_timeout} s") from None

    async def _keepalives(self) -> None:
        """A comment after every ``keepalive`` seconds without a write."""
        while True:
            self._activity.clear()
            try:
                async with asyncio.timeout(self.keepalive):
                    await self._activity.wait()
            except TimeoutError:
                if self.opened:
                    await self.comment()

    async def _finish(self) -> None:
        """End the response cleanly: the last chunk (or an empty stream, if never opened)."""
        if self.closed.is_set():
            return
        with contextlib.suppress(ConnectionError, ConnectionClosed):
            if not self.answered:
                await self.open()
            if self.opened:
                await self._write(LAST_CHUNK)


Handler = Callable[[EventStream], Awaitable[None]]


class Server:
    """A listening SSE server; ``port`` is the port the OS chose when you asked for 0."""

    def __init__(self, handler: Handler, host: str, port: int, *, retry: int | None = None,
                 keepalive: float | None = 15.0, headers: Iterable[tuple[str, str]] = (),
                 send_timeout: float | None = 60.0, max_request_size: int = 16 * 1024,
                 request_timeout: float = 10.0, max_body_size: int = 0) -> None:
        self.handler = handler
        self.headers, self.send_timeout = list(headers), send_timeout
        self.host, self.requested_port = host, port
        self.retry, self.keepalive = retry, keepalive
        self.max_request_size, self.request_timeout = max_request_size, request_timeout
        self.max_body_size = max_body_size
        self.methods = ("GET", "POST") if max_body_size > 0 else ("GET",)
        self.streams: set[EventStream] = set()
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._connection, self.host, self.requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __await__(self):
        return self.start().__await__()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening; end every open stream with its last chunk."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            request = await self._read_request(reader, writer)
            if request is not None:
                await self._respond(request, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _read_request(self, reader, writer) -> Request | None:
        parser = RequestParser(max_header_size=self.max_request_size,
                               max_body_size=self.max_body_size)
        try:
            async with asyncio.timeout(self.request_timeout):
                result = NEED_DATA
                while result is NEED_DATA:
                    data = await reader.read(65536)
                    result = parser.receive_data(data) if data else parser.receive_eof()
        except HandshakeError as exc:
            writer.write(error_response(exc.status, exc.reason, exc.headers))
            return None
        except TimeoutError:
            writer.write(error_response(408, "no complete request in time"))
            return None
        if result.method not in self.methods:
            writer.write(error_response(405, "an event stream is read with GET",
                                        [("Allow", ", ".join(self.methods))]))
            return None
        return result

    async def _respond(self, request: Request, reader, writer) -> None:
        stream = EventStream(request, writer, retry=self.retry, keepalive=self.keepalive,
                             headers=self.headers, send_timeout=self.send_timeout)
        self.streams.add(stream)
        handler = asyncio.create_task(self._run_handler(stream))
        watchers = [asyncio.create_task(self._watch_client(reader, stream, handler))]
        if self.keepalive is not None:
            watchers.append(asyncio.create_task(stream._keepalives()))
        try:
            await asyncio.shield(handler)
        except asyncio.CancelledError:      # server.close(): stop the handler, end cleanly
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await stream._finish()
            stream.closed.set()
            self.streams.discard(stream)

    async def _run_handler(self, stream: EventStream) -> None:
        try:
            await self.handler(stream)
        except (ConnectionClosed, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:   # noqa: BLE001 -- the traceback goes to the log, never to the peer
            logger.exception("sse handler failed on %s", stream.path)
            if not stream.answered:
                with contextlib.suppress(ConnectionError, ConnectionClosed):
                    await stream.reject(500, "internal server error")

    @staticmethod
    async def _watch_client(reader, stream: EventStream, handler: asyncio.Task) -> None:
        """The client sends nothing after its request: EOF or a reset means it left."""
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        stream.closed.set()
        handler.cancel()


def serve(handler: Handler, host: str = "127.0.0.1", port: int = 0, **options) -> Server:
    """``async with serve(handler, "127.0.0.1", 0) as server:`` (or ``await serve(...)``)."""
    return Server(handler, host, port, **options)
