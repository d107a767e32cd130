"""The dissector's MQTT layer: WebSocket messages shown as MQTT 3.1.1 Control Packets.

Its ``DECODER`` describes :class:`MQTTDecoder` to the dissector (:mod:`lablib.capture.decoders`
lists it).  It reads the bytes with :class:`~lablib.mqtt.packets.PacketParser`, the
parser lablib's client uses, so a record shows what a lablib endpoint understood::

    layer  kind    summary
    mqtt   packet  CONNECT client_id='sub' clean_session=1 keep_alive=60
    mqtt   packet  CONNACK session_present=0 return_code=0
    mqtt   packet  PUBLISH qos=1 dup=1 retain=0 packet_id=1 topic='t/a' payload=b'21.5'

Which conversations are MQTT: those whose first client message starts with a CONNECT naming the
protocol "MQTT" (§3.1.2.1) - the same test a broker makes.  MQTT packets do not line up with
WebSocket messages (§6 [MQTT-6.0.0-2]): the decoder keeps one parser per direction, a packet cut
across messages is reported with the message that completes it (``raw`` is the packet's own
bytes), and a message may give several records.  A malformed packet gives one ``error`` record and
ends the MQTT dissection of that direction, as it ends the connection (§4.8).

Record fields: ``type`` (1-14), ``type_name``, ``flags`` (the fixed header's low nibble),
``remaining_length``, then the packet's own fields by their dataclass names (``client_id``,
``qos``, ``dup``, ``packet_id``, ``topic``, ``payload``, ``return_codes``, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..capture.decoding import Decoded, Decoder, Message
from .errors import MalformedPacket
from .packets import (MAX_REMAINING_LENGTH, NEED_DATA, Packet, PacketParser,
                      decode_remaining_length)

__all__ = ["MQTTDecoder", "packet_fields", "packet_summary"]


def packet_fields(packet: Packet, raw: bytes) -> dict[str, Any]:
    """The record fields of one packet (see the module docstring)."""
    length, _ = decode_remaining_length(raw)
    fields: dict[str, Any] = {"type": int(packet.type), "type_name": packet.type.name,
                              "flags": raw[0] & 0x0F, "remaining_length": length}
    fields.update({f.name: getattr(packet, f.name) for f in dataclasses.fields(packet)})
    return fields


def packet_summary(packet: Packet) -> str:
    """``PUBLISH qos=1 dup=0 retain=0 packet_id=7 topic='a/b' payload=b'hi'``: every field that
    differs from its default, booleans as 0/1 like the spec's bit diagrams.  A CONNECT's password
    shows as its length (``password=<6 bytes>``): summaries end up in tables and notebooks; the
    record's fields keep the bytes, which cross the wire in clear (§3.1.3.5)."""
    parts = [packet.type.name]
    for f in dataclasses.fields(packet):
        value = getattr(packet, f.name)
        if f.name in ("protocol_name", "protocol_level") and value == f.default:
            continue
        if f.name == "password" and value is not None:
            parts.append(f"password=<{len(value)} bytes>")
            continue
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, bytes) and len(value) > 40:
            value = value[:40] + b"..."
        if f.name in ("qos", "dup", "retain", "clean_session", "session_present", "return_code",
                      "keep_alive") or value not in (None, b"", 0, f.default):
            parts.append(f"{f.name}={value!r}")
    return " ".join(parts)


class MQTTDecoder:
    """One conversation's MQTT state: is it MQTT, and a parser and unread bytes per direction."""

    def __init__(self) -> None:
        self.is_mqtt: bool | None = None
        self.first_bytes = b""      # the client's bytes until we know whether this is MQTT
        self.parsers: dict[str, PacketParser] = {}
        self.pending: dict[str, bytes] = {}
        self.failed: set[str] = set()

    def __call__(self, message: Message) -> list[Decoded] | None:
        if message.text is not None or message.direction in self.failed:
            return None
        data = message.data
        if self.is_mqtt is None and message.direction == "c2s":
            self.first_bytes += data
            self.is_mqtt = _starts_with_mqtt_connect(self.first_bytes)
            if self.is_mqtt is None:
                return []            # too short to tell yet: wait for the next message
            data, self.first_bytes = self.first_bytes, b""
        if not self.is_mqtt:
            return None
        return self._packets(message.direction, data)

    def _packets(self, direction: str, data: bytes) -> list[Decoded]:
        parser = self.parsers.setdefault(direction, PacketParser(MAX_REMAINING_LENGTH))
        buffer = self.pending.get(direction, b"") + data
        decoded = []
        try:
            parser.feed(data)
            start = parser.offset
            while (packet := parser.next_packet()) is not NEED_DATA:
                size = parser.offset - start
                raw, buffer, start = buffer[:size], buffer[size:], parser.offset
                decoded.append(Decoded("mqtt", "packet", packet_summary(packet),
                                       packet_fields(packet, raw), packet, raw))
        except MalformedPacket as exc:   # §4.8: the connection ends here; so does our reading
            self.failed.add(direction)
            reason = f"MQTT: {exc.reason}"
            decoded.append(Decoded("error", "malformed", reason, {"error": reason}, exc, buffer))
        finally:
            self.pending[direction] = buffer
        return decoded


#: What the dissector needs to know of this layer (listed in lablib.capture.decoders): a fresh
#: MQTTDecoder per conversation.
DECODER = Decoder("mqtt", {"websocket"}, MQTTDecoder, per_conversation=True)


def _starts_with_mqtt_connect(data: bytes) -> bool | None:
    """Does ``data`` begin with CONNECT naming "MQTT" (§3.1.2.1: 0x10, length, 00 04 'MQTT')?
    None while ``data`` is too short to tell."""
    if not data:
        return None
    if data[0] != 0x10:
        return False
    try:
        header = decode_remaining_length(data)
    except MalformedPacket:
        return False
    if header is NEED_DATA:
        return None
    name = data[1 + header[1]:1 + header[1] + 6]
    if not b"\x00\x04MQTT".startswith(name):
        return False
    return True if len(name) == 6 else None
