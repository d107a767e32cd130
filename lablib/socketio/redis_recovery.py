"""Connection state recovery through Redis: sessions that survive a restart and a move.

::

    from lablib.socketio.redis_adapter import RedisAdapter

    sio = Server(adapter_factory=RedisAdapter.factory(url),
                 connection_state_recovery={"max_disconnection_duration": 120000})

With the Redis adapter and recovery on, each namespace's session store is a
:class:`RedisSessionStore` (``Server(session_store=RedisSessionStore.factory(url))`` says so
explicitly, with or without the adapter).  The kept sessions and the packet log are in Redis, so
a client whose server process restarted, or whose reconnect lands on another process of the
cluster, is recovered all the same.

The format: ``@socket.io/redis-streams-adapter``'s
------------------------------------------------
The pub/sub ``@socket.io/redis-adapter`` that :class:`~lablib.socketio.redis_adapter.RedisAdapter`
speaks has no recovery at all; the official stack recovers across processes only with the
*streams* adapter, whose broadcasts travel through one Redis stream.  Its storage does not clash
with the pub/sub wire format (different keys, and nobody reads the stream for delivery here), so
lablib stores exactly what it stores, next to the pub/sub broadcasts:

``sio:session:<pid>``
    A string, ``SET ... PX <max_disconnection_duration>``: base64 of the MessagePack map
    ``{"sid", "pid", "rooms", "data"}`` (socket.io-adapter's ``Session``).  A restore takes it
    with ``GETDEL`` (used once, as the in-memory store decided too).
the stream ``socket.io``
    The packet log.  One entry per logged broadcast, with the fields ``uid`` (the server),
    ``nsp``, ``type`` ``"3"`` (``MessageType.BROADCAST``) and ``data``: the JSON
    ``{"packet": {"type": 2, "data": [...], "nsp": "/"}, "opts": {"rooms", "except",
    "flags"}}``, or base64 MessagePack of it when the packet carries bytes.  The packet's data
    is stored *without* its offset: the offset is the entry's stream id (``1733590000000-0``),
    which Redis assigns (XADD ``*``) and every receiver appends, as the streams adapter does.

So a session kept by a Node server with the streams adapter can be restored by lablib and the
other way round, and entries lablib logs are entries the Node adapter understands.  What lablib
does not do is *deliver* through the stream: its live broadcasts stay on pub/sub (the offset
rides along as the last argument), the stream is only the log.  A cluster mixing lablib with
Node streams-adapter servers would therefore see recoveries but not each other's live
broadcasts - that needs the streams transport, which is not built here.

Bounds (the issue's "bounded"): each XADD trims the stream to ``max_log_packets`` entries
(``MAXLEN``, exact, where Node trims ``~`` approximately) and then drops the entries older than
``max_disconnection_duration`` (``XTRIM MINID``, by the new entry's own time: the clock is
Redis's).  A stream trims from its oldest end, so if the client's offset is still an entry,
every entry after it is too: the restore reads the session, the offset's entry and everything
after it in one MULTI/EXEC (one consistent snapshot), and returns None - ``recovered`` false -
when the session or the offset's entry is gone, never a replay with a hole.  Node pages through
the stream after the offset with a fixed cap of XRANGE calls; one bounded read is simpler here.

Concurrency (the driver, :class:`~lablib.socketio.server.Server`): per namespace, one lock
orders this process's appends, its restores and its deliveries of other servers' broadcasts.
So a broadcast is either in a restore's snapshot or delivered live to the restored socket,
which waits for its CONNECT answer with its replay (the core keeps both, and drops a live
copy of a packet whose offset the replay has).  One window is left: another server's broadcast
logged before the snapshot whose pub/sub message arrives after the CONNECT answer reaches the
client twice, with the same offset (lablib's client drops the repeat; Node's does not).

Errors: Redis unreachable or a session that does not encode raise
:class:`~lablib.errors.AdapterError`; the server logs and counts them and goes on without
recovery for that client (``recovered`` false).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
from typing import Any, Iterable

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import AdapterError, PacketError
from .packets import Packet, PacketType
from .recovery import RecoveryOptions, Restored, Session
from .redis_protocol import _pack, _unpack, packet_to_wire

__all__ = ["RedisSessionStore", "RedisSessions", "DEFAULT_STREAM", "DEFAULT_SESSION_PREFIX",
           "BROADCAST_TYPE"]

DEFAULT_STREAM = "socket.io"                 #: the streams adapter's ``streamName``
DEFAULT_SESSION_PREFIX = "sio:session:"      #: its ``sessionKeyPrefix``
BROADCAST_TYPE = "3"                         #: socket.io-adapter's ``MessageType.BROADCAST``
_STREAM_ID = re.compile(r"^[0-9]+-[0-9]+$")
_ALPHABET = string.ascii_letters + string.digits


def _has_bytes(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_bytes(item) for item in value)
    if isinstance(value, dict):
        return any(_has_bytes(item) for item in value.values())
    return False


def encode_entry_data(body: dict[str, Any]) -> str:
    """The ``data`` field: JSON, or base64 MessagePack when there are bytes (as Node's
    ``RedisStreamsAdapter.encode``)."""
    if _has_bytes(body):
        return base64.b64encode(_pack(body)).decode("ascii")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_entry_data(text: str) -> Any:
    """The inverse: JSON when it starts with ``{`` (Node's test), else base64 MessagePack."""
    if text.startswith("{"):
        return json.loads(text)
    return _unpack(base64.b64decode(text, validate=True))


def encode_session(session: Session) -> str:
    """base64 of MessagePack ``{"sid", "pid", "rooms", "data"}``."""
    try:
        return base64.b64encode(_pack({"sid": session.sid, "pid": session.pid,
                                       "rooms": list(session.rooms),
                                       "data": session.data})).decode("ascii")
    except PacketError as exc:
        raise AdapterError("session", f"the session data cannot be kept: {exc}") from exc


def decode_session(text: str | bytes, disconnected_at: float) -> Session:
    raw = _unpack(base64.b64decode(text, validate=True))
    if not isinstance(raw, dict) or not isinstance(raw.get("sid"), str) \
            or not isinstance(raw.get("pid"), str) or not isinstance(raw.get("rooms"), list):
        raise PacketError(f"not a session: {raw!r:.80}")
    return Session(raw["sid"], raw["pid"], tuple(raw["rooms"]), raw.get("data"),
                   disconnected_at)


def _reaches(opts: dict[str, Any], rooms: set[str]) -> bool:
    """Node's ``shouldIncludePacket``: in one of the rooms (or to all), in none excepted."""
    targets, excepted = opts.get("rooms") or [], opts.get("except") or []
    return (not targets or not rooms.isdisjoint(targets)) and rooms.isdisjoint(excepted)


class RedisSessions:
    """One Redis client shared by the stores of every namespace: the ``session_store``
    factory of a Server (``sessions(namespace, options) -> RedisSessionStore``)."""

    def __init__(self, url: str, *, stream: str = DEFAULT_STREAM,
                 session_prefix: str = DEFAULT_SESSION_PREFIX, rng: Any = None) -> None:
        self.url = url
        self.stream = stream
        self.session_prefix = session_prefix
        rng = rng if rng is not None else secrets.SystemRandom()
        self.uid = "".join(rng.choice(_ALPHABET) for _ in range(6))
        self._client: aioredis.Redis | None = None

    def __call__(self, namespace: str, options: RecoveryOptions) -> RedisSessionStore:
        return RedisSessionStore(self, namespace, options)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:   # no I/O yet: redis-py connects on the first command
            self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2.0)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class RedisSessionStore:
    """One namespace's :class:`~lablib.socketio.recovery.AsyncSessionStore` in Redis."""

    def __init__(self, sessions: RedisSessions, namespace: str, options: RecoveryOptions) -> None:
        self.sessions = sessions
        self.namespace = namespace
        self.options = options

    @classmethod
    def factory(cls, url: str, **options: Any) -> RedisSessions:
        """``Server(session_store=RedisSessionStore.factory(url))``; ``stream``,
        ``session_prefix`` as the streams adapter's ``streamName``/``sessionKeyPrefix``."""
        return RedisSessions(url, **options)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.sessions.close()

    def _fail(self, what: str, exc: Exception) -> AdapterError:
        return AdapterError(self.sessions.url, f"{what}: {exc}")

    async def append(self, data: list, rooms: Iterable[str] | None,
                     except_rooms: Iterable[str], now: float) -> str:
        """XADD the broadcast (MAXLEN), XTRIM by age (MINID); the entry id is the offset."""
        packet = Packet(PacketType.EVENT, self.namespace, list(data))
        body = {"packet": packet_to_wire(packet),
                "opts": {"rooms": list(rooms or ()), "except": list(except_rooms), "flags": {}}}
        fields = {"uid": self.sessions.uid, "nsp": self.namespace, "type": BROADCAST_TYPE,
                  "data": encode_entry_data(body)}
        client, stream = self.sessions.client, self.sessions.stream
        try:
            entry_id = await client.xadd(stream, fields, maxlen=self.options.max_log_packets,
                                         approximate=False)
            offset = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            oldest = int(offset.split("-")[0]) - self.options.max_disconnection_duration
            await client.xtrim(stream, minid=f"{max(oldest, 0)}-0", approximate=False)
        except (RedisError, OSError) as exc:
            raise self._fail("a broadcast not logged", exc) from exc
        data.append(offset)
        return offset

    async def persist(self, session: Session) -> None:
        """SET ``sio:session:<pid>`` PX max_disconnection_duration."""
        key = self.sessions.session_prefix + session.pid
        value = encode_session(session)
        try:
            await self.sessions.client.set(key, value, px=self.options.max_disconnection_duration)
        except (RedisError, OSError) as exc:
            raise self._fail("a session not kept", exc) from exc

    async def restore(self, pid: str, offset: str, now: float) -> Restored | None:
        """GETDEL the session and XRANGE from the offset, in one MULTI/EXEC; None unless both
        are there (the offset's entry proves nothing after it was trimmed)."""
        if not _STREAM_ID.match(offset):
            return None
        key = self.sessions.session_prefix + pid
        try:
            async with self.sessions.client.pipeline(transaction=True) as pipe:
                pipe.pttl(key).getdel(key).xrange(self.sessions.stream, min=offset)
                ttl, raw, entries = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._fail("a session not restored", exc) from exc
        if raw is None or not entries or _text(entries[0][0]) != offset:
            return None   # expired or unknown; or the client is too far behind
        remaining = max(ttl, 0) / 1000 if isinstance(ttl, int) else 0.0
        disconnected_at = now - (self.options.max_disconnection_duration / 1000 - remaining)
        try:
            session = decode_session(raw, disconnected_at)
        except (PacketError, ValueError):
            return None
        rooms = set(session.rooms)
        missed = []
        try:
            for entry_id, fields in entries[1:]:
                data = self._missed(fields, rooms)
                if data is not None:
                    missed.append([*data, _text(entry_id)])
        except PacketError:
            return None   # an entry we cannot read: no replay rather than one with a hole
        return Restored(session, tuple(missed))

    def _missed(self, fields: dict, rooms: set[str]) -> list | None:
        """The packet data of a logged broadcast this session should get, else None."""
        fields = {_text(name): value for name, value in fields.items()}
        if _text(fields.get("nsp", b"")) != self.namespace \
                or _text(fields.get("type", b"")) != BROADCAST_TYPE:
            return None
        try:
            body = decode_entry_data(_text(fields.get("data", b"")))
            packet, opts = body["packet"], body["opts"]
            data = packet["data"]
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise PacketError(f"a logged broadcast that does not decode: {exc}") from exc
        if packet.get("type") != 2 or not isinstance(data, list) or not isinstance(opts, dict):
            raise PacketError(f"a logged broadcast that is not an event: {packet!r:.80}")
        return data if _reaches(opts, rooms) else None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
