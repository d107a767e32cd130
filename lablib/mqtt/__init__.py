"""MQTT 3.1.1 over WebSocket: a sans-I/O packet codec (:mod:`.packets`), a sans-I/O client session
(:mod:`.session`) and a thin asyncio client over lablib's WebSocket client (:mod:`.client`)."""

from .errors import (ConnectionRefused, InvalidPacket, MalformedPacket, MQTTError,
                     MQTTProtocolError, PacketTooLarge, SessionError)
from .packets import (NEED_DATA, Connack, Connect, Disconnect, PacketParser, PacketType, Pingreq,
                      Pingresp, Puback, Pubcomp, Publish, Pubrec, Pubrel, Suback, Subscribe,
                      Unsuback, Unsubscribe, decode, encode)
from .events import (Connected, MessageReceived, PongReceived, PublishAcknowledged,
                     SubscribeAcknowledged, UnsubscribeAcknowledged)
from .session import ClientSession, KeepaliveTimeout, MQTTState
from .client import Client

__all__ = [
    "ConnectionRefused", "InvalidPacket", "MalformedPacket", "MQTTError", "MQTTProtocolError",
    "PacketTooLarge", "SessionError", "NEED_DATA", "Connack", "Connect", "Disconnect",
    "PacketParser", "PacketType", "Pingreq", "Pingresp", "Puback", "Pubcomp", "Publish", "Pubrec",
    "Pubrel", "Suback", "Subscribe", "Unsuback", "Unsubscribe", "decode", "encode",
    "Connected", "MessageReceived", "PongReceived", "PublishAcknowledged", "SubscribeAcknowledged",
    "UnsubscribeAcknowledged", "ClientSession", "KeepaliveTimeout", "MQTTState", "Client",
]
