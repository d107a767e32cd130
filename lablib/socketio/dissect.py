"""The dissector's Socket.IO layer: Engine.IO messages shown as Socket.IO packets.

Its ``DECODER`` describes :class:`SocketIODecoder` to the dissector
(:mod:`lablib.capture.decoders` lists it).  It reads the Engine.IO
messages that :mod:`lablib.engineio.dissect` hands on (``carriers=("engineio",)``) with the
layer's own :class:`lablib.socketio.packets.Decoder`, so a record shows exactly what a lablib
endpoint would have understood::

    layer     kind           summary
    socketio  connect        SIO CONNECT /chat {"token":"abc"}
    socketio  connect        SIO CONNECT /chat {"sid":"BopSTnvHw9CmDOIPAAAB"}
    socketio  event          SIO EVENT / "echo" ["hi"] id=1
    socketio  ack            SIO ACK / id=1 ["hi"]
    socketio  binary_event   SIO BINARY_EVENT / "upload" 1 attachment
    socketio  attachment     SIO attachment num=0 of BINARY_EVENT / "upload": 4 bytes 01 02 03 04
    socketio  connect_error  SIO CONNECT_ERROR /x {"message":"Invalid namespace"}
    socketio  disconnect     SIO DISCONNECT /chat
    error     malformed      Socket.IO: unknown packet type '9'

Which traffic is Socket.IO: the Engine.IO messages of a request target whose path ends in
``/socket.io/`` (Socket.IO's mount point); plain Engine.IO under ``/engine.io/`` is left alone.

**Binary attachments.**  A BINARY_EVENT or BINARY_ACK is a text message announcing N
attachments, followed by N binary Engine.IO messages (Socket.IO v5, "Packet encoding").  The
decoder keeps one :class:`~lablib.socketio.packets.Decoder` per direction of each conversation
(the dissector creates a :class:`SocketIODecoder` per conversation), so the attachments are
joined back to their packet:

* the text message gives the packet's record (kind ``binary_event``/``binary_ack``), at the
  packet's place in the stream;
* each binary message gives an ``attachment`` record: its ``num`` (the placeholder it fills),
  and ``packet``, the number of the packet it belongs to;
* when the last attachment arrives, the packet's record is completed *in place*: its ``data``
  and ``args`` then hold the bytes where the placeholders were, and ``attachments`` the bytes
  in order.  All of this happens inside :func:`~lablib.capture.dissect.dissect`: the records it
  returns do not change afterwards.  If the attachments never all arrive, the record keeps its
  placeholders and ``len(fields["attachments"]) < fields["attachment_count"]``.

Record fields: ``packet`` (the packet's number in its direction of the TCP connection, from
0), ``type`` (0-6), ``type_name``, ``namespace``, ``id`` (the ack id or None), ``data`` (the
JSON data, bytes put back), ``event`` and ``args`` (events: the name and the arguments after
it; acks: ``args`` is the data; None for the other types), ``attachments`` (list of bytes),
``attachment_count`` (announced; 0 if not binary).  Attachment records carry ``packet``,
``num``, ``count``, ``size`` and ``data``.
``obj`` is the decoded :class:`~lablib.socketio.packets.Packet`, or for a binary packet a
:class:`BinaryPacket` (attachment records share it with their packet).

What lablib's decoder refuses (bad type, bad attachment count, non-JSON data, an ack id too
long, an attachment nobody announced, a text packet while attachments are still expected)
becomes an ``error``/``malformed`` record, never an exception; the decoder then starts afresh,
as a receiver would after closing the connection.  Limitation: state does not cross TCP
connections, so with long-polling over several connections a binary packet whose attachments
travel in another HTTP exchange on another connection is not joined (python-socketio and lablib
send a packet and its attachments in one polling payload).
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..capture import decoding
from ..capture.decoding import Decoded, Message
from ..errors import PacketError
from .packets import Decoder, Packet, PacketType

__all__ = ["BinaryPacket", "SocketIODecoder", "is_socketio"]

#: The path ending that marks Socket.IO traffic (the default mount point of both libraries).
PATH = "/socket.io/"

#: Attachments one binary packet may announce here.  lablib's endpoints refuse more than
#: :data:`~lablib.socketio.packets.DEFAULT_MAX_ATTACHMENTS` (10) but python-socketio sends any
#: number: the dissector shows them, and only bounds what a capture can make it hold.
MAX_ATTACHMENTS = 10_000

#: Characters of JSON shown in a summary before it is cut.
PREVIEW = 60


def is_socketio(target: str | None) -> bool:
    """True if an Engine.IO request target is Socket.IO's: its path ends in ``/socket.io/``."""
    if not target:
        return False
    try:
        path = urllib.parse.urlsplit(target).path
    except ValueError:
        return False
    return (path if path.endswith("/") else path + "/").endswith(PATH)


@dataclass(eq=False)
class BinaryPacket:
    """A binary packet as the dissector saw it: its text first, then its attachments.

    ``header`` is the packet as its text says (placeholders in the data), ``count`` the
    attachments it announced, ``attachments`` those that arrived, ``packet`` the completed
    packet (bytes put back) once they all have, else None.
    """

    number: int
    header: Packet
    count: int
    attachments: list[bytes] = field(default_factory=list)
    packet: Packet | None = None

    @property
    def complete(self) -> bool:
        return self.packet is not None


@dataclass
class _Direction:
    """One direction of one conversation: lablib's decoder and the packet being completed."""

    decoder: Decoder = field(default_factory=lambda: Decoder(max_attachments=MAX_ATTACHMENTS))
    packets: int = 0                            # packets numbered so far
    pending: BinaryPacket | None = None
    fields: dict[str, Any] | None = None        # the pending packet's record fields


class SocketIODecoder:
    """The Socket.IO decoder of one conversation (the dissector makes one per conversation)."""

    def __init__(self) -> None:
        self._directions: dict[str, _Direction] = {}

    def __call__(self, message: Message) -> list[Decoded] | None:
        if not is_socketio(message.target):
            return None
        state = self._directions.setdefault(message.direction, _Direction())
        if message.text is not None:
            return self._text(state, message.text)
        return self._attachment(state, message.data)

    # -- text: a packet (perhaps the head of a binary one) -------------------------------------

    def _text(self, state: _Direction, text: str) -> list[Decoded]:
        out: list[Decoded] = []
        if state.pending is not None:
            # The decoder would refuse this text; say which packet lost its attachments, then
            # read the text as a new packet (as a fresh decoder would).
            missing = state.pending.count - len(state.pending.attachments)
            out.append(_malformed(f"a text packet arrived while {missing} attachment(s) of "
                                  f"packet {state.pending.number} were still expected"))
            state.decoder.reset()
            state.pending = state.fields = None
        try:
            packet = state.decoder.receive(text)
        except PacketError as exc:
            return out + [_malformed(str(exc))]
        number = state.packets
        state.packets += 1
        if packet is not None:
            return out + [Decoded("socketio", packet.type.name.lower(), _summary(packet),
                                  _fields(number, packet, [], 0), packet)]
        header, count = _pending_header(state.decoder), state.decoder.awaiting_attachments
        binary = BinaryPacket(number, header, count)
        fields = _fields(number, header, binary.attachments, count)
        state.pending, state.fields = binary, fields
        summary = f"SIO {_binary_head(header)} {count} attachment{'s' if count != 1 else ''}"
        if header.type is PacketType.EVENT and header.id is not None:
            summary += f" id={header.id}"
        return out + [Decoded("socketio", fields["type_name"].lower(), summary, fields, binary)]

    # -- binary: an attachment -----------------------------------------------------------------

    def _attachment(self, state: _Direction, data: bytes) -> list[Decoded]:
        binary, fields = state.pending, state.fields
        try:
            packet = state.decoder.receive(data)
        except PacketError as exc:
            state.pending = state.fields = None
            return [_malformed(str(exc))]
        assert binary is not None and fields is not None  # receive() accepted an attachment
        num = len(binary.attachments)
        binary.attachments.append(data)   # the record's "attachments" list: the same object
        if packet is not None:
            binary.packet = packet
            state.pending = state.fields = None
            _complete(fields, packet)
        summary = f"SIO attachment num={num} of {_binary_head(binary.header)}: {_glimpse(data)}"
        return [Decoded("socketio", "attachment", summary,
                        {"packet": binary.number, "num": num, "count": binary.count,
                         "size": len(data), "data": data}, binary)]


# --- records ------------------------------------------------------------------------------------

#: What the dissector needs to know of this layer (listed in lablib.capture.decoders): a fresh
#: SocketIODecoder per conversation.
DECODER = decoding.Decoder("socketio", {"engineio"}, SocketIODecoder, per_conversation=True)


def _pending_header(decoder: Decoder) -> Packet:
    """The binary packet ``decoder`` is completing, placeholders still in.

    lablib's Decoder keeps it in ``_partial`` and offers no public accessor yet; reading it
    here is what keeps the dissector from parsing the text a second time.
    """
    header = decoder._partial  # noqa: SLF001
    assert header is not None
    return header


def _fields(number: int, packet: Packet, attachments: list[bytes], count: int) -> dict[str, Any]:
    data = packet.data
    fields: dict[str, Any] = {
        "packet": number, "type": int(packet.type), "type_name": packet.type.name,
        "namespace": packet.namespace, "id": packet.id,
        "data": list(data) if isinstance(data, list) else data,
        "event": None, "args": None, "attachments": attachments, "attachment_count": count,
    }
    if count:  # a binary packet: the type its text announced
        binary = {PacketType.EVENT: PacketType.BINARY_EVENT, PacketType.ACK: PacketType.BINARY_ACK}
        fields["type"] = int(binary[packet.type])
        fields["type_name"] = binary[packet.type].name
    if packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT):
        fields["event"] = data[0]
        fields["args"] = list(data[1:])
    elif packet.type in (PacketType.ACK, PacketType.BINARY_ACK):
        fields["args"] = list(data)
    return fields


def _complete(fields: dict[str, Any], packet: Packet) -> None:
    """Put the attachments into a binary packet's record (its lists are updated in place)."""
    fields["data"][:] = packet.data
    event = packet.type is PacketType.BINARY_EVENT
    fields["args"][:] = packet.data[1:] if event else packet.data


def _summary(packet: Packet) -> str:
    """``SIO EVENT / "echo" ["hi"] id=1``: type, namespace, then what the type carries."""
    head = f"SIO {packet.type.name} {packet.namespace}"
    data = packet.data
    if packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT):
        head += f" {_json(data[0])} {_json(data[1:])}"
        if packet.id is not None:
            head += f" id={packet.id}"
    elif packet.type in (PacketType.ACK, PacketType.BINARY_ACK):
        head += f" id={packet.id} {_json(data)}"
    elif data is not None:
        head += f" {_json(data)}"
    return head


def _binary_head(header: Packet) -> str:
    """``BINARY_EVENT / "upload"`` or ``BINARY_ACK / id=3``, for a header with placeholders."""
    if header.type is PacketType.EVENT:
        return f"BINARY_EVENT {header.namespace} {_json(header.data[0])}"
    return f"BINARY_ACK {header.namespace} id={header.id}"


def _json(value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= PREVIEW else text[:PREVIEW - 3] + "..."


def _glimpse(data: bytes) -> str:
    size = "1 byte" if len(data) == 1 else f"{len(data)} bytes"
    shown = data[:16].hex(" ") + (" ..." if len(data) > 16 else "")
    return f"{size} {shown}".rstrip()


def _malformed(reason: str) -> Decoded:
    summary = f"Socket.IO: {reason}"
    return Decoded("error", "malformed", summary, {"error": summary, "layer": "socketio"})
