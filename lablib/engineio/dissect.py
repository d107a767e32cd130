"""The dissector's Engine.IO layer: HTTP bodies and WebSocket messages shown as Engine.IO packets.

Its ``DECODER`` describes :func:`decode_engineio` to the dissector
(:mod:`lablib.capture.decoders` lists it).  It reads messages with the
layer's own parsers, :func:`~lablib.engineio.packets.decode_payload` and
:func:`~lablib.engineio.packets.decode_packet`, so a record shows exactly what a lablib
endpoint would have understood::

    layer     kind     summary                                                     carrier
    engineio  open     EIO open sid=ubOjC3dodZtkV4pyAAAA upgrades=[websocket] ...   GET response body
    engineio  ok       EIO ok (the POST was accepted)                              POST response body
    engineio  probe    EIO ping "probe" (upgrade probe)                            WebSocket text message
    engineio  probe    EIO pong "probe" (probe answered)
    engineio  upgrade  EIO upgrade
    engineio  noop     EIO noop
    engineio  message  EIO message "hello"        (inner: "hello", for the Socket.IO decoder)
    engineio  ping     EIO ping
    engineio  error    EIO error 1 "Session ID unknown" (HTTP 400)
    error     malformed  Engine.IO: cannot decode polling payload: unknown packet type 'x'

Which traffic is Engine.IO is read from the request target, as a server would
("Transports" section of the v4 spec): the path ends in ``/engine.io/`` or ``/socket.io/``
(the default and Socket.IO's mount point) and the query says ``EIO=4``.  Then

* **HTTP long-polling** (``transport=polling``): a GET response body or a POST request body is
  a *payload*, one record per packet, each with its own ``raw`` bytes and ``index``/``count``
  in the payload.  The ``ok`` answer to a POST is not a packet (the reference server writes
  ``ok``, python-engineio ``OK``).  A response with status >= 400 is an Engine.IO error: the
  spec's JSON ``{"code":1,"message":"Session ID unknown"}``, or a bare message (what the
  reference writes when it refuses a WebSocket upgrade, and what python-engineio writes
  for every error).
* **WebSocket** (the upgrade request had ``transport=websocket``): one packet per message,
  text messages as text packets, binary messages as binary Engine.IO messages.

Record fields: ``type`` (0-6), ``type_name``, ``data`` (str, bytes or None), ``binary``,
``transport``, ``sid`` (the session: the open packet's, else the request's ``sid`` query
parameter, None for a WebSocket opened without one); the open packet adds ``upgrades``,
``pingInterval``, ``pingTimeout``, ``maxPayload``; probes have ``probe`` True.

A message packet (type 4) carries ``inner=Message("engineio", data, text, ...)`` with the
message's bytes, so a higher layer (Socket.IO) can register with ``carriers=("engineio",)``.

What cannot be decoded (a body that is not UTF-8, a bad type character, malformed base64, an
open packet whose JSON is broken) becomes one ``error``/``malformed`` record for the whole
message - like the server, which refuses a payload as a whole - and never an exception.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from typing import Any

from ..capture.decoding import MAX_SIZE, Decoded, Decoder, Message
from ..errors import LablibError
from ..websocket.frames import Opcode
from . import http_compression
from .packets import RECORD_SEPARATOR, OpenInfo, Packet, PacketType, decode_packet, decode_payload

__all__ = ["PATHS", "engineio_query", "decode_engineio"]

#: Path endings that mark Engine.IO traffic: its default prefix and Socket.IO's.
PATHS = ("/engine.io/", "/socket.io/")

#: Characters of a message shown in a summary before it is cut.
PREVIEW = 40


def engineio_query(target: str | None) -> dict[str, str] | None:
    """The query parameters of an Engine.IO v4 request target, or None if it is not one.

    ``/socket.io/?EIO=4&transport=polling&t=N`` -> ``{"EIO": "4", "transport": "polling",
    "t": "N"}``; a path outside :data:`PATHS` or another ``EIO`` version -> None.
    """
    if not target:
        return None
    try:
        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    except ValueError:
        return None
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    if not path.endswith(PATHS) or query.get("EIO") != "4":
        return None
    return query


def decode_engineio(message: Message) -> list[Decoded] | None:
    """The Engine.IO records in one HTTP body or WebSocket message (None: not Engine.IO)."""
    query = engineio_query(message.target)
    if query is None:
        return None
    if message.carrier == "websocket":
        if query.get("transport") != "websocket":
            return None
        return _websocket_message(message, query)
    return _http_body(message, query)


# --- the two transports -----------------------------------------------------------------------

#: What the dissector needs to know of this layer (listed in lablib.capture.decoders).
DECODER = Decoder("engineio", {"http", "websocket"}, decode_engineio)


def _websocket_message(message: Message, query: dict[str, str]) -> list[Decoded]:
    """One packet per WebSocket message; a binary message is a binary Engine.IO message."""
    opcode = getattr(message.obj, "opcode", None)   # the reassembled message's first opcode
    binary = opcode == Opcode.BINARY if opcode is not None else message.text is None
    if not binary and message.text is None:
        return [_malformed("a text message that is not UTF-8")]
    try:
        packet = decode_packet(message.data if binary else message.text)
    except LablibError as exc:
        return [_malformed(f"cannot decode packet: {exc}")]
    return [_packet(packet, message.data, "websocket", message, query)]


def _http_body(message: Message, query: dict[str, str]) -> list[Decoded] | None:
    """A polling body: a payload of packets, the POST's ``ok``, or an error answer."""
    status = getattr(message.obj, "status", None)  # None for a request body
    if status is not None and status >= 400:
        return [_error_answer(message, status)]
    if query.get("transport") != "polling":
        return None
    coding = message.headers.get("content-encoding") if message.headers is not None else None
    if coding:  # a compressed poll answer (the server's httpCompression): read what it wraps
        try:
            data = http_compression.decode(message.data, coding, MAX_SIZE)
        except (ValueError, LablibError) as exc:
            return [_malformed(f"cannot decode the {coding} body: {exc}")]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        message = dataclasses.replace(message, data=data, text=text)
    if message.text is None:
        return [_malformed("polling body is not UTF-8 text")]
    if status is not None and message.text.lower() == "ok":
        return [Decoded("engineio", "ok", "EIO ok (the POST was accepted)",
                        {"transport": "polling", "sid": query.get("sid"), "body": message.text})]
    try:
        packets = decode_payload(message.text)
    except LablibError as exc:
        return [_malformed(f"cannot decode polling payload: {exc}")]
    # decode_payload split the body at the same separator: the pieces are each packet's bytes.
    pieces = message.text.split(RECORD_SEPARATOR)
    return [_packet(packet, piece.encode("utf-8", "surrogatepass"), "polling", message, query,
                    index=i, count=len(packets))
            for i, (packet, piece) in enumerate(zip(packets, pieces))]


# --- records ----------------------------------------------------------------------------------

def _packet(packet: Packet, raw: bytes, transport: str, message: Message, query: dict[str, str],
            *, index: int | None = None, count: int | None = None) -> Decoded:
    fields: dict[str, Any] = {
        "type": int(packet.type), "type_name": packet.type.name, "data": packet.data,
        "binary": packet.binary, "transport": transport, "sid": query.get("sid"),
    }
    if index is not None:
        fields["index"], fields["count"] = index, count
    kind = packet.type.name.lower()
    summary = f"EIO {kind}"
    inner = None
    if packet.type is PacketType.OPEN:
        try:
            info = OpenInfo.from_json(packet.data or "")
        except LablibError as exc:
            return _malformed(f"open packet: {exc}", raw)
        fields.update(info.to_dict())
        summary = (f"EIO open sid={info.sid} upgrades=[{','.join(info.upgrades)}] "
                   f"pingInterval={info.pingInterval} pingTimeout={info.pingTimeout} "
                   f"maxPayload={info.maxPayload}")
    elif packet.type in (PacketType.PING, PacketType.PONG) and packet.data == "probe":
        kind = "probe"
        fields["probe"] = True
        role = "upgrade probe" if packet.type is PacketType.PING else "probe answered"
        summary = f"EIO {packet.type.name.lower()} \"probe\" ({role})"
    elif packet.type is PacketType.MESSAGE:
        summary = f"EIO message {_preview(packet.data, transport)}"
        if isinstance(packet.data, bytes):
            inner = Message("engineio", packet.data, None, message.direction, message.target,
                            None, packet)
        else:
            assert isinstance(packet.data, str)
            inner = Message("engineio", packet.data.encode("utf-8", "surrogatepass"),
                            packet.data, message.direction, message.target, None, packet)
    elif packet.data is not None:
        summary += f" {_quote(str(packet.data))}"
    return Decoded("engineio", kind, summary, fields, packet, raw, inner)


def _error_answer(message: Message, status: int) -> Decoded:
    """An HTTP error answer: the spec's ``{"code":N,"message":"..."}`` or a bare message."""
    text = message.text if message.text is not None else message.data.decode("latin-1")
    code, what, is_json = None, text, False
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("code"), int) \
            and not isinstance(value.get("code"), bool) and isinstance(value.get("message"), str):
        code, what, is_json = value["code"], value["message"], True
    fields = {"status": status, "code": code, "message": what, "json": is_json}
    head = f"EIO error {code}" if is_json else "EIO error"
    return Decoded("engineio", "error", f"{head} {_quote(what)} (HTTP {status})", fields)


def _malformed(reason: str, raw: bytes | None = None) -> Decoded:
    summary = f"Engine.IO: {reason}"
    return Decoded("error", "malformed", summary, {"error": summary, "layer": "engineio"},
                   None, raw)


def _quote(text: str) -> str:
    """The text quoted, control characters escaped, cut after PREVIEW characters.

    Double quotes (``"hello"``) unless the text holds some: then Python's single quotes, so that
    JSON inside a message stays readable (``'2["echo","Hello"]'``).
    """
    if len(text) > PREVIEW:
        text = text[:PREVIEW - 3] + "..."
    shown = repr(text)
    if shown[0] == "'" and '"' not in text:
        shown = '"' + shown[1:-1].replace("\\'", "'") + '"'
    return shown


def _preview(data: str | bytes | dict | None, transport: str) -> str:
    if isinstance(data, bytes):
        how = "binary (base64)" if transport == "polling" else "binary"
        shown = data[:16].hex(" ") + (" ..." if len(data) > 16 else "")
        size = "1 byte" if len(data) == 1 else f"{len(data)} bytes"
        return f"{how} {size}" + (f" {shown}" if data else "")
    return _quote(str(data if data is not None else ""))
