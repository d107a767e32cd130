"""The asyncio Socket.IO v5 server: lablib's Engine.IO server below, the sans-I/O core inside.

:class:`~lablib.socketio.server_core.ServerCore` decides everything Socket.IO (which packet a
CONNECT gets, who receives a broadcast, when an ack has timed out) and
:class:`~lablib.engineio.server.Server` carries the messages; this driver connects the two and
runs the application's handlers.  Its API follows python-socketio's ``AsyncServer`` (``emit``,
``call``, ``send``, rooms, sessions), so notebooks can put the two side by side::

    sio = Server()

    @sio.event
    async def connect(sid, request, auth):
        if auth != {"token": "secret"}:
            raise ConnectionRefusedError("bad token", {"hint": "ask the teacher"})

    @sio.on("echo")
    async def echo(sid, text):
        return text                      # the return value is the acknowledgement

    async with serve(sio, "127.0.0.1", 0) as server:
        print(server.port)

``docs/architecture.md`` tells how one event flows through this driver, where its queues are
bounded, and where it behaves differently from python-socketio (Engine.IO times in
milliseconds, the Node server's disconnect reasons, one handler at a time per client, ...).
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import random
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .._timers import Timers
from ..engineio.server import Server as EngineServer
from ..engineio.server import Serving
from ..errors import LablibError, LocalProtocolError
from ..http import Request
from .acks import event_data
from .adapter import Adapter, InMemoryAdapter
from .local import LocalNamespace
from .packets import DEFAULT_MAX_ATTACHMENTS, Packet, PacketType
from ..events import Output
from .events import (AckCancelled, AckReceived, AckTimedOut, CloseEngine, ConnectReceived,
                     Disconnected, EventReceived, PersistSession, RestoreSession, Send,
                     Undelivered)
from .recovery import AsyncSessionStore, RecoveryOptions
from .server_cluster import ClusterMixin
from .server_core import DEFAULT_MAX_HELD_PACKETS, DEFAULT_REFUSAL, ServerCore

__all__ = ["Server", "serve", "ConnectionRefusedError", "DisconnectedError"]

logger = logging.getLogger(__name__)

_STOP = object()   #: in a worker's queue: the connection is gone, the worker ends here


class ConnectionRefusedError(LablibError):
    """Raise it in a connect handler to refuse the client: CONNECT_ERROR ``{message, data}``.

    ``data`` is left out of the packet when None.  (Named like python-socketio's
    ``socketio.exceptions.ConnectionRefusedError``; the builtin of the same name, raised in a
    handler, is accepted too and its first argument becomes the message.)
    """

    def __init__(self, message: str = DEFAULT_REFUSAL, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class DisconnectedError(LablibError):
    """The client is not connected (or left while we waited): no acknowledgement will come."""


class _Done:
    """What the room methods return: they have already acted; ``await`` on it is harmless."""

    __slots__ = ()

    def __await__(self):
        return iter(())

    def __repr__(self) -> str:
        return "<done>"


_DONE = _Done()


@dataclass(eq=False)
class _Connection:
    """One Engine.IO connection: its handshake request, its event queue and worker."""

    eio_sid: str
    request: Request
    # The queue: a deque, and the future the worker waits on when it is empty.  (An
    # asyncio.Queue does the same with bookkeeping we do not use - task_done, join - and, in
    # Python 3.11, a getpid() system call each time the worker starts waiting.)
    queue: deque = field(default_factory=deque)
    worker_waiting: asyncio.Future | None = None   #: resolved by the next put()
    space: asyncio.Event = field(default_factory=asyncio.Event)   #: set when the queue shrinks
    worker: asyncio.Task | None = None
    calls: int = 0   #: call()s to this client waiting for their ack (see _on_eio_message)

    def put(self, event: Any) -> None:
        self.queue.append(event)
        waiting = self.worker_waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def get(self, loop: asyncio.AbstractEventLoop) -> Any:
        while not self.queue:
            self.worker_waiting = loop.create_future()
            await self.worker_waiting
        self.worker_waiting = None
        return self.queue.popleft()


def _as_args(data: Any) -> tuple:
    """python-socketio's convention: None -> no argument, a tuple -> several, else one."""
    if data is None:
        return ()
    if isinstance(data, tuple):
        return data
    return (data,)


def _accepts(function: Callable[..., Any], count: int) -> bool:
    """Can ``function`` be called with ``count`` positional arguments?"""
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        return False
    except ValueError:   # no signature (some builtins): assume it can
        return True
    return True


async def _run(function: Callable[..., Any], *args: Any) -> Any:
    """Call a handler, plain function or coroutine function, and return its result."""
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Server(ClusterMixin):
    """A Socket.IO v5 server for asyncio, on lablib's Engine.IO server (path ``/socket.io/``).

    ``namespaces``: the namespaces clients may join besides those that have handlers
    (``["/"]`` when None, like python-socketio), or ``"*"`` for any.  ``rng`` draws the
    Engine.IO and the Socket.IO sids: by default the OS CSPRNG (``secrets.SystemRandom()``,
    sids are bearer tokens); pass a seeded ``random.Random(1)`` only to get the same sids on
    every run (notebooks, tests).  ``connect_timeout`` (ms): a connection that joins no
    namespace in that time is closed.  ``max_attachments`` bounds a client's binary packet,
    ``max_held_packets`` the packets it may send behind a CONNECT not yet answered (more
    closes its connection).
    ``max_queue``: events of one client waiting for its handlers before the server stops
    reading from it.  ``adapter_factory(namespace)`` makes each namespace's adapter: the room
    registry, in-memory by default; ``adapter_factory=RedisAdapter.factory(url)``
    (:mod:`lablib.socketio.redis_adapter`) makes this server one of a cluster that shares
    broadcasts, rooms and queries over Redis (see :mod:`lablib.socketio.server_cluster` for the
    cluster-wide methods).  Adapters start with the server (a Redis that does not answer
    then raises :class:`~lablib.errors.AdapterError`) and close with it.

    Sending: an emit to one client (``to=sid``), a ``call`` and an acknowledgement wait while
    that client does not read (backpressure on the sender).  A broadcast - to a room, to
    several, to the whole namespace, with or without ``callback`` - is encoded once and
    handed to every member without waiting for any one of them: up to ``max_write_buffer``
    bytes (4 MiB) may wait for a member, and a member with more than that still waiting is
    disconnected ("transport error", logged), so a slow reader never delays the others and
    the memory it can pin is bounded.  An emit whose ``to`` reaches nobody is a no-op,
    logged at debug level and counted in :attr:`undelivered`.

    The Engine.IO settings go, by name, to :class:`lablib.engineio.server.Server` (see there;
    times in milliseconds as on the wire, driver limits in seconds and bytes): ``path``,
    ``ping_interval``, ``ping_timeout``, ``cors_allowed_origins``, ``cors_credentials``,
    ``max_payload``, ``upgrade_timeout``, ``transports``, ``allow_upgrades``,
    ``allow_request``, ``max_buffered_packets``, ``max_request_size``, ``request_timeout``,
    ``close_timeout``, ``max_write_buffer``.  ``sio.eio`` is that server (its ``sessions``
    are the Engine.IO connections), ``sio.core`` the :class:`ServerCore`.

    ``connection_state_recovery``: None (off, the default) or a dict such as
    ``{"max_disconnection_duration": 120000, "skip_middlewares": True}`` (Node's option; see
    :mod:`lablib.socketio.recovery`).  With it, a client that drops and comes back within the
    duration keeps its sid, rooms and session dict (:meth:`get_session`) and receives every
    emit it missed; :meth:`recovered` tells.  With ``skip_middlewares`` the connect handler
    does not run for a recovered client (it is lablib's middleware: Node runs its ``use()``
    middlewares only, then still fires "connection"; lablib has one connect handler for both).

    Where the sessions are kept: in this process's memory by default.  ``session_store``, a
    ``factory(namespace, options) -> AsyncSessionStore``, puts them elsewhere - e.g.
    :meth:`lablib.socketio.redis_recovery.RedisSessionStore.factory` - and an adapter factory
    that offers one (``RedisAdapter.factory(url)``: its ``session_store``) is used when none is
    given, so with the Redis adapter a session survives a restart and a move to another
    process.  Such a store is awaited here, around the core (the core asks with
    ``RestoreSession``/``PersistSession`` and takes ``offset=``): one append at a time per
    namespace, in the order of the emits.  A store that fails (Redis away) raises
    :class:`~lablib.errors.AdapterError` from ``emit``; a failed restore or persist is logged
    and counted (:attr:`recovery_failures`) and the client is not recovered.
    """

    def __init__(self, namespaces: Iterable[str] | str | None = None, *,
                 rng: random.Random | None = None, path: str = "/socket.io/",
                 ping_interval: int = 25000, ping_timeout: int = 20000,
                 cors_allowed_origins: str | Sequence[str] | None = None,
                 cors_credentials: bool = True,
                 connect_timeout: int = 45000, max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
                 max_held_packets: int = DEFAULT_MAX_HELD_PACKETS, max_queue: int = 256,
                 adapter_factory: Callable[[str], Adapter] | None = None,
                 max_payload: int = 1_000_000, upgrade_timeout: int = 10000,
                 transports: Sequence[str] = ("polling", "websocket"),
                 allow_upgrades: bool = True,
                 allow_request: Callable[[Request], bool | str | None] | None = None,
                 max_buffered_packets: int = 10_000, max_request_size: int = 16 * 1024,
                 request_timeout: float = 60.0, close_timeout: float = 5.0,
                 max_write_buffer: int = 4 * 1024 * 1024,
                 connection_state_recovery: dict | bool | None = None,
                 session_store: Callable[[str, RecoveryOptions], AsyncSessionStore] | None = None
                 ) -> None:
        rng = rng if rng is not None else secrets.SystemRandom()
        if connection_state_recovery and session_store is None:   # the adapter's, if any
            session_store = getattr(adapter_factory, "session_store", None)
        self._store_factory = session_store if connection_state_recovery else None
        self._stores: dict[str, Any] = {}             # namespace -> AsyncSessionStore
        self._store_locks: dict[str, asyncio.Lock] = {}
        #: restores and persists the session store failed (logged; the client not recovered)
        self.recovery_failures = 0
        self._adapter_factory = adapter_factory or (lambda namespace: InMemoryAdapter())
        self._adapters: list[Any] = []       # every namespace's, to start and close them
        self._loop: asyncio.AbstractEventLoop | None = None
        self.eio = EngineServer(path=path, ping_interval=ping_interval, ping_timeout=ping_timeout,
                                cors_allowed_origins=cors_allowed_origins,
                                cors_credentials=cors_credentials, max_payload=max_payload,
                                upgrade_timeout=upgrade_timeout, transports=transports,
                                allow_upgrades=allow_upgrades, allow_request=allow_request,
                                max_buffered_packets=max_buffered_packets, rng=rng,
                                max_request_size=max_request_size,
                                request_timeout=request_timeout, close_timeout=close_timeout,
                                max_write_buffer=max_write_buffer)
        self.core = ServerCore(
            namespaces="*" if namespaces == "*" else list(namespaces or ["/"]),
            adapter_factory=self._make_adapter,
            rng=rng, connect_timeout=connect_timeout, max_attachments=max_attachments,
            max_held_packets=max_held_packets,
            connection_state_recovery=connection_state_recovery,
            session_data=lambda namespace, sid: self._sessions.get((namespace, sid)),
            driver_store=self._store_factory is not None)
        self.max_queue = max_queue
        self.handlers: dict[str, dict[str, Callable[..., Any]]] = {}   # namespace -> event -> f
        self.server_handlers: dict[str, dict[str, Callable[..., Any]]] = {}   # other servers'
        self._connections: dict[str, _Connection] = {}                 # eio sid -> connection
        self._eio_sid_of: dict[tuple[str, str], str] = {}              # (namespace, sid) -> eio sid
        #: packets that reached nobody: an emit whose ``to`` named no socket (an unknown or
        #: disconnected sid, an empty room), one kept for a connecting client that was then
        #: refused, or one for a client whose connection closed before it was written.  Each
        #: is a no-op, logged at debug level (logger "lablib.socketio.server").
        self.undelivered = 0
        self._acks: dict[tuple[str, str, int], Any] = {}               # -> Future or callback
        self._sessions: dict[tuple[str, str], dict] = {}
        self._tasks: set[asyncio.Task] = set()     # workers and async ack callbacks
        self._timer_task: asyncio.Task | None = None
        self._mounted: list[Server] = []   #: other Socket.IO servers served on our port
        self._timers: Timers | None = None
        self.eio.on("connect", self._on_eio_connect)
        self.eio.on("message", self._on_eio_message)
        self.eio.on("disconnect", self._on_eio_disconnect)

    # --- handlers --------------------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any] | None = None,
           namespace: str | None = None):
        """Register a handler: ``sio.on("chat", f, namespace="/chat")`` or as a decorator.

        ``"connect"``: ``f(sid, request, auth)`` (or ``f(sid, request)``); return False or
        raise :class:`ConnectionRefusedError` to refuse.  ``"disconnect"``: ``f(sid, reason)``
        (or ``f(sid)``).  Any other event: ``f(sid, *args)``, whose return value is the
        acknowledgement (a tuple for several values).  ``"*"``: ``f(event, sid, *args)`` for
        events without a handler of their own.  A handler's namespace is accepted by the server.
        """
        namespace = namespace or "/"

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.core.add_namespace(namespace)
            self.handlers.setdefault(namespace, {})[event] = function
            return function

        return register(handler) if handler is not None else register

    def event(self, *args: Any, namespace: str | None = None):
        """``@sio.event`` (the function's name is the event) or ``@sio.event(namespace="/x")``."""
        if len(args) == 1 and callable(args[0]):
            return self.on(args[0].__name__, args[0], namespace=namespace)
        if args:
            raise TypeError("use @sio.event or @sio.event(namespace=...)")
        return lambda function: self.on(function.__name__, function, namespace=namespace)

    # --- sending -----------------------------------------------------------------------------

    async def emit(self, event: str, data: Any = None, to: str | Iterable[str] | None = None,
                   room: str | Iterable[str] | None = None,
                   skip_sid: str | Iterable[str] | None = None, namespace: str | None = None,
                   callback: Callable[..., Any] | None = None) -> None:
        """Send ``event`` to ``to`` (a sid, a room, or a list of them; everyone in the namespace
        if None), except ``skip_sid``.  ``data``: one argument, a tuple of several, or None.

        With ``callback``, each recipient is asked for an acknowledgement and
        ``callback(*args)`` runs when it comes (no timeout: use :meth:`call` for that).

        To one connected sid, waits while that client does not read; anything else is a
        broadcast, which waits for no member (see "Sending" in the class docstring).  From a
        connect handler, an emit to the connecting client (by sid, or by a room it entered)
        goes out right after the CONNECT answer.  A ``to`` that reaches nobody (an unknown or
        gone sid, an empty room, a namespace nobody joined) is a no-op, logged at debug level
        and counted in :attr:`undelivered`.

        With a cluster adapter (:class:`~lablib.socketio.redis_adapter.RedisAdapter`) anything
        but an emit to one local sid is also published once for the other servers (after the
        local half went out; reaching no local socket is then not "undelivered"); if Redis
        does not take it, :class:`~lablib.errors.AdapterError` is raised (logged and counted
        by the adapter).  A ``callback`` then also gets the acks of the other servers'
        clients, each with its first argument only (all the wire carries); use
        :meth:`emit_with_ack` to gather them all with a timeout.
        """
        namespace = namespace or "/"
        args = _as_args(data)
        to = to if to is not None else room
        skip = skip_sid if skip_sid is not None else ()
        if not self._has_namespace(namespace):   # e.g. a "*" namespace nobody asked for yet
            if to is not None:
                self._undelivered(Undelivered(namespace, str(to), "no such namespace"))
            return
        # One client named by its sid: its socket's backpressure applies (we wait while it
        # does not read).  Anything else is a broadcast: written to every member's bounded
        # buffer without waiting for any one of them (see _write).
        direct = isinstance(to, str) and self.core.is_connected(to, namespace)
        offset = None
        if callback is None and self._store_factory is not None:
            offset, outputs = await self._logged_emit(event, args, namespace, to, skip)
        elif callback is None:
            outputs = self.core.emit(event, args, namespace=namespace, to=to, skip_sids=skip,
                                     now=self._now())
        else:
            ack_id, reached, outputs = self.core.emit_with_acks(event, args, namespace=namespace,
                                                                to=to, skip_sids=skip)
            for sid in reached:
                self._acks[(namespace, sid, ack_id)] = callback
        adapter = self.core.adapter(namespace)
        clustered = not direct and getattr(adapter, "clustered", False)
        if clustered:   # the members may be on other servers
            outputs = [o for o in outputs if not isinstance(o, Undelivered)]
        await self._apply(outputs, wait=direct)
        if not direct:
            if clustered:   # the offset rides along: the other servers deliver it as is
                published = args if offset is None else (*args, offset)
                await self._publish(adapter, namespace, event, published, to, skip, callback)
            await asyncio.sleep(0)   # let the loop write to the sockets that can take it

    async def _logged_emit(self, event: str, args: tuple, namespace: str,
                           to: str | Iterable[str] | None, skip: str | Iterable[str]
                           ) -> tuple[str, list[Output]]:
        """The driver's store logs the packet (its offset), then the core delivers it with
        that offset - under the namespace's lock, so offsets go out in the order they were
        given and no restore reads the log between the two."""
        data = event_data(event, args)   # a bad event name fails before logging
        rooms = None if to is None else [to] if isinstance(to, str) else list(to)
        skip = [skip] if isinstance(skip, str) else list(skip)
        store = self._store(namespace)
        async with self._store_lock(namespace):
            offset = await store.append(data, rooms, skip, self._now())
            outputs = self.core.emit(event, args, namespace=namespace, to=to, skip_sids=skip,
                                     now=self._now(), offset=offset)
        return offset, outputs

    def _store(self, namespace: str) -> Any:
        store = self._stores.get(namespace)
        if store is None:
            assert self._store_factory is not None and self.core.recovery is not None
            store = self._stores[namespace] = self._store_factory(namespace, self.core.recovery)
        return store

    def _store_lock(self, namespace: str) -> asyncio.Lock:
        return self._store_locks.setdefault(namespace, asyncio.Lock())

    async def _restore_session(self, action: RestoreSession) -> None:
        """Ask the driver's store for a kept session, and hand the answer to the core."""
        restored = None
        try:
            async with self._store_lock(action.namespace):
                restored = await self._store(action.namespace).restore(
                    action.pid, action.offset, self._now())
                outputs = self.core.session_restored(action.eio_sid, action.namespace,
                                                     restored, self._now())
        except (LablibError, OSError) as exc:
            self.recovery_failures += 1
            logger.error("the session of a reconnecting client was not restored: %s", exc)
            outputs = self.core.session_restored(action.eio_sid, action.namespace, None,
                                                 self._now())
        await self._apply(outputs)

    async def _persist_session(self, action: PersistSession) -> None:
        try:
            await self._store(action.namespace).persist(action.session)
        except (LablibError, OSError) as exc:
            self.recovery_failures += 1
            logger.error("the session of %s was not kept: %s", action.session.sid, exc)

    async def send(self, data: Any, to: str | Iterable[str] | None = None,
                   room: str | Iterable[str] | None = None,
                   skip_sid: str | Iterable[str] | None = None, namespace: str | None = None,
                   callback: Callable[..., Any] | None = None) -> None:
        """:meth:`emit` of the event ``"message"``."""
        await self.emit("message", data, to=to, room=room, skip_sid=skip_sid,
                        namespace=namespace, callback=callback)

    async def call(self, event: str, data: Any = None, to: str | None = None,
                   sid: str | None = None, namespace: str | None = None,
                   timeout: float | None = 60) -> Any:
        """Send ``event`` to one client and wait for its acknowledgement.

        Returns what the client acknowledged with: None for nothing, the value for one, a
        tuple for several (as python-socketio).  Raises TimeoutError after ``timeout``
        seconds, :class:`DisconnectedError` if the client is or gets disconnected.
        """
        namespace = namespace or "/"
        sid = to if to is not None else sid
        if sid is None:
            raise TypeError("call() needs the sid of one client (to=...)")
        if not self.core.is_connected(sid, namespace):
            raise DisconnectedError(f"{sid!r} is not connected to {namespace!r}")
        loop = asyncio.get_running_loop()
        ack_id, outputs = self.core.emit_with_ack(sid, event, _as_args(data), namespace=namespace,
                                                  timeout=timeout, now=loop.time())
        key = (namespace, sid, ack_id)
        future = self._acks[key] = loop.create_future()
        self._wake()   # its timeout is a new deadline
        conn = self._connections.get(self._eio_sid_of.get((namespace, sid), ""))
        if conn is not None:
            conn.calls += 1
            conn.space.set()   # a receive path waiting for room must read on: see there
        try:
            await self._apply(outputs)
            args = await future
        finally:
            if self._acks.get(key) is future:
                del self._acks[key]
            if conn is not None:
                conn.calls -= 1
        if not args:
            return None
        return args[0] if len(args) == 1 else args

    # --- rooms, sessions, disconnection ------------------------------------------------------

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        """Put ``sid`` in ``room`` (also from its connect handler, before it is accepted)."""
        self.core.enter_room(sid, room, namespace or "/")
        return _DONE

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        self.core.leave_room(sid, room, namespace or "/")
        return _DONE

    def close_room(self, room: str, namespace: str | None = None) -> _Done:
        """Take every member out of ``room``."""
        namespace = namespace or "/"
        for sid in self.core.adapter(namespace).members(room):
            self.core.leave_room(sid, room, namespace)
        return _DONE

    def transport(self, sid: str, namespace: str | None = None) -> str:
        """The transport ``sid``'s connection runs on now: ``"polling"`` or ``"websocket"``.
        KeyError for a sid that is not connected."""
        return self.eio.transport(self._eio_sid(sid, namespace))

    def request(self, sid: str, namespace: str | None = None) -> Request:
        """The HTTP request that opened ``sid``'s Engine.IO session (query, cookies, headers).
        KeyError for a sid that is not connected."""
        return self.eio.request(self._eio_sid(sid, namespace))

    def _eio_sid(self, sid: str, namespace: str | None) -> str:
        try:
            return self.core.eio_sid_of(sid, namespace or "/")
        except LocalProtocolError:
            raise KeyError(sid) from None

    def recovered(self, sid: str, namespace: str | None = None) -> bool:
        """Was ``sid``'s session restored by connection state recovery?"""
        return self.core.is_recovered(sid, namespace or "/")

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        """The rooms ``sid`` is in, its own room first."""
        return self.core.rooms(sid, namespace or "/")

    async def get_session(self, sid: str, namespace: str | None = None) -> dict:
        """The dict the application keeps for ``sid`` (a new empty one the first time)."""
        return self._sessions.setdefault((namespace or "/", sid), {})

    async def save_session(self, sid: str, session: dict, namespace: str | None = None) -> None:
        self._sessions[(namespace or "/", sid)] = session

    async def disconnect(self, sid: str, namespace: str | None = None) -> None:
        """Send DISCONNECT to ``sid`` in ``namespace``; its disconnect handler is queued with
        the reason "server namespace disconnect".  Nothing happens if it is not connected."""
        namespace = namespace or "/"
        if self.core.is_connected(sid, namespace):
            await self._apply(self.core.disconnect(sid, namespace))

    # --- starting and stopping ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.eio.port

    def mount(self, other: "Server | EngineServer") -> "Server | EngineServer":
        """Serve ``other`` on this server's port too, under its own ``path``: another Socket.IO
        server (its own namespaces, handlers, adapters and timers) or a plain Engine.IO server.

        Start and close only this server: it starts and closes what is mounted on it.
        """
        if isinstance(other, Server):
            self.eio.mount(other.eio)
            self._mounted.append(other)
        else:
            self.eio.mount(other)
        return other

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "Server":
        prepared: list[Server] = []
        try:
            for server in (self, *self._mounted):
                await server._start_adapters()
                prepared.append(server)
            await self.eio.start(host, port)
        except BaseException:
            for server in prepared:
                await server._close_adapters()
            raise
        for server in (self, *self._mounted):
            assert server._timers is not None
            server._timer_task = asyncio.create_task(server._timers.run())
        return self

    async def _start_adapters(self) -> None:
        """Bind to the running loop and start every namespace's adapter (a Redis that does not
        answer raises AdapterError, and the adapters started so far are closed again)."""
        self._loop = asyncio.get_running_loop()
        self._timers = Timers(self.core.next_deadline, self._tick, self._loop.time,
                              logger=logger, failure="the Socket.IO timers failed")
        started = []
        try:
            for adapter in list(self._adapters):
                await _start_adapter(adapter)
                started.append(adapter)
        except BaseException:
            for adapter in started:
                await _close_adapter(adapter)
            self._loop = None
            raise

    async def _close_adapters(self) -> None:
        for adapter in self._adapters:
            await _close_adapter(adapter)

    async def close(self) -> None:
        """Every socket is disconnected ("server shutting down"), then Engine.IO closes.

        As with the reference server, no DISCONNECT packets are sent: the Engine.IO close
        packet ends every namespace at once.  The workers finish their queued handlers
        (within the Engine.IO ``close_timeout``), then whatever is left is cancelled.  The
        servers mounted on this one close with it.
        """
        for server in (self, *self._mounted):
            await server._shut_down_sockets()
        await self.eio.close()
        for server in (self, *self._mounted):
            await server._finish()

    async def _shut_down_sockets(self) -> None:
        now = asyncio.get_running_loop().time()
        for eio_sid in list(self._connections):
            await self._apply(self.core.engine_closed(eio_sid, "server shutting down", now))

    async def _finish(self) -> None:
        """After Engine.IO closed: stop the timers, let the workers finish, close adapters."""
        if self._timer_task is not None:
            self._timer_task.cancel()
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.eio.close_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._timer_task] if self._timer_task else []),
                             return_exceptions=True)
        await self._close_adapters()
        for store in self._stores.values():   # after the sessions of the close were kept
            if hasattr(store, "close"):
                await store.close()

    async def wait_closed(self) -> None:
        await self.eio.wait_closed()

    # --- Engine.IO's handlers: the receive path ---------------------------------------------

    async def _on_eio_connect(self, eio_sid: str, request: Request) -> None:
        conn = _Connection(eio_sid, request)
        conn.worker = self._start_task(self._work(conn))
        self._connections[eio_sid] = conn
        await self._apply(self.core.engine_opened(eio_sid, self._now()))
        self._wake()   # its connect_timeout is a new deadline

    async def _on_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        conn = self._connections.get(eio_sid)
        # Backpressure: wait for the worker to catch up.  Not while a call() to this client
        # waits for its ack: the ack may be behind this message, and the handler that the
        # worker is running may be the one waiting for it.  The queue may then grow past
        # max_queue, for as long as the call's timeout at most.
        while conn is not None and len(conn.queue) >= self.max_queue and not conn.calls:
            conn.space.clear()
            await conn.space.wait()
        await self._apply(self.core.receive(eio_sid, data, self._now()))

    async def _on_eio_disconnect(self, eio_sid: str, reason: str) -> None:
        await self._apply(self.core.engine_closed(eio_sid, reason, self._now()))
        conn = self._connections.pop(eio_sid, None)
        if conn is not None:
            conn.put(_STOP)

    # --- carrying out the core's outputs -----------------------------------------------------

    async def _apply(self, outputs: list[Output], wait: bool = True) -> None:
        """Do what the core asks, in order (docs/architecture.md, event flow step 2).  ``wait=False``:
        a broadcast, whose writes never wait for a client (see :meth:`_write`)."""
        for output in outputs:   # (the most frequent outputs are tested first)
            if isinstance(output, Send):
                await self._write(output.eio_sid, output.messages, wait)
            elif isinstance(output, EventReceived):
                self._enqueue(self._eio_sid_of.get((output.namespace, output.sid)), output)
            elif isinstance(output, AckReceived):
                self._settle_ack(output)
            elif isinstance(output, CloseEngine):
                await self.eio.disconnect(output.eio_sid)
            elif isinstance(output, (AckTimedOut, AckCancelled)):
                self._fail_ack(output)
            elif isinstance(output, ConnectReceived):
                self._enqueue(output.eio_sid, output)
            elif isinstance(output, Disconnected):
                self._enqueue(self._eio_sid_of.pop((output.namespace, output.sid), None), output)
            elif isinstance(output, Undelivered):
                self._undelivered(output)
            elif isinstance(output, RestoreSession):
                await self._restore_session(output)
            elif isinstance(output, PersistSession):
                await self._persist_session(output)

    def _undelivered(self, output: Undelivered) -> None:
        self.undelivered += 1
        logger.debug("nothing delivered to %s in %s: %s", output.to, output.namespace,
                     output.reason)

    async def _write(self, eio_sid: str, messages: tuple[str | bytes, ...], wait: bool) -> None:
        """Hand a packet's messages to Engine.IO, all of them before anything can wait, so a
        packet and its attachments are never interleaved with another packet's.

        ``wait``: then wait while the client does not read (backpressure on whoever sends to
        that one client).  A broadcast does not wait (``wait=False``): Engine.IO keeps what
        the client has not taken yet, up to ``max_write_buffer`` bytes, and disconnects a
        client past that - one slow member never delays the others.
        """
        if eio_sid not in self._connections:   # the connection is gone
            self._undelivered(Undelivered("?", eio_sid, "the connection closed"))
            return
        last = len(messages) - 1
        for index, message in enumerate(messages):
            await self.eio.send(eio_sid, message, wait=wait and index == last)

    def _enqueue(self, eio_sid: str | None, event: Output) -> None:
        conn = self._connections.get(eio_sid) if eio_sid is not None else None
        if conn is None:
            logger.debug("no connection for %s: dropped", event)
            return
        conn.put(event)

    def _settle_ack(self, output: AckReceived) -> None:
        waiter = self._acks.pop((output.namespace, output.sid, output.ack_id), None)
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                waiter.set_result(output.args)
        elif waiter is not None:
            try:
                result = waiter(*output.args)
                if inspect.isawaitable(result):   # an async callback runs on its own
                    self._start_task(result)
            except Exception:
                logger.exception("the ack callback failed")

    def _fail_ack(self, output: AckTimedOut | AckCancelled) -> None:
        waiter = self._acks.pop((output.namespace, output.sid, output.ack_id), None)
        if isinstance(waiter, asyncio.Future) and not waiter.done():
            if isinstance(output, AckTimedOut):
                waiter.set_exception(TimeoutError(f"no ack from {output.sid} for {output.ack_id}"))
            else:
                waiter.set_exception(DisconnectedError(f"{output.sid} left: {output.reason}"))

    # --- the worker: the application's handlers, one connection's events in order ------------

    async def _work(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            event = await conn.get(loop)
            conn.space.set()
            if event is _STOP:
                return
            try:
                if isinstance(event, ConnectReceived):
                    await self._handle_connect(conn, event)
                elif isinstance(event, EventReceived):
                    await self._handle_event(event)
                elif isinstance(event, Disconnected):
                    await self._handle_disconnect(event)
            except Exception:
                logger.exception("handling %s failed", event)

    async def _handle_connect(self, conn: _Connection, request: ConnectReceived) -> None:
        key = (request.namespace, request.sid)
        handler = self.handlers.get(request.namespace, {}).get("connect")
        message, data, accepted = DEFAULT_REFUSAL, None, True
        if request.recovered:   # connection state recovery: the session dict comes back
            restored = self.core.restored_data(request.sid, request.namespace)
            if restored is not None:
                self._sessions[key] = restored
            if self.core.recovery is not None and self.core.recovery.skip_middlewares:
                handler = None
        try:
            if handler is not None:
                args = (request.sid, conn.request, request.auth)
                if not _accepts(handler, 3):
                    args = args[:2]
                accepted = await _run(handler, *args) is not False
        except ConnectionRefusedError as exc:
            message, data, accepted = exc.message, exc.data, False
        except builtins.ConnectionRefusedError as exc:
            message, accepted = str(exc.args[0]) if exc.args else DEFAULT_REFUSAL, False
        except Exception:
            logger.exception("the connect handler of %s failed", request.namespace)
            accepted = False
        if not accepted:
            self._sessions.pop(key, None)
            await self._apply(self.core.refuse(request.eio_sid, request.namespace, message, data))
            return
        outputs = self.core.accept(request.eio_sid, request.namespace)
        if not outputs:   # the client went away meanwhile
            self._sessions.pop(key, None)
            return
        self._eio_sid_of[key] = request.eio_sid
        await self._apply(outputs)   # CONNECT, what the handler emitted, the held packets

    async def _handle_event(self, event: EventReceived) -> None:
        handlers = self.handlers.get(event.namespace, {})
        if event.event in handlers:
            handler, args = handlers[event.event], (event.sid, *event.args)
        elif "*" in handlers:
            handler, args = handlers["*"], (event.event, event.sid, *event.args)
        else:
            logger.debug("no handler for %r in %s", event.event, event.namespace)
            return
        result = await _run(handler, *args)
        if event.ack_id is not None and self.core.is_connected(event.sid, event.namespace):
            ack_args = [] if result is None else list(_as_args(result))
            await self._apply(self.core.ack(event.sid, event.ack_id, ack_args,
                                            namespace=event.namespace))

    async def _handle_disconnect(self, event: Disconnected) -> None:
        try:
            handler = self.handlers.get(event.namespace, {}).get("disconnect")
            if handler is not None:
                args = (event.sid, event.reason)
                await _run(handler, *(args if _accepts(handler, 2) else args[:1]))
        finally:
            self._sessions.pop((event.namespace, event.sid), None)

    # --- timers ------------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        """The timer task's tick (:class:`lablib._timers.Timers`)."""
        await self._apply(self.core.tick(now))

    def _wake(self) -> None:
        """A new deadline may come before the one the timer sleeps until.  (Deadlines that
        go away need no wake-up: the timer ticks for nothing and looks again.)"""
        if self._timers is not None:
            self._timers.wake()

    # --- adapters ------------------------------------------------------------------------------

    def _make_adapter(self, namespace: str) -> Adapter:
        """The core's adapter factory: the application's, bound to this server's namespace
        and started if the server runs already (a namespace created on a client's CONNECT)."""
        adapter = self._adapter_factory(namespace)
        if hasattr(adapter, "bind"):
            adapter.bind(LocalNamespace(self, namespace))
        self._adapters.append(adapter)
        if self._loop is not None and hasattr(adapter, "start"):
            self._start_task(self._start_late(adapter, namespace))
        return adapter

    async def _start_late(self, adapter: Any, namespace: str) -> None:
        """Start the adapter of a namespace created while running (its broadcasts stay local
        until it has subscribed; a failure is logged, the namespace works on its own)."""
        try:
            await adapter.start()
        except Exception:
            logger.exception("the adapter of %s could not start", namespace)

    async def _publish(self, adapter: Any, namespace: str, event: str, args: tuple,
                       to: str | Iterable[str] | None, skip: str | Iterable[str],
                       callback: Callable[..., Any] | None) -> None:
        """The remote half of a broadcast (the core delivered the local half): one message
        for the other servers.  With ``callback``, their clients' acks come back to it."""
        packet = Packet(PacketType.EVENT, namespace, [event, *args])
        opts = self._opts(to, skip)
        if callback is None:
            await adapter.publish(packet, opts)
        else:
            await adapter.publish_with_ack(packet, opts, lambda count: None,
                                           lambda value: callback(value), None)

    # --- helpers -------------------------------------------------------------------------------

    def _has_namespace(self, namespace: str) -> bool:
        try:
            self.core.adapter(namespace)
        except LocalProtocolError:
            return False
        return True

    def _now(self) -> float:
        # the loop we started in (asyncio.get_running_loop() costs a getpid() system call in
        # Python 3.11, on every message)
        return (self._loop or asyncio.get_running_loop()).time()

    def _start_task(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _start_adapter(adapter: Any) -> None:
    if hasattr(adapter, "start"):
        await adapter.start()


async def _close_adapter(adapter: Any) -> None:
    if hasattr(adapter, "close"):
        try:
            await adapter.close()
        except Exception:
            logger.exception("closing the adapter %r failed", adapter)


class serve(Serving):
    """``async with serve(sio, host, port) as server`` (or ``server = await serve(...)``).

    ``sio`` is a :class:`Server`, or a mapping ``{"event": handler, ...}`` (namespace "/")
    for a new Server built with the keyword options below (those of :class:`Server`, with the
    same defaults; giving any with a ready Server is a TypeError).  ``server`` is the Socket.IO
    server, started: ``server.port`` is the port it listens on.  Leaving the ``async with``
    closes it.
    """

    def __init__(self, sio: Server | Mapping[str, Callable[..., Any]],
                 host: str = "127.0.0.1", port: int = 0, *,
                 namespaces: Iterable[str] | str | None = None,
                 rng: random.Random | None = None, path: str = "/socket.io/",
                 ping_interval: int = 25000, ping_timeout: int = 20000,
                 cors_allowed_origins: str | Sequence[str] | None = None,
                 cors_credentials: bool = True,
                 connect_timeout: int = 45000, max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
                 max_held_packets: int = DEFAULT_MAX_HELD_PACKETS, max_queue: int = 256,
                 adapter_factory: Callable[[str], Adapter] | None = None,
                 max_payload: int = 1_000_000, upgrade_timeout: int = 10000,
                 transports: Sequence[str] = ("polling", "websocket"),
                 allow_upgrades: bool = True,
                 allow_request: Callable[[Request], bool | str | None] | None = None,
                 max_buffered_packets: int = 10_000, max_request_size: int = 16 * 1024,
                 request_timeout: float = 60.0, close_timeout: float = 5.0,
                 max_write_buffer: int = 4 * 1024 * 1024,
                 connection_state_recovery: dict | bool | None = None,
                 session_store: Callable[[str, RecoveryOptions], AsyncSessionStore] | None = None
                 ) -> None:
        options = dict(
            namespaces=namespaces, rng=rng, path=path, ping_interval=ping_interval,
            ping_timeout=ping_timeout, cors_allowed_origins=cors_allowed_origins,
            cors_credentials=cors_credentials, connect_timeout=connect_timeout,
            max_attachments=max_attachments, max_held_packets=max_held_packets,
            max_queue=max_queue,
            adapter_factory=adapter_factory, max_payload=max_payload,
            upgrade_timeout=upgrade_timeout, transports=transports,
            allow_upgrades=allow_upgrades, allow_request=allow_request,
            max_buffered_packets=max_buffered_packets, max_request_size=max_request_size,
            request_timeout=request_timeout, close_timeout=close_timeout,
            max_write_buffer=max_write_buffer,
            connection_state_recovery=connection_state_recovery, session_store=session_store)
        if isinstance(sio, Server):
            defaults = inspect.signature(serve).parameters
            changed = sorted(name for name, value in options.items()
                             if value is not defaults[name].default)
            if changed:
                raise TypeError(f"options go to Server(...) when a Server is given: {changed}")
            self.server = sio
        else:
            self.server = Server(**options)
            for event, handler in sio.items():
                self.server.on(event, handler)
        self.host, self.port = host, port
