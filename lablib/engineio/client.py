"""asyncio Engine.IO v4 client: ``client = AsyncClient(); await client.connect("http://127.0.0.1:8000")``.

A thin driver around the sans-I/O :class:`~lablib.engineio.client_session.ClientSession`: the
session decides *what* must happen (answer a ping, pause polling, declare the server dead); this
module only moves bytes and runs one timer.

One connection from the handshake through long-polling, the heartbeat and the upgrade to the
close is told step by step in ``docs/architecture.md``.

Bounded everywhere: :meth:`AsyncClient.send` waits while ``max_queue`` packets are waiting to go out,
and the readers stop reading while ``max_queue`` received messages wait for their handler.
Handlers run one at a time, in order (``connect``, the messages, ``disconnect``), in a task of
their own, so a slow handler slows the reading down instead of growing a queue.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections import deque
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from .. import websocket
from ..errors import ConnectionClosed, EngineIOError, HandshakeError, LablibError, LocalProtocolError
from .._timers import Timers
from .._util import Changes
from ..http import HTTPConnection, Response
from . import http_compression
from .client_session import ClientSession, EngineClientState
from .packets import RECORD_SEPARATOR, Packet, encode_packet, encode_payload
from .events import (CloseWebSocket, MessageReceived, Opened, PausePolling, SendPolling,
                     SendWebSocket, SessionClosed, Upgraded, UpgradeAborted)
from .transport import Transport

__all__ = ["AsyncClient"]

logger = logging.getLogger("lablib.engineio.client")

POST_CONTENT_TYPE = "text/plain;charset=UTF-8"  #: what browsers send with an XHR string body
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_CLOSE = object()  #: in the WebSocket outbox: close the WebSocket here
_STOP = object()   #: in the event queue: the dispatcher ends here


# --- the client ----------------------------------------------------------------------------------

class AsyncClient:
    """An Engine.IO v4 client.

    ``rng`` (e.g. ``random.Random(1)``) makes every random choice reproducible: the ``t=``
    values, the WebSocket key and masking keys.  ``max_queue`` bounds the packets waiting to be
    sent and the messages waiting for their handler; ``max_payload`` bounds one poll answer or
    one WebSocket message (bytes).  Times are seconds: ``open_timeout`` for the handshake,
    ``upgrade_timeout`` for how long :meth:`connect` waits for the upgrade to settle,
    ``close_timeout`` for the last packets and the WebSocket closing handshake.

    ``http_compression=True`` asks for compressed poll answers (``Accept-Encoding: gzip,
    deflate`` on each GET, as browsers and python-engineio's client send).  Off by default, so
    that the chapters' requests stay as they are; a compressed answer is decoded either way
    (h11 does not decompress), its inflated size bounded by ``max_payload``.

    ``session`` is the :class:`ClientSession` being driven (inspect it in a notebook);
    ``disconnect_reason`` says why the last session ended.
    """

    def __init__(self, rng: random.Random | None = None, *, max_queue: int = 64,
                 max_payload: int = 10 << 20, open_timeout: float = 10.0,
                 upgrade_timeout: float = 10.0, close_timeout: float = 2.0,
                 http_compression: bool = False) -> None:
        self.http_compression = http_compression
        self.rng = rng if rng is not None else random.Random()
        self.max_queue = max_queue
        self.max_payload = max_payload
        self.open_timeout = open_timeout
        self.upgrade_timeout = upgrade_timeout
        self.close_timeout = close_timeout
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.session: ClientSession | None = None
        self.disconnect_reason: str | None = None
        self._t_prefix = "".join(self.rng.choice(_BASE36) for _ in range(5))
        self._t_counter = 0
        self._reset()

    def _reset(self) -> None:
        self._host, self._port, self._path = "", 0, "/engine.io/"
        self._query = ""   #: the URL's own query, "a=1&" (see _own_query)
        self._headers: list[tuple[str, str]] = []
        self._get: HTTPConnection | None = None
        self._post: HTTPConnection | None = None
        self._post_box: deque[Packet] = deque()
        self._ws_box: deque[Any] = deque()
        self._events: deque[tuple[Any, tuple]] = deque()
        self._changes = Changes()   # pulsed whenever anything above changes
        self._get_in_flight = False
        self._post_in_flight = False
        self._ws_sending = False
        self._polling_paused = False
        self._opened = False
        self._tasks: dict[str, asyncio.Task] = {}
        self._closing: asyncio.Task | None = None
        self._done = asyncio.Event()

    # --- public API ----------------------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None):
        """Register a handler for ``"connect"``, ``"message"`` (data: str | bytes) or
        ``"disconnect"`` (reason: str); usable as ``@client.on("message")``."""
        if event not in ("connect", "message", "disconnect"):
            raise ValueError(f"unknown event {event!r}")

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.handlers[event] = function
            return function

        return register(handler) if handler is not None else register

    @property
    def sid(self) -> str | None:
        return self.session.sid if self.session else None

    @property
    def transport(self) -> str | None:
        """``"polling"`` or ``"websocket"``: what carries the session now."""
        return self.session.transport.value if self.session else None

    @property
    def state(self) -> EngineClientState | None:
        """The session's state (HANDSHAKE, OPEN, PROBING, UPGRADING, UPGRADED, CLOSED);
        ``None`` before :meth:`connect`."""
        return self.session.state if self.session else None

    async def connect(self, url: str, transports: Iterable[str] | None = None,
                      path: str = "/engine.io/",
                      headers: Sequence[tuple[str, str]] | None = None) -> None:
        """Open a session with the server at ``url`` (``http://host:port``; ``ws://`` too).

        A query in ``url`` (``?token=...``) goes with every request, before the protocol's own
        parameters, as engine.io-client sends it.

        ``transports``: ``["polling"]``, ``["websocket"]`` or both (the default: polling, then
        the upgrade).  Returns when the session is open and any upgrade has settled.  A refused
        handshake raises :class:`~lablib.errors.EngineIOError` (the server's error JSON) or
        :class:`~lablib.errors.HandshakeError`.
        """
        if self.session is not None and self.session.state is not EngineClientState.CLOSED:
            raise LocalProtocolError("this client is already connected")
        transports = list(transports or ["polling", "websocket"])
        if not transports or any(t not in ("polling", "websocket") for t in transports):
            raise ValueError(f"transports must be 'polling' and/or 'websocket', not {transports!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "ws") or not parts.hostname:
            raise ValueError(f"expected http://host:port or ws://host:port, not {url!r}")
        self._reset()
        self.disconnect_reason = None
        self._host, self._port = parts.hostname, parts.port or 80
        self._path = "/" + path.strip("/") + "/"
        self._query = _own_query(parts.query)
        self._headers = list(headers or [])
        loop = asyncio.get_running_loop()
        polling = "polling" in transports
        self.session = ClientSession(loop.time(), transport="polling" if polling else "websocket")
        self._start("dispatch", self._dispatch_loop())
        try:
            await asyncio.wait_for(self._open_polling() if polling else self._open_websocket(),
                                   self.open_timeout)
        except BaseException:
            self._apply(self.session.close(loop.time()))
            await self.wait()
            raise
        timers = Timers(self.session.next_deadline, self._tick, self._now,
                        logger=logger, failure="the Engine.IO client's timer failed")
        self._start("timer", timers.run())
        if (polling and "websocket" in transports and self.session.info is not None
                and "websocket" in self.session.info.upgrades):
            self._start("upgrade", self._upgrade())
            await self._changes.until(self._upgrade_settled, self.upgrade_timeout)

    def _upgrade_settled(self) -> bool:
        """The upgrade failed, or succeeded and the "5" has been written to the WebSocket."""
        if not self._tasks["upgrade"].done():
            return False
        if self.state is EngineClientState.UPGRADED:
            return not self._ws_box and not self._ws_sending
        return self.state not in (EngineClientState.PROBING, EngineClientState.UPGRADING)

    async def send(self, data: str | bytes) -> None:
        """Send a text (``str``) or binary (bytes-like) message.

        Waits while ``max_queue`` packets are already waiting to go out.  After the session
        closed, the message is dropped (like both reference clients do).
        """
        if self.session is None:
            raise LocalProtocolError("send() before connect()")
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, (str, bytes)):
            raise TypeError(f"an Engine.IO message is str or bytes, not {type(data).__name__}")
        if (isinstance(data, str) and RECORD_SEPARATOR in data
                and self.session.transport is Transport.POLLING):
            raise LocalProtocolError("a polling payload cannot carry the record separator \\x1e")
        await self._changes.until(lambda: self._done.is_set()
                          or len(self._post_box) + len(self._ws_box) < self.max_queue)
        self._apply(self.session.send(data))

    async def disconnect(self) -> None:
        """Close the session (a ``1`` to the server) and wait until everything is shut down."""
        if self.session is None:
            return
        self._apply(self.session.close(asyncio.get_running_loop().time()))
        if asyncio.current_task() is not self._tasks.get("dispatch"):  # not from a handler
            await self.wait()

    async def wait(self) -> None:
        """Wait until the session is closed and the disconnect handler has run."""
        if self.session is not None:
            await self._done.wait()

    # --- applying the session's outputs ---------------------------------------------------------

    def _apply(self, outputs) -> None:
        """Carry out what the session asked for.  Synchronous, so the order of the outputs is
        the order on the wire; the writer tasks do the actual sending."""
        for output in outputs:
            if isinstance(output, Opened):
                self._opened = True
                self._events.append(("connect", ()))
            elif isinstance(output, MessageReceived):
                self._events.append(("message", (output.data,)))
            elif isinstance(output, SendPolling):
                self._post_box.extend(output.packets)
            elif isinstance(output, SendWebSocket):
                self._ws_box.extend(output.packets)
            elif isinstance(output, CloseWebSocket):
                self._ws_box.append(_CLOSE)
            elif isinstance(output, PausePolling):
                self._polling_paused = True
                self._start("pause", self._pause_polling())
            elif isinstance(output, Upgraded):
                self._finish_polling()
            elif isinstance(output, UpgradeAborted):
                logger.info("upgrade aborted (%s); staying on polling", output.reason)
                self._polling_paused = False
                if self._task_done("poll") and self.session.state is not EngineClientState.CLOSED:
                    self._start("poll", self._poll_loop())
            elif isinstance(output, SessionClosed):
                self.disconnect_reason = output.reason
                if self._opened:  # no "disconnect" without a "connect" (a failed connect raises)
                    self._events.append(("disconnect", (output.reason,)))
                if self._closing is None:
                    self._closing = asyncio.get_running_loop().create_task(self._shut_down())
        self._changes.pulse()

    def _start(self, name: str, coro) -> None:
        self._tasks[name] = asyncio.get_running_loop().create_task(coro, name=f"eio-client-{name}")

    def _task_done(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is None or task.done()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _session_closed(self) -> bool:
        return self.session is None or self.session.state is EngineClientState.CLOSED

    def _fail(self, reason: str) -> None:
        assert self.session is not None
        self._apply(self.session.fail(reason))

    # --- polling ---------------------------------------------------------------------------------

    def _polling_target(self) -> str:
        """``/engine.io/?EIO=4&transport=polling[&sid=...]&t=...`` (engine.io-client's order)."""
        query = self._query + "EIO=4&transport=polling"
        if self.sid:
            query += f"&sid={self.sid}"
        t = self._t_prefix + "." + _base36(self._t_counter)
        self._t_counter += 1
        return f"{self._path}?{query}&t={t}"

    def _request_headers(self, body: bytes | None = None) -> list[tuple[str, str]]:
        headers = [("Host", f"{self._host}:{self._port}"), ("Accept", "*/*")] + self._headers
        if body is None and self.http_compression:  # a GET: its answer may come compressed
            headers.append(("Accept-Encoding", http_compression.ACCEPT_ENCODING))
        if body is not None:
            headers += [("Content-Type", POST_CONTENT_TYPE), ("Content-Length", str(len(body)))]
        return headers

    async def _open_polling(self) -> None:
        assert self.session is not None
        self._get = HTTPConnection(self._host, self._port, max_body_size=self.max_payload)
        self._post = HTTPConnection(self._host, self._port, max_body_size=self.max_payload)
        response = await self._get.request("GET", self._polling_target(), self._request_headers())
        _raise_for_status(response)
        self._receive_poll(response)
        if self.session.state is not EngineClientState.OPEN:
            raise HandshakeError(0, f"no Engine.IO open packet ({self.session.close_reason})")
        self._start("poll", self._poll_loop())
        self._start("post", self._post_loop())

    def _receive_poll(self, response: Response) -> None:
        assert self.session is not None
        try:
            body = http_compression.decode(response.body, response.headers.get("content-encoding"),
                                           self.max_payload)
            text = body.decode("utf-8")
        except (UnicodeDecodeError, ValueError, LablibError) as exc:
            logger.info("poll answer unreadable: %r", exc)
            self._fail("parse error")
            return
        self._apply(self.session.receive_payload(text, self._now()))

    async def _poll_loop(self) -> None:
        """The long-poll GET loop: one GET at a time, until closed or paused for the upgrade."""
        assert self.session is not None and self._get is not None
        while self.session.state is not EngineClientState.CLOSED and not self._polling_paused:
            self._get_in_flight = True
            try:
                response = await self._get.request("GET", self._polling_target(), self._request_headers())
            except (OSError, LablibError) as exc:
                logger.info("poll failed: %r", exc)
                self._fail("transport error")
                return
            finally:
                self._get_in_flight = False
                self._changes.pulse()
            if response.status != 200:
                logger.info("poll answered %s", response.status)
                self._fail("transport error")
                return
            self._receive_poll(response)
            await self._changes.until(lambda: len(self._events) < self.max_queue)  # backpressure

    async def _post_loop(self) -> None:
        """Send what waits in the POST outbox, as one payload per POST (up to ``maxPayload``)."""
        assert self.session is not None and self._post is not None
        while True:
            await self._changes.until(lambda: bool(self._post_box) or self._session_closed())
            if not self._post_box:
                return  # closed, and everything (the "1" included) has gone out
            body = encode_payload(self._take_batch()).encode("utf-8")
            target = self._polling_target()
            self._post_in_flight = True
            try:
                response = await self._post.request("POST", target, self._request_headers(body), body)
            except (OSError, LablibError) as exc:
                logger.info("POST failed: %r", exc)
                self._post_box.clear()
                self._fail("transport error")
                return
            finally:
                self._post_in_flight = False
                self._changes.pulse()
            if response.status != 200:
                logger.info("POST answered %s", response.status)
                self._post_box.clear()
                self._fail("transport error")
                return

    def _take_batch(self) -> list[Packet]:
        """As many waiting packets as fit in the server's ``maxPayload`` (at least one)."""
        assert self.session is not None and self.session.info is not None
        limit = self.session.info.maxPayload
        batch = [self._post_box.popleft()]
        size = len(encode_packet(batch[0], for_polling=True).encode("utf-8"))
        while self._post_box:
            more = 1 + len(encode_packet(self._post_box[0], for_polling=True).encode("utf-8"))
            if size + more > limit:
                break
            batch.append(self._post_box.popleft())
            size += more
        self._changes.pulse()
        return batch

    async def _pause_polling(self) -> None:
        """Upgrade step: wait until no GET and no POST is in flight, then tell the session."""
        assert self.session is not None
        await self._changes.until(lambda: self.session.state is not EngineClientState.UPGRADING or (
            not self._get_in_flight and not self._post_in_flight and not self._post_box))
        if self.session.state is EngineClientState.UPGRADING:
            self._apply(self.session.polling_paused(self._now()))

    def _finish_polling(self) -> None:
        """The WebSocket took over: stop the polling tasks and close both HTTP connections."""
        for name in ("poll", "post"):
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
        for connection in (self._get, self._post):
            if connection is not None:
                connection.close()

    # --- the WebSocket -----------------------------------------------------------------------------

    def _websocket_uri(self) -> str:
        query = self._query + "EIO=4&transport=websocket" + (f"&sid={self.sid}" if self.sid else "")
        return f"ws://{self._host}:{self._port}{self._path}?{query}"

    async def _connect_websocket(self):
        return await websocket.connect(
            self._websocket_uri(), additional_headers=self._headers or None,
            max_size=self.max_payload, ping_interval=None,  # Engine.IO has its own heartbeat
            close_timeout=self.close_timeout, open_timeout=self.open_timeout, rng=self.rng)

    async def _open_websocket(self) -> None:
        assert self.session is not None
        ws = await self._connect_websocket()
        self._start("ws-read", self._ws_read_loop(ws))
        self._start("ws-write", self._ws_write_loop(ws))
        await self._changes.until(lambda: self.session.state is not EngineClientState.HANDSHAKE)
        if self.session.state is not EngineClientState.OPEN:
            raise HandshakeError(0, f"no Engine.IO open packet ({self.session.close_reason})")

    async def _upgrade(self) -> None:
        """Open a WebSocket with our sid and hand it to the session, which probes it."""
        assert self.session is not None
        try:
            try:
                ws = await self._connect_websocket()
            except (OSError, LablibError, asyncio.TimeoutError) as exc:
                logger.info("upgrade failed: cannot open the WebSocket: %r", exc)
                return
            if self.session.state is not EngineClientState.OPEN:
                await ws.close()
                return
            self._start("ws-read", self._ws_read_loop(ws))
            self._start("ws-write", self._ws_write_loop(ws))
            self._apply(self.session.start_upgrade(self._now()))
        finally:
            # connect() waits in until(_upgrade_settled): wake it, or a failed upgrade would
            # keep it waiting for the whole upgrade_timeout.  It runs after this task is done.
            self._changes.pulse()

    async def _ws_read_loop(self, ws) -> None:
        assert self.session is not None
        try:
            while True:
                data = await ws.recv()
                self._apply(self.session.receive_websocket_message(data, self._now()))
                await self._changes.until(lambda: len(self._events) < self.max_queue)  # backpressure
        except (ConnectionClosed, OSError, LablibError):
            pass
        self._apply(self.session.websocket_closed(self._now()))

    async def _ws_write_loop(self, ws) -> None:
        while True:
            await self._changes.until(lambda: bool(self._ws_box) or self._session_closed())
            if not self._ws_box:
                return
            item = self._ws_box.popleft()
            self._ws_sending = True
            try:
                if item is _CLOSE:
                    self._ws_box.clear()
                    await ws.close()
                    return
                await ws.send(encode_packet(item, for_polling=False))
            except (ConnectionClosed, OSError, LablibError):
                return  # the read loop notices the closed connection and tells the session
            finally:
                self._ws_sending = False
                self._changes.pulse()

    # --- the timer, the handlers, the end --------------------------------------------------------

    async def _tick(self, now: float) -> None:
        """The timer's work (:class:`lablib._timers.Timers`): fire what is due in the session."""
        assert self.session is not None
        self._apply(self.session.tick(now))

    async def _dispatch_loop(self) -> None:
        """Run the handlers one at a time, in the order the events happened."""
        while True:
            await self._changes.until(lambda: bool(self._events))
            name, args = self._events.popleft()
            self._changes.pulse()
            if name is _STOP:
                return
            handler = self.handlers.get(name)
            if handler is None:
                continue
            try:
                result = handler(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("the %r handler raised", name)

    async def _shut_down(self) -> None:
        """The session is closed: let the last packets out, stop every task, run the handlers."""
        # The writers send what is left (the "1" included), close the WebSocket, and end;
        # all bounded by close_timeout.
        writers = [task for name, task in self._tasks.items() if name in ("post", "ws-write")]
        if writers:
            await asyncio.wait(writers, timeout=self.close_timeout)
        current = asyncio.current_task()
        stopping = [task for name, task in self._tasks.items()
                    if name != "dispatch" and task is not current and not task.done()]
        for task in stopping:
            task.cancel()
        if stopping:
            await asyncio.wait(stopping, timeout=self.close_timeout)
        for connection in (self._get, self._post):
            if connection is not None:
                connection.close()
        self._events.append((_STOP, ()))
        self._changes.pulse()
        dispatcher = self._tasks.get("dispatch")
        if dispatcher is not None:
            await dispatcher
        self._done.set()


#: The query parameters the protocol sets itself (engine.io-client's ``createTransport``).
_PROTOCOL_PARAMETERS = frozenset({"EIO", "transport", "sid", "t"})


def _own_query(query: str) -> str:
    """The application's part of a URL's query, ready to prefix the protocol's: ``"a=1&"``.

    Kept as written (its own percent-encoding) unless it names a parameter of the protocol,
    which the protocol's value overrides.
    """
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name in _PROTOCOL_PARAMETERS for name, _ in pairs):
        query = urlencode([(n, v) for n, v in pairs if n not in _PROTOCOL_PARAMETERS], quote_via=quote)
    return query + "&" if query else ""


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _BASE36[digit] + digits
        if number == 0:
            return digits


def _raise_for_status(response: Response) -> None:
    """A refused handshake: the Engine.IO error JSON if the server sent one, else the status."""
    if response.status == 200:
        return
    try:
        error = json.loads(response.body)
        raise EngineIOError(int(error["code"]), str(error["message"]), status=response.status)
    except (ValueError, TypeError, KeyError):
        text = response.body.decode("utf-8", "replace").strip()[:200]
        raise HandshakeError(response.status, text or response.reason) from None
