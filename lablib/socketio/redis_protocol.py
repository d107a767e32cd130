"""The wire protocol of the official Redis adapter, ``@socket.io/redis-adapter`` 8.x, sans-I/O.

Several Socket.IO servers form one cluster by talking over Redis pub/sub.  This module is what
they say to each other - channel names and message bytes - with no Redis connection in it, so a
lablib server and a Node ``socket.io`` server with the official adapter can share a cluster.
The authority is the adapter's source, ``lib/index.ts`` of socketio/socket.io-redis-adapter
(8.3.0; ``dist/index.js`` in the npm package installed in ``interop/node/``), with the room
logic of ``lib/in-memory-adapter.ts`` in socketio/socket.io-adapter.  Facts checked against the
running Node adapter are marked *(verified)*; the interop tests hold the proof.

Channels (``key`` is the adapter's ``key`` option, default ``"socket.io"``)
--------------------------------------------------------------------------
=================================  =================================================================
``socket.io#<nsp>#``               broadcasts to the whole namespace, or to several rooms
``socket.io#<nsp>#<room>#``        broadcasts to exactly one room (so a server may skip it unread)
``socket.io-request#<nsp>#``       requests to every server (fetchSockets, serverSideEmit, ...)
``socket.io-response#<nsp>#``      responses (every server reads them; requestId says whose)
``socket.io-response#<nsp>#<uid>#``  responses to one server, with ``publishOnSpecificResponseChannel``
=================================  =================================================================

Every server PSUBSCRIBEs ``socket.io#<nsp>#*`` (both broadcast forms) and SUBSCRIBEs the three
others.  ``PUBSUB NUMSUB socket.io-request#<nsp>#`` counts the servers (the adapter's
``serverCount()``), which is how many answers a request waits for.

Broadcasts: MessagePack ``[uid, packet, opts]``
-----------------------------------------------
``uid`` is the sending server's 6-character id (``uid2(6)``); ``packet`` the Socket.IO packet as
the Node server holds it *before* encoding: a map ``{"type": 2, "data": ["event", ...],
"nsp": "/"}`` in that key order *(verified)*, where binary arguments are MessagePack ``bin``
values inside ``data`` and the type stays 2 (EVENT) - the receiving server's encoder turns it
into a BINARY_EVENT with attachments; ``opts`` is ``{"rooms": [...], "except": [...],
"flags": {...}}`` (``flags`` such as ``volatile``, ``compress``, ``local``, ``timeout``; an
empty map for a plain emit).  The encoder is notepack.io, whose output is the smallest
MessagePack form of each value, as msgpack-python's is: our bytes equal Node's *(verified)*.

On receipt a server ignores (:func:`receive_broadcast`): a channel of another prefix or
namespace, a one-room channel for a room it has no member in, its own uid, and a packet of
another namespace.  It then delivers to its local sockets (:func:`broadcast_targets`): members
of any room in ``rooms`` (every socket if ``rooms`` is empty), minus the members of every room in
``except`` (a socket id is a room, so ``except`` holds sids too).

Requests and responses
----------------------
Requests are JSON objects (text starting with ``{``), except BROADCAST (an emit with acks),
which is MessagePack because its packet may hold binary; responses likewise are JSON except
BROADCAST_ACK.  A receiver tells them apart by the first byte: ``0x7b`` (``{``) is JSON.
:class:`RequestType` numbers them; :func:`encode_request` / :func:`encode_response` write the
keys in the order the Node adapter writes them, so the bytes match.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import msgpack

from ..errors import PacketError
from .packets import Packet, PacketType

__all__ = [
    "DEFAULT_KEY", "RequestType", "Channels", "BroadcastOptions", "BroadcastMessage",
    "Request", "Response", "Ignored", "ABSENT",
    "encode_broadcast", "decode_broadcast", "receive_broadcast", "broadcast_targets",
    "encode_request", "decode_request", "encode_response", "decode_response",
    "packet_to_wire", "packet_from_wire", "is_json",
]

DEFAULT_KEY = "socket.io"   #: the adapter's default ``key`` option, the channels' prefix

#: The largest message :func:`decode_broadcast` and friends will unpack (memory stays bounded).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class RequestType(enum.IntEnum):
    """The request types of ``lib/index.ts`` (``enum RequestType``), numbered as there."""

    SOCKETS = 0                  #: which socket ids are in these rooms (older adapters ask this)
    ALL_ROOMS = 1                #: every room of every server
    REMOTE_JOIN = 2              #: make the sockets matching ``opts`` join ``rooms``
    REMOTE_LEAVE = 3             #: make them leave ``rooms``
    REMOTE_DISCONNECT = 4        #: disconnect them (``close``: also close the connection)
    REMOTE_FETCH = 5             #: describe them (``fetchSockets()``): id, handshake, rooms, data
    SERVER_SIDE_EMIT = 6         #: an event to the other servers (``serverSideEmit``), maybe acked
    BROADCAST = 7                #: a broadcast that wants the clients' acks
    BROADCAST_CLIENT_COUNT = 8   #: response: how many clients this server sent it to
    BROADCAST_ACK = 9            #: response: one client's ack


class _Absent:
    """The value of a field that is not in the message at all (JSON has no ``undefined``)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()


# --- channels -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Channels:
    """The channel names of one namespace (``lib/index.ts``, the RedisAdapter constructor)."""

    namespace: str = "/"
    key: str = DEFAULT_KEY

    @property
    def broadcast(self) -> str:
        """``socket.io#/#``: broadcasts to the namespace or to several rooms."""
        return f"{self.key}#{self.namespace}#"

    @property
    def pattern(self) -> str:
        """``socket.io#/#*``: the PSUBSCRIBE pattern that gets both broadcast forms."""
        return self.broadcast + "*"

    def room(self, room: str) -> str:
        """``socket.io#/#<room>#``: broadcasts to exactly one room."""
        return f"{self.broadcast}{room}#"

    @property
    def request(self) -> str:
        """``socket.io-request#/#``."""
        return f"{self.key}-request#{self.namespace}#"

    @property
    def response(self) -> str:
        """``socket.io-response#/#``."""
        return f"{self.key}-response#{self.namespace}#"

    def specific_response(self, uid: str) -> str:
        """``socket.io-response#/#<uid>#``: responses for one server only."""
        return f"{self.response}{uid}#"

    def for_broadcast(self, rooms: Iterable[str]) -> str:
        """Where a broadcast goes: the room's channel if exactly one room, else the namespace's."""
        rooms = list(dict.fromkeys(rooms))
        return self.room(rooms[0]) if len(rooms) == 1 else self.broadcast

    def room_of(self, channel: str | bytes) -> str | None:
        """The room a broadcast channel names (``""`` for the namespace's channel), or None if
        ``channel`` is not one of this namespace's broadcast channels."""
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", "replace")
        if not channel.startswith(self.broadcast) or not channel.endswith("#"):
            return None
        return channel[len(self.broadcast):-1]


# --- MessagePack, as notepack.io writes and reads it ----------------------------------------

def _ext_hook(code: int, data: bytes) -> Any:
    """notepack's extension types: fixext 1 type 0 was ``undefined``; other type 0 an
    ArrayBuffer (both "kept for backward compatibility" in notepack.io's decoder)."""
    if code == 0:
        return None if data == b"\x00" else bytes(data)
    return msgpack.ExtType(code, data)


def _pack(value: Any) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PacketError(f"cannot encode as MessagePack: {exc}") from exc


def _unpack(data: bytes) -> Any:
    if len(data) > MAX_MESSAGE_SIZE:
        raise PacketError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    try:
        # unpackb bounds every length by len(data): a short message cannot claim a huge array.
        return msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:  # ExtraData is a ValueError
        raise PacketError(f"not a MessagePack message: {exc}") from exc


def is_json(payload: bytes) -> bool:
    """The receiver's test (``onrequest``/``onresponse``): JSON starts with ``{`` (0x7b)."""
    return payload[:1] == b"{"


def _json(value: dict[str, Any]) -> bytes:
    # JSON.stringify: no spaces, non-ASCII as is.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        value = (json.loads(payload.decode("utf-8")) if is_json(payload) else _unpack(payload))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketError(f"malformed JSON message: {exc}") from exc
    if not isinstance(value, dict):
        raise PacketError(f"a request or response is a map, not {type(value).__name__}")
    return value


# --- the packet inside ----------------------------------------------------------------------

_PLAIN = {PacketType.BINARY_EVENT: PacketType.EVENT, PacketType.BINARY_ACK: PacketType.ACK}


def packet_to_wire(packet: Packet) -> dict[str, Any]:
    """A lablib :class:`~lablib.socketio.packets.Packet` as the Node server holds it.

    ``{"type": 2, "data": [...], "nsp": "/"}`` (plus ``"id"`` if the packet has an ack id).
    Binary data stays inline as bytes and BINARY_EVENT/BINARY_ACK become EVENT/ACK: Node's
    encoder decides on attachments when it writes the packet to a client, and would turn
    bytes inside a type-5 packet into JSON.
    """
    wire: dict[str, Any] = {"type": int(_PLAIN.get(packet.type, packet.type))}
    if packet.data is not None:
        wire["data"] = packet.data
    wire["nsp"] = packet.namespace
    if packet.id is not None:
        wire["id"] = packet.id
    return wire


def packet_from_wire(wire: Any) -> Packet:
    """The inverse of :func:`packet_to_wire`; a missing ``nsp`` means ``"/"`` (as ``onmessage``)."""
    if not isinstance(wire, dict) or "type" not in wire:
        raise PacketError(f"a packet is a map with a type, not {wire!r:.60}")
    try:
        return Packet(wire["type"], wire.get("nsp", "/"), wire.get("data"), wire.get("id"))
    except Exception as exc:  # LocalProtocolError: the packet's shape is wrong
        raise PacketError(f"not a Socket.IO packet: {exc}") from exc


# --- broadcasts -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Who receives a broadcast: ``opts`` of ``[uid, packet, opts]`` (rooms, except, flags).

    ``flags`` is None when the message has no ``flags`` key at all (Node omits an undefined
    one); a plain emit sends an empty map.
    """

    rooms: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()
    flags: Mapping[str, Any] | None = field(default_factory=dict)

    def to_wire(self, *, with_flags: bool = True) -> dict[str, Any]:
        wire: dict[str, Any] = {"rooms": list(self.rooms), "except": list(self.except_)}
        if with_flags and self.flags is not None:
            wire["flags"] = dict(self.flags)
        return wire

    @classmethod
    def from_wire(cls, wire: Any) -> BroadcastOptions:
        if not isinstance(wire, dict):
            raise PacketError(f"broadcast options are a map, not {wire!r:.60}")
        rooms, except_ = wire.get("rooms") or [], wire.get("except") or []
        flags = wire.get("flags")
        if not isinstance(rooms, list) or not isinstance(except_, list) \
                or not (flags is None or isinstance(flags, dict)):
            raise PacketError(f"malformed broadcast options {wire!r:.80}")
        # Rooms may be numbers in Node (io.to(1)); Socket.IO rooms are compared as given.
        return cls(tuple(rooms), tuple(except_), flags)


@dataclass(frozen=True, slots=True)
class BroadcastMessage:
    """``[uid, packet, opts]``: what one server publishes for every other server to deliver."""

    uid: str
    packet: Packet
    opts: BroadcastOptions = BroadcastOptions()

    @property
    def namespace(self) -> str:
        return self.packet.namespace


def encode_broadcast(message: BroadcastMessage, channels: Channels | None = None
                     ) -> tuple[str, bytes]:
    """``(channel, payload)`` to PUBLISH, as ``RedisAdapter.broadcast`` builds them."""
    channels = channels or Channels(message.namespace)
    payload = _pack([message.uid, packet_to_wire(message.packet), message.opts.to_wire()])
    return channels.for_broadcast(message.opts.rooms), payload


def decode_broadcast(payload: bytes) -> BroadcastMessage:
    """Read ``[uid, packet, opts]``; :class:`~lablib.errors.PacketError` if it is not one."""
    value = _unpack(payload)
    if not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str):
        raise PacketError(f"a broadcast is [uid, packet, opts], not {value!r:.80}")
    uid, packet, opts = value
    return BroadcastMessage(uid, packet_from_wire(packet), BroadcastOptions.from_wire(opts))


class Ignored(enum.Enum):
    """Why a server drops a broadcast it received (``onmessage`` in lib/index.ts, in order)."""

    OTHER_CHANNEL = "the channel is not this namespace's broadcast channel"
    UNKNOWN_ROOM = "a one-room channel for a room with no local member"
    MALFORMED = "the payload is not [uid, packet, opts]"
    OWN_UID = "this server published it (it delivered locally already)"
    OTHER_NAMESPACE = "the packet belongs to another namespace"


def receive_broadcast(channel: str | bytes, payload: bytes, *, channels: Channels, uid: str,
                      has_room: Callable[[str], bool]) -> BroadcastMessage | Ignored:
    """Decide whether a broadcast published on ``channel`` is for this server's namespace.

    ``uid`` is this server's own id; ``has_room(room)`` says whether a local socket is in
    ``room``.  Returns the message to deliver, or the :class:`Ignored` reason.  The channel is
    checked before the payload is decoded, as in the reference (a one-room channel for a room
    we do not have costs no decoding).
    """
    room = channels.room_of(channel)
    if room is None:
        return Ignored.OTHER_CHANNEL
    if room != "" and not has_room(room):
        return Ignored.UNKNOWN_ROOM
    try:
        message = decode_broadcast(payload)
    except PacketError:
        return Ignored.MALFORMED
    if message.uid == uid:
        return Ignored.OWN_UID
    if message.namespace != channels.namespace:
        return Ignored.OTHER_NAMESPACE
    return message


def broadcast_targets(opts: BroadcastOptions, members: Callable[[str], Iterable[str]],
                      everyone: Iterable[str]) -> list[str]:
    """The local socket ids a broadcast reaches (``apply`` in socket.io-adapter).

    Members of any room of ``opts.rooms`` - every socket in ``everyone`` if there is none -
    minus the members of each room in ``opts.except_``; each once, in order.
    """
    excluded = {sid for room in opts.except_ for sid in members(room)}
    if opts.rooms:
        candidates: Iterable[str] = (sid for room in opts.rooms for sid in members(room))
    else:
        candidates = everyone
    return [sid for sid in dict.fromkeys(candidates) if sid not in excluded]


# --- requests and responses -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Request:
    """A message on ``socket.io-request#<nsp>#``; which fields are set depends on ``type``.

    =====================  ===============================================  ========
    type                   fields (in the order Node writes them)           encoding
    =====================  ===============================================  ========
    SOCKETS                uid, requestId, type, rooms                      JSON
    ALL_ROOMS              uid, requestId, type                             JSON
    REMOTE_JOIN / _LEAVE   uid, type, opts {rooms, except}, rooms           JSON
    REMOTE_DISCONNECT      uid, type, opts {rooms, except}, close           JSON
    REMOTE_FETCH           uid, requestId, type, opts {rooms, except}       JSON
    SERVER_SIDE_EMIT       uid, [requestId,] type, data ([event, *args])    JSON
    BROADCAST              uid, requestId, type, packet, opts {+ flags}     MessagePack
    =====================  ===============================================  ========

    Older adapters also sent single-socket REMOTE_JOIN/LEAVE/DISCONNECT with ``sid`` and
    ``room``; they are read and written too.
    """

    type: RequestType
    uid: str
    request_id: str | None = None
    packet: Packet | None = None
    opts: BroadcastOptions | None = None
    rooms: tuple[str, ...] | None = None
    close: bool | None = None
    data: Any = ABSENT
    sid: str | None = None
    room: str | None = None

    @property
    def msgpack(self) -> bool:
        """BROADCAST is the one request sent as MessagePack (its packet may hold binary)."""
        return self.type == RequestType.BROADCAST


def encode_request(request: Request) -> bytes:
    """The payload to PUBLISH on the request channel, byte for byte as Node writes it."""
    wire: dict[str, Any] = {"uid": request.uid}
    if request.request_id is not None:
        wire["requestId"] = request.request_id
    wire["type"] = int(request.type)
    if request.packet is not None:
        wire["packet"] = packet_to_wire(request.packet)
    if request.opts is not None:
        wire["opts"] = request.opts.to_wire(with_flags=request.msgpack)
    if request.rooms is not None:
        wire["rooms"] = list(request.rooms)
    if request.close is not None:
        wire["close"] = request.close
    if request.data is not ABSENT:
        wire["data"] = request.data
    if request.sid is not None:
        wire["sid"] = request.sid
    if request.room is not None:
        wire["room"] = request.room
    return _pack(wire) if request.msgpack else _json(wire)


def decode_request(payload: bytes) -> Request:
    """Read a request (JSON or MessagePack, by its first byte)."""
    wire = _parse(payload)
    try:
        kind = RequestType(wire["type"])
    except (KeyError, ValueError, TypeError):
        raise PacketError(f"unknown request type {wire.get('type')!r}") from None
    uid = wire.get("uid")
    if not isinstance(uid, str):
        raise PacketError(f"a request names its sender's uid, not {uid!r}")
    rooms = wire.get("rooms")
    return Request(
        kind, uid, _optional_str(wire, "requestId"),
        packet_from_wire(wire["packet"]) if "packet" in wire else None,
        BroadcastOptions.from_wire(wire["opts"]) if wire.get("opts") is not None else None,
        tuple(rooms) if isinstance(rooms, list) else None,
        wire.get("close"), wire.get("data", ABSENT),
        _optional_str(wire, "sid"), wire.get("room"))


def _optional_str(wire: dict[str, Any], key: str) -> str | None:
    value = wire.get(key)
    if value is not None and not isinstance(value, str):
        raise PacketError(f"{key} must be a string, not {value!r:.40}")
    return value


@dataclass(frozen=True, slots=True)
class Response:
    """A message on ``socket.io-response#<nsp>#`` (or the per-uid channel).

    ==========================  ===========================================  ===========
    answers                     fields (in Node's order)                     encoding
    ==========================  ===========================================  ===========
    SOCKETS / REMOTE_FETCH      requestId, sockets                           JSON
    ALL_ROOMS                   requestId, rooms                             JSON
    single-socket REMOTE_*      requestId                                    JSON
    SERVER_SIDE_EMIT (an ack)   type, requestId, data                        JSON
    BROADCAST_CLIENT_COUNT      type, requestId, clientCount                 JSON
    BROADCAST_ACK               type, requestId, packet (the ack's args)     MessagePack
    ==========================  ===========================================  ===========

    ``type`` is None when the response has none (the requester knows what it asked).  For
    REMOTE_FETCH each socket is ``{"id", "handshake", "rooms", "data"}``.
    """

    request_id: str | None
    type: RequestType | None = None
    sockets: list[Any] | None = None
    rooms: list[Any] | None = None
    data: Any = ABSENT
    client_count: int | None = None
    packet: Any = ABSENT

    @property
    def msgpack(self) -> bool:
        return self.type == RequestType.BROADCAST_ACK


def encode_response(response: Response) -> bytes:
    """The payload to PUBLISH on the response channel, byte for byte as Node writes it."""
    wire: dict[str, Any] = {}
    if response.type is not None:
        wire["type"] = int(response.type)
    if response.request_id is not None:
        wire["requestId"] = response.request_id
    if response.sockets is not None:
        wire["sockets"] = response.sockets
    if response.rooms is not None:
        wire["rooms"] = response.rooms
    if response.data is not ABSENT:
        wire["data"] = response.data
    if response.client_count is not None:
        wire["clientCount"] = response.client_count
    if response.packet is not ABSENT:
        wire["packet"] = response.packet
    return _pack(wire) if response.msgpack else _json(wire)


def decode_response(payload: bytes) -> Response:
    """Read a response (JSON or MessagePack, by its first byte)."""
    wire = _parse(payload)
    kind = wire.get("type")
    if kind is not None:
        try:
            kind = RequestType(kind)
        except (ValueError, TypeError):
            raise PacketError(f"unknown response type {kind!r}") from None
    count = wire.get("clientCount")
    if isinstance(count, float) and math.isfinite(count) and count.is_integer():
        count = int(count)   # a JavaScript number may arrive as a MessagePack float
    if count is not None and (type(count) is not int or count < 0):
        raise PacketError(f"clientCount must be a count, not {count!r}")
    return Response(_optional_str(wire, "requestId"), kind,
                    wire.get("sockets"), wire.get("rooms"), wire.get("data", ABSENT), count,
                    wire.get("packet", ABSENT))
