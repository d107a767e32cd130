"""A Redis adapter that speaks ``@socket.io/redis-adapter`` 8.x: one cluster with Node servers.

::

    from lablib.socketio.redis_adapter import RedisAdapter

    sio = Server(adapter_factory=RedisAdapter.factory("redis://127.0.0.1:6379"))

Every server of the cluster - lablib or Node ``socket.io`` with the official adapter - publishes
its broadcasts on Redis and delivers the others' to its own members.  The bytes and channels are
those of :mod:`lablib.socketio.redis_protocol` (the sans-I/O half, checked against Node); this
module is the I/O: two Redis connections per factory, as the reference's ``pubClient`` and
``subClient`` (a subscribed connection can do nothing else), shared by the namespaces' adapters.

What each adapter does (one per namespace, like the reference):

* ``start()``: PSUBSCRIBE ``socket.io#<nsp>#*``, SUBSCRIBE the request, response and own-response
  channels, and wait until Redis confirmed them (so a broadcast published after start reaches us).
* ``publish(packet, opts)``: the remote half of a broadcast, one PUBLISH of ``[uid, packet,
  opts]``; the core delivered the local half.  Receiving one (:func:`receive_broadcast` decides:
  own uid, other namespace, a room we do not have) delivers to our members through the core.
* Requests to the cluster wait for an answer from each other server (``PUBSUB NUMSUB`` of the
  request channel counts them) for ``requests_timeout`` seconds (5, the reference's default).
* Redis unreachable at start: :class:`~lablib.errors.AdapterError` naming the URL.  While
  running: a broadcast that cannot be published is logged (error) and counted
  (:attr:`RedisAdapter.publish_failures`), and :class:`AdapterError` is raised to the caller -
  never a silent local-only broadcast; the subscriber reconnects on its own (redis-py
  resubscribes) with a growing delay, logged, counted in :attr:`RedisConnection.reconnects`.

Connection state recovery: the reference pub/sub adapter has none.  With
``connection_state_recovery`` on, a Server using this adapter keeps its sessions and packet log
in the same Redis (:meth:`RedisConnection.session_store`, :mod:`lablib.socketio.redis_recovery`,
in ``@socket.io/redis-streams-adapter``'s format), and its broadcasts carry their offset.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from ..errors import AdapterError, PacketError
from .adapter import InMemoryAdapter
from .packets import Packet
from .redis_protocol import ABSENT as ABSENT_
from .redis_protocol import (DEFAULT_KEY, BroadcastMessage, BroadcastOptions, Channels, Request,
                             RequestType, Response, decode_request, decode_response,
                             encode_broadcast, encode_request, encode_response,
                             receive_broadcast)

__all__ = ["RedisAdapter", "RedisConnection", "DEFAULT_REQUESTS_TIMEOUT"]

logger = logging.getLogger(__name__)

DEFAULT_REQUESTS_TIMEOUT = 5.0   #: seconds: the reference's ``requestsTimeout`` (5000 ms)
_ALPHABET = string.ascii_letters + string.digits   # uid2's characters
_RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)   # seconds between subscriber attempts


def _uid(rng: Any) -> str:
    """6 characters, like the reference's ``uid2(6)`` (server uids and request ids)."""
    return "".join(rng.choice(_ALPHABET) for _ in range(6))


class RedisConnection:
    """The two Redis connections of one factory, shared by the adapters it makes.

    ``pub`` sends commands (PUBLISH, PUBSUB NUMSUB); ``pubsub`` is the subscribed connection,
    read by one task that hands each message to the adapter whose channel it is.
    """

    def __init__(self, url: str, *, key: str = DEFAULT_KEY,
                 requests_timeout: float = DEFAULT_REQUESTS_TIMEOUT, rng: Any = None) -> None:
        self.url = url
        self.key = key
        self.requests_timeout = requests_timeout
        self.rng = rng if rng is not None else secrets.SystemRandom()
        self.reconnects = 0            #: times the subscriber lost Redis
        self.connected: asyncio.Event | None = None   #: set while the subscriber has Redis
        self.pub: aioredis.Redis | None = None
        self.pubsub: Any = None
        self._sub: aioredis.Redis | None = None
        self._reader: asyncio.Task | None = None
        self._users = 0
        self._routes: dict[bytes, RedisAdapter] = {}      # channel or pattern -> adapter
        self._confirmations: dict[bytes, asyncio.Future] = {}
        self._sessions: Any = None   # the recovery stores' Redis client (made when asked)

    def __call__(self, namespace: str) -> RedisAdapter:
        """The adapter factory: ``Server(adapter_factory=connection)``."""
        return RedisAdapter(namespace, self)

    def session_store(self, namespace: str, options: Any) -> Any:
        """Connection state recovery's store for ``namespace``, in the same Redis
        (:mod:`lablib.socketio.redis_recovery`): the Server uses it when recovery is on."""
        from .redis_recovery import RedisSessions   # (it imports this module's neighbours)
        if self._sessions is None:
            self._sessions = RedisSessions(self.url)
        return self._sessions(namespace, options)

    # --- the connections ----------------------------------------------------------------------

    def _client(self, **options: Any) -> aioredis.Redis:
        # A short retry: a broadcast fails within a second or so when Redis is away, loudly,
        # instead of hanging the emit through redis-py's default 3 retries of up to 10 s.
        return aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2.0, health_check_interval=0,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2), **options)

    async def acquire(self) -> None:
        """Connect (first adapter) - :class:`AdapterError` naming the URL if Redis is away."""
        self._users += 1
        if self.pub is not None:
            return
        self.connected = asyncio.Event()
        self.pub = self._client()
        self._sub = self._client()
        try:
            await self.pub.ping()
        except (RedisError, OSError) as exc:
            await self._close_clients()
            self._users -= 1
            raise AdapterError(self.url, f"the Redis adapter cannot connect: {exc}") from exc
        self.pubsub = self._sub.pubsub()
        self.connected.set()

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            if self._reader is not None:
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
                self._reader = None
            await self._close_clients()

    async def _close_clients(self) -> None:
        for close in (getattr(self.pubsub, "aclose", None),
                      getattr(self._sub, "aclose", None), getattr(self.pub, "aclose", None)):
            if close is not None:
                try:
                    await close()
                except (RedisError, OSError):
                    pass
        self.pub = self._sub = self.pubsub = None

    async def subscribe(self, adapter: RedisAdapter) -> None:
        """Route the adapter's channels to it and wait until Redis confirmed them."""
        channels = adapter.channels
        pattern = channels.pattern.encode()
        plain = [c.encode() for c in (channels.request, channels.response,
                                      channels.specific_response(adapter.uid))]
        loop = asyncio.get_running_loop()
        waiting = []
        for name in (pattern, *plain):
            self._routes[name] = adapter
            waiting.append(self._confirmations.setdefault(name, loop.create_future()))
        try:
            await self.pubsub.psubscribe(pattern)
            await self.pubsub.subscribe(*plain)
        except (RedisError, OSError) as exc:
            raise AdapterError(self.url, f"the Redis adapter cannot subscribe: {exc}") from exc
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(self.requests_timeout):
            await asyncio.gather(*waiting)

    async def unsubscribe(self, adapter: RedisAdapter) -> None:
        channels = adapter.channels
        pattern = channels.pattern.encode()
        plain = [c.encode() for c in (channels.request, channels.response,
                                      channels.specific_response(adapter.uid))]
        for name in (pattern, *plain):
            self._routes.pop(name, None)
            self._confirmations.pop(name, None)
        try:
            await self.pubsub.punsubscribe(pattern)
            await self.pubsub.unsubscribe(*plain)
        except (RedisError, OSError):
            pass   # the connection is gone anyway

    # --- the subscriber ---------------------------------------------------------------------

    async def _read(self) -> None:
        """Read the subscribed connection for ever; reconnect (and resubscribe) when lost."""
        attempt = 0
        while True:
            try:
                message = await self.pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    self.connected.clear()
                    self.reconnects += 1
                    logger.error("lost Redis at %s (%s): reconnecting", self.url, exc)
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if message is None:
                continue
            attempt = 0
            try:
                await self._dispatch(message)
            except Exception:
                logger.exception("handling a Redis message failed: %r", message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "pmessage":
            adapter = self._routes.get(message["pattern"])
            if adapter is not None:
                await adapter._on_broadcast(message["channel"], message["data"])
        elif kind == "message":
            adapter = self._routes.get(message["channel"])
            if adapter is not None:
                await adapter._on_request_channel(message["channel"], message["data"])
        elif kind in ("subscribe", "psubscribe"):
            name = message["channel"]
            future = self._confirmations.get(name)
            if future is not None and not future.done():
                future.set_result(None)
            if not self.connected.is_set():   # a resubscription after a reconnection
                self.connected.set()
                logger.warning("Redis at %s is back: resubscribed", self.url)


@dataclass
class _Pending:
    """A request to the other servers waiting for their answers."""

    type: RequestType
    expected: int                        # answers awaited (other servers)
    future: asyncio.Future
    answers: int = 0
    sockets: list[Any] = field(default_factory=list)
    rooms: set[Any] = field(default_factory=set)
    responses: list[Any] = field(default_factory=list)


@dataclass
class _AckRequest:
    """A broadcast with acks we sent: the other servers' counts and their clients' acks."""

    on_client_count: Callable[[int], None]
    on_ack: Callable[[Any], None]


class RedisAdapter(InMemoryAdapter):
    """One namespace's adapter in a Redis cluster (the room registry is the in-memory one).

    Made by :meth:`factory` - ``Server(adapter_factory=RedisAdapter.factory(url))`` - which
    shares one :class:`RedisConnection` among the namespaces.  ``uid`` is this server's id in
    the cluster (6 characters); ``publish_failures`` counts broadcasts Redis did not take.
    """

    clustered = True

    def __init__(self, namespace: str, connection: RedisConnection) -> None:
        super().__init__()
        self.namespace = namespace
        self.connection = connection
        self.channels = Channels(namespace, connection.key)
        self.uid = _uid(connection.rng)
        self.publish_failures = 0
        self._requests: dict[str, _Pending] = {}
        self._ack_requests: dict[str, _AckRequest] = {}
        self._started = False

    @classmethod
    def factory(cls, url: str, *, key: str = DEFAULT_KEY,
                requests_timeout: float = DEFAULT_REQUESTS_TIMEOUT,
                rng: Any = None) -> RedisConnection:
        """The ``adapter_factory`` of a server in the cluster at ``url`` (``redis://host:port``).

        ``key`` is the channels' prefix (the reference's ``key`` option, ``"socket.io"``);
        ``requests_timeout`` (seconds) bounds every cluster query; ``rng`` draws the uid and
        request ids (pass ``random.Random(seed)`` for reproducible notebooks).
        """
        return RedisConnection(url, key=key, requests_timeout=requests_timeout, rng=rng)

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def requests_timeout(self) -> float:
        return self.connection.requests_timeout

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        await self.connection.acquire()
        try:
            await self.connection.subscribe(self)
        except BaseException:
            await self.connection.release()
            raise
        self._started = True

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.connection.unsubscribe(self)
        for pending in self._requests.values():
            if not pending.future.done():
                pending.future.cancel()
        self._requests.clear()
        self._ack_requests.clear()
        await self.connection.release()

    # --- publishing ------------------------------------------------------------------------------

    async def _publish(self, channel: str, payload: bytes, what: str) -> int:
        pub = self.connection.pub
        try:
            if pub is None:
                raise ConnectionError("the adapter is not started")
            return await pub.publish(channel, payload)
        except (RedisError, OSError, ConnectionError) as exc:
            self.publish_failures += 1
            logger.error("%s not published to Redis at %s: %s (reached this server's "
                         "clients only)", what, self.url, exc)
            raise AdapterError(self.url, f"{what} not published: {exc}") from exc

    async def publish(self, packet: Packet, opts: BroadcastOptions) -> None:
        """PUBLISH ``[uid, packet, opts]`` for the other servers."""
        channel, payload = encode_broadcast(BroadcastMessage(self.uid, packet, opts),
                                            self.channels)
        await self._publish(channel, payload, "a broadcast")

    async def publish_with_ack(self, packet: Packet, opts: BroadcastOptions,
                               on_client_count: Callable[[int], None],
                               on_ack: Callable[[Any], None], timeout: float | None) -> None:
        """A BROADCAST request: every other server delivers, answers with its client count
        (BROADCAST_CLIENT_COUNT) then each client's ack (BROADCAST_ACK).  Answers are taken
        for ``timeout`` seconds (the request timeout when None), then forgotten."""
        request_id = _uid(self.connection.rng)
        request = Request(RequestType.BROADCAST, self.uid, request_id, packet=packet, opts=opts)
        self._ack_requests[request_id] = _AckRequest(on_client_count, on_ack)
        loop = asyncio.get_running_loop()
        loop.call_later(timeout if timeout is not None else self.requests_timeout,
                        self._ack_requests.pop, request_id, None)
        try:
            await self._publish(self.channels.request, encode_request(request),
                                "a broadcast with acks")
        except AdapterError:
            self._ack_requests.pop(request_id, None)
            raise

    async def server_count(self) -> int:
        """``PUBSUB NUMSUB`` of the request channel: the servers of this namespace."""
        pub = self.connection.pub
        try:
            [(_, count)] = await pub.pubsub_numsub(self.channels.request)
        except (RedisError, OSError, AttributeError) as exc:
            raise AdapterError(self.url, f"cannot count the servers: {exc}") from exc
        return int(count)

    # --- requests to the cluster -------------------------------------------------------------

    async def _ask(self, request: Request, expected: int, pending: _Pending) -> _Pending:
        self._requests[request.request_id] = pending
        try:
            await self._publish(self.channels.request, encode_request(request),
                                f"a {request.type.name} request")
            async with asyncio.timeout(self.requests_timeout):
                await pending.future
        except TimeoutError:
            what = {RequestType.REMOTE_FETCH: "fetchSockets", RequestType.ALL_ROOMS: "allRooms",
                    RequestType.SERVER_SIDE_EMIT: "serverSideEmit"}.get(request.type, "a")
            error = TimeoutError(f"timeout reached while waiting for {what} response: "
                                 f"{pending.answers} of {expected} servers answered")
            error.responses = list(pending.responses)   # type: ignore[attr-defined]
            raise error from None
        finally:
            self._requests.pop(request.request_id, None)
        return pending

    def _new_pending(self, kind: RequestType, expected: int) -> _Pending:
        return _Pending(kind, expected, asyncio.get_running_loop().create_future())

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[dict[str, Any]]:
        local = self._local().fetch(opts)
        others = await self.server_count() - 1
        if others <= 0:
            return local
        request = Request(RequestType.REMOTE_FETCH, self.uid, _uid(self.connection.rng),
                          opts=BroadcastOptions(opts.rooms, opts.except_, None))
        pending = self._new_pending(RequestType.REMOTE_FETCH, others)
        pending.sockets = local
        return (await self._ask(request, others, pending)).sockets

    async def all_rooms(self) -> set[str]:
        rooms = set(self._rooms)
        others = await self.server_count() - 1
        if others <= 0:
            return rooms
        request = Request(RequestType.ALL_ROOMS, self.uid, _uid(self.connection.rng))
        pending = self._new_pending(RequestType.ALL_ROOMS, others)
        pending.rooms = rooms
        return (await self._ask(request, others, pending)).rooms

    async def server_side_emit(self, data: list[Any], ack: bool = False) -> list[Any] | None:
        if not ack:
            await self._publish(self.channels.request, encode_request(
                Request(RequestType.SERVER_SIDE_EMIT, self.uid, data=list(data))),
                "a serverSideEmit")
            return None
        others = await self.server_count() - 1
        if others <= 0:
            return []
        request = Request(RequestType.SERVER_SIDE_EMIT, self.uid, _uid(self.connection.rng),
                          data=list(data))
        pending = self._new_pending(RequestType.SERVER_SIDE_EMIT, others)
        return (await self._ask(request, others, pending)).responses

    async def _remote_operation(self, request: Request) -> None:
        await self._publish(self.channels.request, encode_request(request),
                            f"a {request.type.name} request")

    async def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = tuple(rooms)
        self._local().join(opts, rooms)   # ours at once (we ignore our own request)
        await self._remote_operation(Request(RequestType.REMOTE_JOIN, self.uid, opts=_plain(opts),
                                             rooms=rooms))

    async def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = tuple(rooms)
        self._local().leave(opts, rooms)
        await self._remote_operation(Request(RequestType.REMOTE_LEAVE, self.uid,
                                             opts=_plain(opts), rooms=rooms))

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool = False) -> None:
        await self._local().disconnect(opts, close)
        await self._remote_operation(Request(RequestType.REMOTE_DISCONNECT, self.uid,
                                             opts=_plain(opts), close=close))

    # --- what the subscriber hands us ----------------------------------------------------------

    async def _on_broadcast(self, channel: bytes, payload: bytes) -> None:
        message = receive_broadcast(channel, payload, channels=self.channels, uid=self.uid,
                                    has_room=lambda room: room in self._rooms)
        if isinstance(message, BroadcastMessage) and self.local is not None:
            await self.local.deliver(message.packet, message.opts)

    async def _on_request_channel(self, channel: bytes, payload: bytes) -> None:
        if channel.decode("utf-8", "replace").startswith(self.channels.response):
            self._on_response(payload)
        else:
            await self._on_request(payload)

    async def _respond(self, response: Response) -> None:
        try:
            await self._publish(self.channels.response, encode_response(response),
                                "a response")
        except AdapterError:
            pass   # logged and counted; the requester times out

    async def _on_request(self, payload: bytes) -> None:
        try:
            request = decode_request(payload)
        except PacketError as exc:
            logger.debug("ignoring a malformed request: %s", exc)
            return
        if request.uid == self.uid or self.local is None:
            return   # ours: the local half was done when we sent it
        local, kind, rid = self.local, request.type, request.request_id
        opts = request.opts or BroadcastOptions()
        if kind == RequestType.SOCKETS:
            sids = local.sids(BroadcastOptions(request.rooms or ()))
            await self._respond(Response(rid, sockets=sids))
        elif kind == RequestType.ALL_ROOMS:
            await self._respond(Response(rid, rooms=list(self._rooms)))
        elif kind == RequestType.REMOTE_FETCH:
            await self._respond(Response(rid, sockets=local.fetch(opts)))
        elif kind in (RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE,
                      RequestType.REMOTE_DISCONNECT):
            await self._remote_request(request, opts)
        elif kind == RequestType.SERVER_SIDE_EMIT:
            data = request.data if isinstance(request.data, list) else []
            ack = None
            if rid is not None:
                answered = []

                def ack(value: Any) -> None:   # once (the reference's ``called`` flag)
                    if not answered:
                        answered.append(value)
                        asyncio.ensure_future(self._respond(Response(
                            rid, RequestType.SERVER_SIDE_EMIT, data=value)))
            local.server_side_event(data, ack)
        elif kind == RequestType.BROADCAST and request.packet is not None:
            await self._broadcast_request(request, opts)

    async def _remote_request(self, request: Request, opts: BroadcastOptions) -> None:
        """REMOTE_JOIN / LEAVE / DISCONNECT: with ``opts`` (8.x), act and say nothing; the
        older single-socket form (``sid``, ``room``) answers with its request id."""
        local, kind = self.local, request.type
        if request.opts is None:
            if request.sid is None or request.sid not in self._sids:
                return
            opts = BroadcastOptions((request.sid,))
            rooms = (request.room,) if request.room is not None else ()
        else:
            rooms = request.rooms or ()
        if kind == RequestType.REMOTE_JOIN:
            local.join(opts, rooms)
        elif kind == RequestType.REMOTE_LEAVE:
            local.leave(opts, rooms)
        else:
            await local.disconnect(opts, bool(request.close))
        if request.opts is None:
            await self._respond(Response(request.request_id))

    async def _broadcast_request(self, request: Request, opts: BroadcastOptions) -> None:
        """Another server's emit with acks: deliver, say how many, then relay each ack."""
        rid = request.request_id
        flags = opts.flags or {}
        timeout_ms = flags.get("timeout")
        timeout = timeout_ms / 1000 if isinstance(timeout_ms, (int, float)) else None

        def on_ack(value: Any) -> None:
            asyncio.ensure_future(self._respond(Response(rid, RequestType.BROADCAST_ACK,
                                                         packet=value)))

        count = await self.local.deliver_with_acks(request.packet, opts, timeout, on_ack)
        await self._respond(Response(rid, RequestType.BROADCAST_CLIENT_COUNT,
                                     client_count=count))

    def _on_response(self, payload: bytes) -> None:
        try:
            response = decode_response(payload)
        except PacketError as exc:
            logger.debug("ignoring a malformed response: %s", exc)
            return
        rid = response.request_id
        ack_request = self._ack_requests.get(rid)
        if ack_request is not None:
            if response.type == RequestType.BROADCAST_CLIENT_COUNT:
                ack_request.on_client_count(response.client_count or 0)
            elif response.type == RequestType.BROADCAST_ACK:
                ack_request.on_ack(None if response.packet is ABSENT_ else response.packet)
            return
        pending = self._requests.get(rid) if rid is not None else None
        if pending is None or pending.future.done():
            return
        if pending.type == RequestType.REMOTE_FETCH:
            if response.sockets is None:
                return
            pending.sockets.extend(response.sockets)
        elif pending.type == RequestType.ALL_ROOMS:
            if response.rooms is None:
                return
            pending.rooms.update(response.rooms)
        elif pending.type == RequestType.SERVER_SIDE_EMIT:
            pending.responses.append(None if response.data is ABSENT_ else response.data)
        pending.answers += 1
        if pending.answers >= pending.expected:
            pending.future.set_result(None)

    def __repr__(self) -> str:
        return f"<RedisAdapter {self.namespace} uid={self.uid} {self.url}>"


def _plain(opts: BroadcastOptions) -> BroadcastOptions:
    """Requests other than BROADCAST carry ``opts`` without flags."""
    return BroadcastOptions(opts.rooms, opts.except_, None)

