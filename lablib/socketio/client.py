"""asyncio Socket.IO v5 client: ``sio = AsyncClient(); await sio.connect("http://127.0.0.1:5000")``.

A thin driver of the sans-I/O :class:`~lablib.socketio.client_core.ClientCore` over lablib's
Engine.IO client (:class:`lablib.engineio.client.AsyncClient`, path ``/socket.io/``): the core
decides everything Socket.IO (what to send, which namespace is connected, when to reconnect and
after how long); this module carries out its outputs and runs the application's handlers.  The
API is python-socketio's ``AsyncClient``, so notebook cells can show both side by side::

    sio = AsyncClient(rng=random.Random(1))

    @sio.on("chat", namespace="/room")
    async def chat(text, picture):        # one parameter per argument of the event
        return "thanks"                   # the server's emit with ack gets ["thanks"]

    await sio.connect(url, namespaces=["/", "/room"], auth={"token": "t"})
    await sio.emit("chat", ("hi", b"\\x89PNG"), namespace="/room")
    answer = await sio.call("ping", 1, timeout=5)      # waits for the ack
    await sio.disconnect()

Handlers per namespace: ``connect()``, ``disconnect(reason)``, ``connect_error(data)``, any
server event, and ``"*"`` (``handler(event, *args)``) for an event without one of its own; of
the connection: ``reconnect_attempt``, ``reconnect``, ``reconnect_error``, ``reconnect_failed``.
How the driver carries out the core's outputs and runs the handlers, and where it differs from
python-socketio's client, are told in ``docs/architecture.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections import deque
from typing import Any, Callable, Iterable, Mapping, Sequence

from .._timers import Timers
from .._util import Changes
from ..engineio.client import AsyncClient as EngineIOClient
from ..engineio.client_session import EngineClientState
from ..errors import EngineIOError, HandshakeError, LablibError, LocalProtocolError
from .client_core import ClientCore, ManagerState, NamespaceState
from ..events import Output
from .events import (IO_CLIENT_DISCONNECT, IO_SERVER_DISCONNECT, PING_TIMEOUT, TRANSPORT_CLOSE,
                     TRANSPORT_ERROR, AckCancelled, AckReceived, AckTimedOut, CloseEngine,
                     ConnectError, Connected, Disconnected, EventReceived, OpenEngine,
                     ReconnectAttempt, Reconnected, ReconnectError, ReconnectFailed,
                     ReconnectScheduled, Send)

__all__ = [
    "AsyncClient", "ConnectionError", "NamespaceRefusedError", "TransportError", "MANAGER_EVENTS",
    "IO_SERVER_DISCONNECT", "IO_CLIENT_DISCONNECT", "PING_TIMEOUT", "TRANSPORT_CLOSE",
    "TRANSPORT_ERROR",
]

logger = logging.getLogger("lablib.socketio.client")

#: Events of the connection as a whole (socket.io-client's ``Manager``), not of a namespace.
MANAGER_EVENTS = frozenset({"reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"})

MAX_RECORDED_DELAYS = 1000   #: reconnect_delays_ms keeps the last ones only
_STOP = object()   #: in the handler queue: the dispatcher ends here


class ConnectionError(LablibError):  # noqa: A001 - python-socketio's name, on purpose
    """Connecting failed (Engine.IO could not connect, or a namespace was refused), or a
    ``call`` lost its connection before the ack came.

    ``errors`` maps each namespace that failed to the message (the server's CONNECT_ERROR
    ``message``, or a description of the Engine.IO failure); ``data`` maps it to the
    CONNECT_ERROR's ``data`` (None if there was none).
    """

    def __init__(self, message: str, errors: Mapping[str, str] | None = None,
                 data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})
        self.data = dict(data or {})


class NamespaceRefusedError(ConnectionError):
    """The server refused a namespace: it answered CONNECT with CONNECT_ERROR.

    ``namespace``, ``message`` and ``server_data`` are those of the (first) refusal - the server's
    words, e.g. from its connect handler's ``ConnectionRefusedError(message, data)``;
    ``errors``/``data`` (maps, see :class:`ConnectionError`) hold every refused namespace.
    Retrying will not help unless what the server objected to (auth, say) changes.
    """

    def __init__(self, namespace: str, message: str, data: Any = None,
                 errors: Mapping[str, str] | None = None,
                 all_data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, errors if errors is not None else {namespace: message},
                         all_data if all_data is not None else {namespace: data})
        self.namespace = namespace
        self.message = message
        self.server_data = data   #: the CONNECT_ERROR's data (None if it had none)


class TransportError(ConnectionError):
    """Engine.IO could not connect: the server is unreachable (connection refused), did not
    answer in time, or answered the handshake with an error.  Nothing reached Socket.IO.

    ``description`` says what happened (as socket.io-client's ``TransportError``); the
    exception that caused it is ``__cause__``.  Trying again later may work.
    """

    def __init__(self, description: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(description, errors)
        self.description = description


class _Link:
    """One Engine.IO connection (or an attempt at one) and the messages waiting for it."""

    def __init__(self, eio: EngineIOClient) -> None:
        self.eio = eio
        self.outbox: deque[str | bytes] = deque()
        self.opened = False                  # engine_opened was reported to the core
        self.retired = False                 # the core no longer counts it (closed or lost)
        self.lost_reason: str | None = None  # Engine.IO closed while we were still opening
        self.open_task: asyncio.Task | None = None
        self.writer: asyncio.Task | None = None
        self.writing = False


class AsyncClient:
    """A Socket.IO v5 client for asyncio (the API of python-socketio's ``AsyncClient``).

    Reconnection options are python-socketio's, in seconds: ``reconnection`` (True),
    ``reconnection_attempts`` (0: unlimited), ``reconnection_delay`` (1),
    ``reconnection_delay_max`` (5), ``randomization_factor`` (0.5); the core receives them in
    milliseconds.  ``rng`` draws the reconnection jitter (``random.Random(seed)`` makes
    :attr:`reconnect_delays_ms` reproducible); the Engine.IO clients get a generator seeded
    from its state (their ``t=`` values and WebSocket keys), or ``engineio_rng``.
    ``max_queue`` bounds the messages waiting to be sent and the events waiting for their
    handler; ``max_send_buffer`` the emits kept per namespace while disconnected;
    ``engineio_options`` go to each :class:`lablib.engineio.client.AsyncClient` (``open_timeout``,
    ``close_timeout``, ...).

    ``retries`` and ``ack_timeout`` (seconds) are socket.io-client's options for at-least-once
    delivery to the server: each emit waits for its ack (the server's handler must return),
    one in flight at a time, in order, and is sent again after ``ack_timeout`` or a lost
    connection, up to ``retries`` times (see :mod:`lablib.socketio.client_core`).  With a
    server that has connection state recovery on, :meth:`recovered` tells whether the last
    (re)connection restored the session; the events missed meanwhile arrive at the handlers
    like live ones.
    """

    def __init__(self, reconnection: bool = True, reconnection_attempts: int = 0,
                 reconnection_delay: float = 1, reconnection_delay_max: float = 5,
                 randomization_factor: float = 0.5, rng: random.Random | None = None, *,
                 engineio_rng: random.Random | None = None, max_queue: int = 64,
                 max_send_buffer: int = 1000,
                 engineio_options: Mapping[str, Any] | None = None,
                 retries: int | None = None, ack_timeout: float | None = None) -> None:
        if reconnection_attempts < 0:
            raise ValueError("reconnection_attempts must be >= 0 (0: unlimited)")
        self.reconnection = reconnection
        self.reconnection_attempts = reconnection_attempts
        self.reconnection_delay = reconnection_delay
        self.reconnection_delay_max = reconnection_delay_max
        self.randomization_factor = randomization_factor
        self.rng = rng if rng is not None else random.Random()
        if engineio_rng is None:
            # Seeded from rng's state without drawing from it: the backoff jitter stays the
            # sequence a ClientCore with the same rng would draw.
            engineio_rng = random.Random(str(self.rng.getstate()))
        self.engineio_rng = engineio_rng
        self.max_queue = max_queue
        self.max_send_buffer = max_send_buffer
        self.retries = retries
        self.ack_timeout = ack_timeout
        self.engineio_options = dict(engineio_options or {})
        self.handlers: dict[str, dict[str, Callable[..., Any]]] = {}
        self.manager_handlers: dict[str, Callable[..., Any]] = {}
        self.core = self._new_core()
        #: the delays (ms) the core drew before each reconnection attempt since connect()
        #: (the last MAX_RECORDED_DELAYS)
        self.reconnect_delays_ms: list[int] = []
        self._url = ""
        self._headers: list[tuple[str, str]] = []
        self._transports: list[str] | None = None
        self._path = "/socket.io/"
        self._link: _Link | None = None
        self._closing_links: set[asyncio.Task] = set()
        self._events: deque[Any] = deque()
        self._callbacks: dict[tuple[str, int], Callable[..., Any]] = {}
        self._waiters: dict[tuple[str, int], asyncio.Future] = {}
        self._failures: dict[str, ConnectError] = {}
        self._transport_failure: BaseException | None = None   # why Engine.IO did not open
        self._sids: dict[str, str] = {}
        self._running = False
        self._changes = Changes()   # pulsed whenever the client's state changes
        self._timers: Timers | None = None
        self._dispatcher: asyncio.Task | None = None
        self._timer: asyncio.Task | None = None
        self._finishing: asyncio.Task | None = None
        self._done: asyncio.Event | None = None

    def _new_core(self) -> ClientCore:
        return ClientCore(
            reconnection=self.reconnection,
            reconnection_attempts=self.reconnection_attempts or None,
            reconnection_delay=max(1, round(self.reconnection_delay * 1000)),
            reconnection_delay_max=max(1, round(self.reconnection_delay_max * 1000)),
            randomization_factor=self.randomization_factor, rng=self.rng,
            max_send_buffer=self.max_send_buffer, retries=self.retries,
            ack_timeout=None if self.ack_timeout is None else max(1, round(self.ack_timeout * 1000)))

    # --- handlers ------------------------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None,
           namespace: str | None = None):
        """Register ``handler`` for ``event`` in ``namespace`` ("/" by default); usable as
        ``@sio.on("event")``.  The reconnection events belong to no namespace."""
        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            if event in MANAGER_EVENTS:
                self.manager_handlers[event] = function
            else:
                self.handlers.setdefault(namespace or "/", {})[event] = function
            return function

        return register(handler) if handler is not None else register

    def event(self, handler: Callable[..., Any] | None = None, namespace: str | None = None):
        """``@sio.event`` (the function's name is the event) or ``@sio.event(namespace="/x")``."""
        if handler is not None:
            return self.on(handler.__name__, handler, namespace=namespace)
        return lambda function: self.on(function.__name__, function, namespace=namespace)

    # --- state ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while at least one namespace is connected."""
        return bool(self.namespaces)

    @property
    def namespaces(self) -> dict[str, str]:
        """The connected namespaces and our sid in each."""
        return dict(self._sids)

    @property
    def sid(self) -> str | None:
        """Our sid in the namespace "/" (None when not connected there)."""
        return self.get_sid("/")

    def get_sid(self, namespace: str | None = None) -> str | None:
        return self.core.sid(namespace or "/")

    def recovered(self, namespace: str | None = None) -> bool:
        """Did the last connection of ``namespace`` restore our session (connection state
        recovery: same sid, rooms, and the missed events replayed)?"""
        return self.core.recovered(namespace or "/")

    def transport(self) -> str | None:
        """``"polling"`` or ``"websocket"``: what carries the connection now (None if none)."""
        link = self._link
        return link.eio.transport if link is not None and link.opened else None

    @property
    def eio(self) -> EngineIOClient | None:
        """The Engine.IO client of the current connection (to look at; None between them)."""
        return self._link.eio if self._link is not None else None

    # --- connecting ----------------------------------------------------------------------------

    async def connect(self, url: str, headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
                      auth: dict | None = None, transports: Iterable[str] | str | None = None,
                      namespaces: Iterable[str] | str | None = None,
                      socketio_path: str = "socket.io", wait: bool = True,
                      wait_timeout: float = 1) -> None:
        """Connect to the server at ``url`` and join ``namespaces``.

        ``namespaces`` defaults to those with registered handlers (or "/" if none), as in
        python-socketio.  With ``wait`` (the default) returns when every namespace is connected;
        raises :class:`ConnectionError` if Engine.IO cannot connect, if a namespace is refused,
        or if not all are connected ``wait_timeout`` seconds after Engine.IO opened (then
        the client disconnects).  ``wait=False`` returns once Engine.IO is open.
        """
        if self._running:
            raise ConnectionError("Already connected")
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        names = list(namespaces) if namespaces is not None else sorted(self.handlers) or ["/"]
        if not names:
            raise ValueError("no namespace to connect")
        if isinstance(transports, str):
            transports = [transports]
        if isinstance(headers, Mapping):
            headers = list(headers.items())
        self._url = url
        self._headers = list(headers or [])
        self._transports = list(transports) if transports is not None else None
        self._path = "/" + socketio_path.strip("/") + "/"
        self._start()
        try:
            await self._connect(names, auth, wait, wait_timeout)
        except BaseException:   # refused, failed, or cancelled: nothing stays running
            if self._running:
                self._apply(self.core.disconnect())
            raise

    async def _connect(self, names: list[str], auth: dict | None, wait: bool,
                       wait_timeout: float) -> None:
        # A first connection that fails raises (python-socketio); no reconnection for it.
        self.core.reconnection = False
        for name in names:
            self._apply(self.core.connect(name, auth))
        await self._changes.until(lambda: self.core.state is not ManagerState.OPENING)
        self.core.reconnection = self.reconnection
        if self.core.state is not ManagerState.OPEN:
            errors = {name: error.message for name, error in self._failures.items()}
            message = next(iter(errors.values()), "connection failed")
            cause, self._transport_failure = self._transport_failure, None
            await self._give_up()
            raise TransportError(message, errors) from cause
        if not wait:
            return

        def settled() -> bool:
            return all(self.core.namespace_state(name) is NamespaceState.CONNECTED
                       or name in self._failures for name in names) or not self._running

        await self._changes.until(settled, wait_timeout)
        if all(self.core.namespace_state(name) is NamespaceState.CONNECTED for name in names):
            return
        failures = {name: self._failures[name] for name in names if name in self._failures}
        await self._give_up()
        if not failures:
            raise ConnectionError("timed out waiting for the namespaces to connect")
        first = next(iter(failures.values()))
        if len(failures) == 1:
            message = first.message
        else:
            message = "; ".join(f"{name}: {error.message}" for name, error in failures.items())
        error = NamespaceRefusedError(first.namespace, first.message, first.data,
                                      {n: e.message for n, e in failures.items()},
                                      {n: e.data for n, e in failures.items()})
        error.args = (message,)
        raise error

    async def _give_up(self) -> None:
        """connect() failed: leave every namespace (this stops any reconnection) and wait."""
        self._apply(self.core.disconnect())
        await self.wait()

    def _start(self) -> None:
        """A new life: a fresh core (the rng goes on), the dispatcher and the timer."""
        loop = asyncio.get_running_loop()
        self.core = self._new_core()
        self.reconnect_delays_ms = []
        self._failures = {}
        self._transport_failure = None
        self._sids = {}
        self._callbacks.clear()
        self._events.clear()
        self._changes = Changes()   # a new one for this event loop
        self._done = asyncio.Event()
        self._finishing = None
        self._running = True
        self._dispatcher = loop.create_task(self._dispatch_loop(), name="sio-client-dispatch")
        self._timers = Timers(self.core.next_deadline, self._tick, self._now,
                              logger=logger, failure="the Socket.IO client's timer failed")
        self._timer = loop.create_task(self._timers.run(), name="sio-client-timer")

    # --- sending -------------------------------------------------------------------------------

    async def emit(self, event: str, data: Any = None, namespace: str | None = None,
                   callback: Callable[..., Any] | None = None) -> None:
        """Send ``event`` with ``data`` (a tuple: several arguments; None: none).

        ``callback(*args)`` runs when the server acknowledges it.  While the namespace is not
        connected the emit waits in the send buffer.
        """
        self._check_running()
        name = namespace or "/"
        args = _as_args(data)
        if callback is None:
            self._apply(self.core.emit(event, args, namespace=name, now=self._now()))
        else:
            ack_id, outputs = self.core.emit_with_ack(event, args, namespace=name, now=self._now())
            self._callbacks[(name, ack_id)] = callback
            self._apply(outputs)
        await self._backpressure()

    async def send(self, data: Any, namespace: str | None = None,
                   callback: Callable[..., Any] | None = None) -> None:
        """``emit("message", data, ...)``."""
        await self.emit("message", data, namespace=namespace, callback=callback)

    async def call(self, event: str, data: Any = None, namespace: str | None = None,
                   timeout: float | None = 60) -> Any:
        """Emit ``event`` and wait for its ack: returns its one argument, a tuple of several,
        or None.  Raises TimeoutError after ``timeout`` seconds (the core's ack timer) and
        :class:`ConnectionError` if the connection that carried it is lost.  With ``retries``
        the emit is queued instead: each attempt waits ``ack_timeout`` and a lost connection
        is one more failed attempt; TimeoutError comes after the last one (``timeout`` is
        not used)."""
        self._check_running()
        name = namespace or "/"
        future = asyncio.get_running_loop().create_future()
        ack_id, outputs = self.core.emit_with_ack(event, _as_args(data), namespace=name,
                                                  timeout=timeout, now=self._now())
        self._waiters[(name, ack_id)] = future
        try:
            self._apply(outputs)
            await self._backpressure()
            args = await future
        finally:
            self._waiters.pop((name, ack_id), None)
        if not args:
            return None
        return args[0] if len(args) == 1 else tuple(args)

    def _check_running(self) -> None:
        if not self._running:
            raise LocalProtocolError("the client is not connected: call connect() first")

    async def _backpressure(self) -> None:
        link = self._link
        if link is not None and len(link.outbox) >= self.max_queue:
            await self._changes.until(lambda: self._link is not link or len(link.outbox) < self.max_queue)

    # --- disconnecting, waiting -------------------------------------------------------------------

    async def disconnect(self, namespace: str | None = None) -> None:
        """Leave ``namespace`` (every namespace if None; the connection closes with the last).

        No reconnection follows.  Waits until the client has shut down, unless called from a
        handler (then it returns at once).
        """
        if not self._running:
            return
        self._apply(self.core.disconnect(namespace))
        if namespace is None and not self._in_dispatcher():
            await self.wait()

    async def wait(self) -> None:
        """Wait until the client is done: disconnected and not reconnecting any more."""
        if self._done is not None:
            await self._done.wait()

    def _in_dispatcher(self) -> bool:
        return self._dispatcher is not None and asyncio.current_task() is self._dispatcher

    # --- applying the core's outputs --------------------------------------------------------------

    def _apply(self, outputs: Sequence[Output]) -> None:
        """Carry out the core's outputs, in order.  Synchronous: the order of the ``Send``s is
        the order on the wire; the writer task does the sending."""
        for output in outputs:
            if isinstance(output, Send):
                if self._link is not None:
                    self._link.outbox.extend(output.messages)
            elif isinstance(output, OpenEngine):
                self._open_link()
            elif isinstance(output, CloseEngine):
                self._retire_link()
            elif isinstance(output, Connected):
                self._sids[output.namespace] = output.sid
                self._failures.pop(output.namespace, None)
                self._queue(self._trigger, "connect", output.namespace, ())
            elif isinstance(output, ConnectError):
                self._failures[output.namespace] = output
                error: dict[str, Any] = {"message": output.message}
                if output.data is not None:
                    error["data"] = output.data
                self._queue(self._trigger, "connect_error", output.namespace, (error,))
            elif isinstance(output, EventReceived):
                self._queue(self._trigger, output.event, output.namespace, output.args,
                            output.ack_id)
            elif isinstance(output, AckReceived):
                self._ack_arrived(output)
            elif isinstance(output, (AckTimedOut, AckCancelled)):
                self._ack_lost(output)
            elif isinstance(output, Disconnected):
                self._sids.pop(output.namespace, None)
                self._queue(self._trigger, "disconnect", output.namespace, (output.reason,))
            elif isinstance(output, ReconnectScheduled):
                logger.info("reconnection attempt %d in %d ms", output.attempt, output.delay_ms)
                self.reconnect_delays_ms.append(output.delay_ms)
                del self.reconnect_delays_ms[:-MAX_RECORDED_DELAYS]
            elif isinstance(output, ReconnectAttempt):
                self._queue(self._trigger, "reconnect_attempt", None, (output.attempt,))
            elif isinstance(output, Reconnected):
                self._queue(self._trigger, "reconnect", None, (output.attempt,))
            elif isinstance(output, ReconnectError):
                self._queue(self._trigger, "reconnect_error", None, (output.error,))
            elif isinstance(output, ReconnectFailed):
                self._queue(self._trigger, "reconnect_failed", None, ())
        if (self._running and self._finishing is None
                and self.core.state is ManagerState.CLOSED):
            self._finishing = asyncio.get_running_loop().create_task(self._finish())
        deadline = self.core.next_deadline()
        if self._timers is not None and deadline is not None:
            self._timers.wake(deadline)   # only if it comes before the one the timer sleeps until
        self._changes.pulse()

    def _ack_arrived(self, output: AckReceived) -> None:
        key = (output.namespace, output.ack_id)
        future = self._waiters.get(key)
        if future is not None:
            if not future.done():
                future.set_result(output.args)
            return
        callback = self._callbacks.pop(key, None)
        if callback is not None:
            self._queue(self._run_callback, callback, output.args)

    def _ack_lost(self, output: AckTimedOut | AckCancelled) -> None:
        key = (output.namespace, output.ack_id)
        self._callbacks.pop(key, None)
        future = self._waiters.get(key)
        if future is None or future.done():
            return
        if isinstance(output, AckTimedOut):
            future.set_exception(TimeoutError(f"no ack for {output.namespace} #{output.ack_id}"))
        else:
            future.set_exception(ConnectionError(f"disconnected before the ack ({output.reason})"))

    def _queue(self, function: Callable[..., Any], *args: Any) -> None:
        self._events.append((function, args))

    # --- the Engine.IO connection -------------------------------------------------------------------

    def _open_link(self) -> None:
        eio = EngineIOClient(self.engineio_rng, **self.engineio_options)
        link = _Link(eio)
        eio.on("message", lambda data: self._on_eio_message(link, data))
        eio.on("disconnect", lambda reason: self._on_eio_disconnect(link, reason))
        self._link = link
        link.open_task = asyncio.get_running_loop().create_task(self._open(link),
                                                                name="sio-client-open")

    async def _open(self, link: _Link) -> None:
        """Open one Engine.IO connection and tell the core how it went."""
        try:
            await link.eio.connect(self._url, transports=self._transports, path=self._path,
                                   headers=self._headers)
        except Exception as exc:   # whatever it is, the core must hear that opening failed
            logger.info("Engine.IO connection failed: %r", exc)
            self._transport_failure = exc
            if self._link is link:
                self._link = None
                link.retired = True
                self._apply(self.core.engine_failed(_describe(exc), self._now()))
            return
        if link.retired:   # the core gave up on it meanwhile
            await link.eio.disconnect()
            return
        if link.lost_reason is not None or link.eio.state is EngineClientState.CLOSED:
            self._link = None
            link.retired = True
            reason = link.lost_reason or link.eio.disconnect_reason or TRANSPORT_CLOSE
            self._apply(self.core.engine_failed(reason, self._now()))
            return
        link.opened = True
        link.writer = asyncio.get_running_loop().create_task(self._write_loop(link),
                                                             name="sio-client-write")
        self._apply(self.core.engine_opened(self._now()))

    async def _write_loop(self, link: _Link) -> None:
        """Send the link's messages one after the other (a packet's attachments stay together)."""
        while True:
            await self._changes.until(lambda: bool(link.outbox) or link.retired)
            if not link.outbox:
                return
            message = link.outbox.popleft()
            link.writing = True
            try:
                await link.eio.send(message)
            except LablibError as exc:   # e.g. a closed session: Engine.IO tells us separately
                logger.info("send failed: %r", exc)
            finally:
                link.writing = False
                self._changes.pulse()

    def _retire_link(self) -> None:
        """CloseEngine: the core no longer counts the current connection; close it."""
        link, self._link = self._link, None
        if link is None:
            return
        link.retired = True
        task = asyncio.get_running_loop().create_task(self._close_link(link),
                                                      name="sio-client-close")
        self._closing_links.add(task)
        task.add_done_callback(self._closing_links.discard)

    async def _close_link(self, link: _Link) -> None:
        if not link.opened:
            if link.open_task is not None and not link.open_task.done():
                link.open_task.cancel()
                await asyncio.gather(link.open_task, return_exceptions=True)
            return
        if link.writer is not None:   # the last packets (a DISCONNECT) go out first
            close_timeout = self.engineio_options.get("close_timeout", 2.0)
            done, _ = await asyncio.wait([link.writer], timeout=close_timeout)
            if not done:
                link.writer.cancel()
        await link.eio.disconnect()

    async def _on_eio_message(self, link: _Link, data: str | bytes) -> None:
        if link is not self._link or not link.opened:
            return   # a connection the core is done with
        self._apply(self.core.receive(data, self._now()))
        if len(self._events) >= self.max_queue:   # backpressure: Engine.IO stops reading
            await self._changes.until(lambda: len(self._events) < self.max_queue or not self._running)

    def _on_eio_disconnect(self, link: _Link, reason: str) -> None:
        if link is not self._link or link.retired:
            return
        if not link.opened:
            link.lost_reason = reason   # _open reports it
            return
        self._link = None
        link.retired = True
        link.outbox.clear()   # handed to a dead connection: lost (at most once)
        self._apply(self.core.engine_closed(reason, self._now()))

    # --- the timer, the handlers, the end ---------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _tick(self, now: float) -> None:
        """The timer's work (:class:`lablib._timers.Timers`): fire what is due in the core."""
        self._apply(self.core.tick(now))

    async def _dispatch_loop(self) -> None:
        """Run the handlers and callbacks one at a time, in the order things happened."""
        while True:
            await self._changes.until(lambda: bool(self._events))
            item = self._events.popleft()
            self._changes.pulse()
            if item is _STOP:
                return
            function, args = item
            try:
                await function(*args)
            except Exception:
                logger.exception("a handler raised")

    def _handler(self, event: str, namespace: str | None) -> tuple[Callable[..., Any] | None, bool]:
        """The handler for ``event`` and whether it is a catch-all (gets the event name)."""
        if namespace is None:
            return self.manager_handlers.get(event), False
        handlers = self.handlers.get(namespace, {})
        if event in handlers:
            return handlers[event], False
        if event not in ("connect", "connect_error", "disconnect") and "*" in handlers:
            return handlers["*"], True
        return None, False

    async def _trigger(self, event: str, namespace: str | None, args: tuple,
                       ack_id: int | None = None) -> None:
        handler, catch_all = self._handler(event, namespace)
        result = None
        if handler is not None:
            call_args = (event, *args) if catch_all else args
            if event == "disconnect" and not _accepts(handler, len(call_args)):
                call_args = ()   # a disconnect() handler without the reason parameter
            result = handler(*call_args)
            if inspect.isawaitable(result):
                result = await result
        elif namespace is not None and event not in ("connect", "connect_error", "disconnect"):
            logger.info("no handler for %r in %s", event, namespace)
        if ack_id is not None and namespace is not None:
            self._apply(self.core.ack(ack_id, _as_args(result), namespace=namespace))

    async def _run_callback(self, callback: Callable[..., Any], args: tuple) -> None:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result

    async def _finish(self) -> None:
        """The core is CLOSED for good: close the connection, run the last handlers, stop."""
        assert self._dispatcher is not None and self._timer is not None
        self._timer.cancel()
        await asyncio.gather(self._timer, return_exceptions=True)
        for future in self._waiters.values():   # no ack can come any more
            if not future.done():
                future.set_exception(ConnectionError("the client is disconnected"))
        self._callbacks.clear()
        if self._closing_links:
            await asyncio.wait(set(self._closing_links))
        self._events.append(_STOP)
        self._changes.pulse()
        await self._dispatcher
        self._running = False
        self._changes.pulse()
        assert self._done is not None
        self._done.set()


def _as_args(data: Any) -> list[Any]:
    """python-socketio's convention: a tuple is several arguments, None is none."""
    if data is None:
        return []
    if isinstance(data, tuple):
        return list(data)
    return [data]


def _accepts(function: Callable[..., Any], count: int) -> bool:
    try:
        inspect.signature(function).bind(*range(count))
        return True
    except TypeError:
        return False
    except ValueError:   # no signature (a builtin): assume it does
        return True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (EngineIOError, HandshakeError)):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return str(exc) or type(exc).__name__
