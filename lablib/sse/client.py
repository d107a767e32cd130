"""asyncio SSE client: ``async for event in connect(url)``, an ``EventSource`` in Python.

The connection's life follows the WHATWG HTML standard, §9.2.3 "Processing model":

* the request is ``GET`` with ``Accept: text/event-stream`` and ``Cache-Control: no-store``,
  plus ``Last-Event-ID`` when the last event ID string is not empty;
* the answer must be ``200`` with a ``text/event-stream`` Content-Type, else the user agent
  must **fail the connection**: no reconnection.  Here a ``204 No Content`` - the server's way
  of saying "stop" - ends the iteration quietly; any other status or type raises
  :class:`~lablib.errors.HandshakeError`;
* a network error (refused, reset, an answer that is not HTTP), and the end of the body
  (clean or cut), make it **reestablish the
  connection**: wait the reconnection time (3 s, or the last ``retry`` the server sent), then
  ask again with ``Last-Event-ID``;
* the body is interpreted by :class:`~lablib.sse.codec.EventStreamParser`.

Every choice that depends on time or chance is injected: ``sleep`` (how the wait is done) and
``rng`` with ``jitter`` (an optional random extra wait, a fraction of the reconnection time, which
§9.2.3 allows: "may wait longer").  ``max_reconnects`` bounds the attempts (None: forever, like a
browser).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from typing import AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from ..errors import HandshakeError, LablibError
from ..http import Response, format_request
from .codec import DEFAULT_MAX_SIZE, MEDIA_TYPE, EventStreamParser
from .events import EventReceived
from ..http import CUT, END, ResponseStream

logger = logging.getLogger("lablib.sse.client")

__all__ = ["connect", "EventSource", "ReadyState", "DEFAULT_RETRY"]

#: The initial reconnection time, in ms ("implementation-defined, probably a few seconds").
DEFAULT_RETRY = 3000


class ReadyState(enum.IntEnum):
    """``EventSource.readyState`` (§9.2.2)."""

    CONNECTING = 0
    OPEN = 1
    CLOSED = 2


class EventSource:
    """One event source: reconnects by itself; iterate it for :class:`EventReceived` items.

    Observable state for notebooks and tests: ``ready_state``, ``last_event_id``, ``retry``
    (the reconnection time in ms), ``connections`` (requests made), ``status`` and ``response``
    (of the last answer), ``comments`` (how many comment lines arrived, e.g. keepalives).
    """

    def __init__(self, url: str, *, last_event_id: str = "", retry: int = DEFAULT_RETRY,
                 headers: Iterable[tuple[str, str]] = (), max_size: int = DEFAULT_MAX_SIZE,
                 max_reconnects: int | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None, jitter: float = 0.0,
                 read_size: int = 65536) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"lablib.sse speaks plain http://host:port/path, not {url!r}")
        self.url = url
        self.host, self.port = parts.hostname, parts.port or 80
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.extra_headers = list(headers)
        self.last_event_id = last_event_id
        self.retry = retry
        self.max_size = max_size
        self.max_reconnects = max_reconnects
        self.sleep, self.rng, self.jitter = sleep, rng or random.Random(), jitter
        self.read_size = read_size
        self.ready_state = ReadyState.CONNECTING
        self.connections = 0
        self.comments = 0
        self.status: int | None = None
        self.response: Response | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._events = self._run()

    # -- the public face ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[EventReceived]:
        return self

    async def __anext__(self) -> EventReceived:
        return await self._events.__anext__()

    async def __aenter__(self) -> EventSource:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """``EventSource.close()``: CLOSED, the connection dropped, no reconnection."""
        self.ready_state = ReadyState.CLOSED
        if self._writer is not None:
            self._writer.close()
        if not self._events.ag_running:     # else the iterating task sees CLOSED and stops
            await self._events.aclose()

    def request_headers(self) -> list[tuple[str, str]]:
        """The header fields of the next request (§9.2.2 step 12 and §9.2.3)."""
        headers = [("Host", f"{self.host}:{self.port}"), ("Accept", MEDIA_TYPE),
                   ("Cache-Control", "no-store")]
        if self.last_event_id:
            headers.append(("Last-Event-ID", self.last_event_id))
        return headers + self.extra_headers

    # -- the processing model -------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[EventReceived]:
        attempts = 0
        while self.ready_state != ReadyState.CLOSED:
            try:
                async for event in self._one_connection():
                    attempts = 0          # events flowed: the next outage counts from zero
                    yield event
            except (OSError, asyncio.IncompleteReadError) as exc:   # a network error
                logger.info("sse: %s: %s", self.url, exc)
            if self.ready_state == ReadyState.CLOSED:
                return
            attempts += 1
            if self.max_reconnects is not None and attempts > self.max_reconnects:
                self.ready_state = ReadyState.CLOSED
                return
            await self._reestablish()

    async def _reestablish(self) -> None:
        """§9.2.3 "reestablish the connection": CONNECTING, wait, try again."""
        self.ready_state = ReadyState.CONNECTING
        delay = self.retry / 1000 * (1 + self.jitter * self.rng.random())
        await self.sleep(delay)

    def _fail(self, reason: str) -> HandshakeError:
        """§9.2.3 "fail the connection": CLOSED, and no reconnection."""
        self.ready_state = ReadyState.CLOSED
        return HandshakeError(self.status or 0, reason)

    async def _one_connection(self) -> AsyncIterator[EventReceived]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writer = writer
        self.connections += 1
        try:
            headers = self.request_headers()
            writer.write(format_request("GET", self.target, headers))
            await writer.drain()
            stream = ResponseStream(method="GET", target=self.target, headers=headers)
            parser = EventStreamParser(max_size=self.max_size, last_event_id=self.last_event_id)
            while True:
                data = await reader.read(self.read_size)
                try:
                    items = stream.receive_data(data)
                except HandshakeError as exc:     # not HTTP: for fetch, a network error
                    raise ConnectionError(exc.reason) from None
                for item in items:
                    if isinstance(item, Response):
                        if not self._announced(item):
                            return
                    elif item is END or item is CUT:
                        parser.receive_eof()      # §9.2.5: pending data is discarded
                        return
                    else:
                        for event in self._interpret(parser, item):
                            yield event
                if not data:
                    return
        finally:
            writer.close()
            self._writer = None

    def _announced(self, response: Response) -> bool:
        """§9.2.3: 200 + text/event-stream "announces the connection"; anything else fails it.
        Returns False for a 204 (stop quietly)."""
        self.response, self.status = response, response.status
        if response.status == 204:
            self.ready_state = ReadyState.CLOSED
            return False
        if response.status != 200:
            raise self._fail(f"the server answered {response.status} {response.reason}; "
                             "an event source does not reconnect after that")
        content_type = response.headers.media_type()
        if content_type != MEDIA_TYPE:
            raise self._fail(f"Content-Type is {content_type or 'missing'!r}, not {MEDIA_TYPE!r}")
        self.ready_state = ReadyState.OPEN
        return True

    def _interpret(self, parser: EventStreamParser, data: bytes) -> list[EventReceived]:
        try:
            items = parser.receive_data(data)
        except LablibError:
            self.ready_state = ReadyState.CLOSED    # our limit: fail, do not ask for more
            raise
        self.last_event_id = parser.last_event_id
        if parser.retry is not None:
            self.retry = parser.retry
        events = []
        for item in items:
            if isinstance(item, EventReceived):
                events.append(item)
            else:
                self.comments += hasattr(item, "comment")
        return events


def connect(url: str, **options) -> EventSource:
    """``async for event in connect("http://127.0.0.1:8080/events"): ...`` (see EventSource).

    Also an async context manager that closes the source on exit.
    """
    return EventSource(url, **options)
