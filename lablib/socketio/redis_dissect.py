"""The dissector's Socket.IO Redis adapter layer: what one server PUBLISHes to the others.

Its ``DECODER`` (listed in :mod:`lablib.capture.decoders`) reads the messages :mod:`lablib.capture.resp` finds in
a Redis conversation (carrier ``"redis"``: a PUBLISH's payload, or a message a subscriber
received; the message's ``target`` is the channel).  It reads them with
:mod:`lablib.socketio.redis_protocol`, the same code a lablib adapter uses::

    layer           kind       summary
    resp            command    PUBLISH 'socket.io#/#room1#' <86 bytes: 93 a6 ...>
    socketio-redis  broadcast  from 4iE9Kn to /: EVENT ["hello", 1] rooms=['room1'] except=['sidX']
    resp            command    PUBLISH 'socket.io-request#/#' '{"uid":"4iE9Kn",...}'
    socketio-redis  request    from 4iE9Kn: REMOTE_FETCH id=Zx81Qa rooms=['room1'] except=[]

Channels that are not the adapter's (no ``#`` after the key) are left alone.  Record fields:
``channel``, ``key`` and ``namespace`` (from the channel), ``room`` (a one-room broadcast
channel's room, else None) and ``message`` (the decoded
:class:`~lablib.socketio.redis_protocol.BroadcastMessage`, ``Request`` or ``Response``), plus
for broadcasts ``uid``, ``packet``, ``rooms``, ``except``, ``flags``.
"""

from __future__ import annotations

from ..capture.decoding import Decoded, Decoder, Message
from ..errors import PacketError
from .redis_protocol import ABSENT, decode_broadcast, decode_request, decode_response

__all__ = ["decode_adapter_message", "parse_channel"]


def parse_channel(channel: str) -> tuple[str, str, str, str | None] | None:
    """``(role, key, namespace, room)`` of an adapter channel, or None if it is not one.

    ``role`` is ``"broadcast"``, ``"request"`` or ``"response"``; ``room`` is the room of a
    one-room broadcast channel, or for a response the uid of a per-server channel.
    """
    prefix, sep, rest = channel.partition("#")
    if not sep or not rest.startswith("/"):
        return None
    namespace, sep, tail = rest.partition("#")
    if not sep:
        return None
    extra = tail[:-1] if tail.endswith("#") else None
    if tail and extra is None:
        return None
    for role in ("request", "response"):
        if prefix.endswith(f"-{role}"):
            return role, prefix[:-len(role) - 1], namespace, extra
    return "broadcast", prefix, namespace, extra


def decode_adapter_message(message: Message) -> list[Decoded] | None:
    """One record for an adapter message: a broadcast, a request or a response."""
    channel = message.target or ""
    parsed = parse_channel(channel)
    if parsed is None:
        return None
    role, key, namespace, room = parsed
    fields = {"channel": channel, "key": key, "namespace": namespace, "room": room}
    try:
        if role == "broadcast":
            decoded = decode_broadcast(message.data)
            return [_broadcast(decoded, fields)]
        if role == "request":
            request = decode_request(message.data)
            fields.update(message=request, type=request.type.name, uid=request.uid,
                          request_id=request.request_id)
            return [Decoded("socketio-redis", "request", _request_summary(request), fields,
                            request)]
        response = decode_response(message.data)
        fields.update(message=response, type=response.type.name if response.type else None,
                      request_id=response.request_id)
        what = f"{response.type.name} " if response.type else ""
        return [Decoded("socketio-redis", "response",
                        f"response {what}to {response.request_id}: {_fields(response)}",
                        fields, response)]
    except PacketError as exc:
        return [Decoded("error", "malformed", f"Socket.IO Redis adapter: {exc}",
                        {**fields, "error": str(exc)}, exc)]


#: What the dissector needs to know of this layer (listed in lablib.capture.decoders).
DECODER = Decoder("socketio-redis", {"redis"}, decode_adapter_message)


def _broadcast(decoded, fields: dict) -> Decoded:
    packet, opts = decoded.packet, decoded.opts
    fields.update(message=decoded, uid=decoded.uid, packet=packet, rooms=list(opts.rooms),
                  **{"except": list(opts.except_)}, flags=opts.flags)
    data = "" if packet.data is None else f" {_short(packet.data)}"
    summary = (f"from {decoded.uid} to {packet.namespace}: {packet.type.name}{data} "
               f"rooms={list(opts.rooms)} except={list(opts.except_)}")
    if opts.flags:
        summary += f" flags={dict(opts.flags)}"
    return Decoded("socketio-redis", "broadcast", summary, fields, decoded)


def _request_summary(request) -> str:
    parts = [f"from {request.uid}: {request.type.name}"]
    if request.request_id is not None:
        parts.append(f"id={request.request_id}")
    if request.opts is not None:
        parts.append(f"rooms={list(request.opts.rooms)} except={list(request.opts.except_)}")
    if request.rooms is not None:
        parts.append(f"join/leave={list(request.rooms)}")
    if request.packet is not None:
        parts.append(f"{request.packet.type.name} {_short(request.packet.data)}")
    if request.data is not ABSENT:
        parts.append(_short(request.data))
    return " ".join(parts)


def _fields(response) -> str:
    shown = {name: getattr(response, name) for name in
             ("sockets", "rooms", "data", "client_count", "packet")}
    return ", ".join(f"{k}={_short(v)}" for k, v in shown.items()
                     if v is not None and v is not ABSENT) or "(done)"


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
