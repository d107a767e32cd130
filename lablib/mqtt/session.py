"""The client side of an MQTT 3.1.1 session, sans-I/O: calls in -> bytes out, bytes in -> events.

A session (§4.1) outlives a network connection when ``clean_session`` is False: the client keeps
its QoS 1 and 2 messages "in flight" until they are acknowledged, and on reconnecting re-sends
them with their original Packet Identifiers - PUBLISH with DUP=1, PUBREL as is (§4.4
[MQTT-4.4.0-1], §3.3.1.1 [MQTT-3.3.1-1]).  The three delivery flows (§4.3)::

    QoS 0   PUBLISH ->                                        (at most once)
    QoS 1   PUBLISH ->  <- PUBACK                              (at least once)
    QoS 2   PUBLISH ->  <- PUBREC   PUBREL ->  <- PUBCOMP      (exactly once)

Incoming QoS 2 uses §4.3.3's "method B": the Packet Identifier is remembered from PUBLISH until
PUBREL, so a re-sent PUBLISH with that identifier is acknowledged but not delivered twice.

The state machine, as a table (``state``, what arrives -> what happens)::

    DISCONNECTED  connect()          -> CONNECTING, CONNECT queued
    CONNECTING    CONNACK rc=0       -> CONNECTED, Connected event, re-sends queued (§4.4)
    CONNECTING    CONNACK rc!=0      -> DISCONNECTED, ConnectionRefused raised
    CONNECTING    anything else      -> MQTTProtocolError ([MQTT-3.2.0-1]: CONNACK comes first)
    CONNECTED     PUBLISH/PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK/PINGRESP -> the flows above
    CONNECTED     CONNACK, or a packet only a client sends -> MQTTProtocolError (§4.8)
    any           connection_lost()  -> DISCONNECTED (clean_session: the session is forgotten)

Nothing here reads a clock: every call takes ``now`` (seconds, any monotonic origin), and
:meth:`ClientSession.next_deadline` tells the driver when to call :meth:`ClientSession.tick`,
which sends PINGREQ when ``keep_alive`` seconds passed without the client sending anything
(§3.1.2.10 [MQTT-3.1.2-23]) and raises :class:`KeepaliveTimeout` when the PINGRESP does not come
within ``ping_timeout``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Iterable

from . import packets as p
from .errors import ConnectionRefused, MQTTError, MQTTProtocolError, SessionError
from .events import (Connected, Event, MessageReceived, PongReceived, PublishAcknowledged,
                     SubscribeAcknowledged, UnsubscribeAcknowledged)

__all__ = ["MQTTState", "ClientSession", "KeepaliveTimeout"]


class KeepaliveTimeout(MQTTError):
    """No PINGRESP within ``ping_timeout`` of our PINGREQ: close the connection (§3.1.2.10)."""


class MQTTState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"   #: CONNECT sent, waiting for CONNACK
    CONNECTED = "connected"


@dataclass(slots=True)
class _InFlight:
    """One of our QoS 1/2 messages not yet acknowledged; ``released`` once PUBREC came (QoS 2)."""

    publish: p.Publish
    released: bool = False


class ClientSession:
    """An MQTT client's session state, across connections.

    ``max_inflight`` bounds our unacknowledged QoS 1/2 messages (:meth:`publish` refuses more:
    the driver waits for :attr:`window_open`).  ``max_packet_size`` bounds what we accept.
    """

    def __init__(self, client_id: str, *, clean_session: bool = True, keep_alive: int = 60,
                 ping_timeout: float | None = None, max_inflight: int = 20,
                 max_packet_size: int = p.DEFAULT_MAX_PACKET_SIZE,
                 username: str | None = None, password: bytes | None = None) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.client_id = client_id
        self.clean_session = clean_session
        self.keep_alive = keep_alive
        self.ping_timeout = keep_alive if ping_timeout is None else ping_timeout
        self.max_inflight = max_inflight
        self.max_packet_size = max_packet_size
        self.username, self.password = username, password
        self.state = MQTTState.DISCONNECTED
        self._parser = p.PacketParser(max_packet_size)
        self._outbox: list[bytes] = []
        self._last_sent = 0.0
        self._ping_sent_at: float | None = None
        self._next_id = 1
        # Session state (§4.1): kept across connections unless clean_session.
        self._inflight: dict[int, _InFlight] = {}       # ours, in send order
        self._awaiting_release: set[int] = set()       # theirs: QoS 2 received, PUBREL not yet
        self._pending: dict[int, p.Subscribe | p.Unsubscribe] = {}

    # --- what the driver reads ---------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes queued since the last call (packets, in order)."""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    @property
    def inflight(self) -> tuple[int, ...]:
        """Packet Identifiers of our unacknowledged QoS 1/2 messages, oldest first."""
        return tuple(self._inflight)

    @property
    def window_open(self) -> bool:
        """True while another QoS 1/2 message may be published (``max_inflight`` not reached)."""
        return len(self._inflight) < self.max_inflight

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do (None: keep alive is off, or not connected yet)."""
        if self.state is not MQTTState.CONNECTED or not self.keep_alive:
            return None
        if self._ping_sent_at is not None:
            return self._ping_sent_at + self.ping_timeout
        return self._last_sent + self.keep_alive

    # --- calls: connecting ------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Queue CONNECT on a new network connection (§3.1)."""
        if self.state is not MQTTState.DISCONNECTED:
            raise SessionError(f"connect() while {self.state.value}")
        if self.clean_session:
            self._forget()   # [MQTT-3.1.2-6]: a clean session starts empty
        self._parser = p.PacketParser(self.max_packet_size)
        self._outbox.clear()
        self._ping_sent_at = None
        self.state = MQTTState.CONNECTING
        self._send(p.Connect(self.client_id, self.clean_session, self.keep_alive,
                             username=self.username, password=self.password), now)

    def disconnect(self, now: float) -> None:
        """Queue DISCONNECT (§3.14); the driver then closes the connection."""
        if self.state is MQTTState.CONNECTED:
            self._send(p.Disconnect(), now)
        self.connection_lost()

    def connection_lost(self) -> None:
        """The network connection is gone.  A clean session ends with it (§3.1.2.4)."""
        self.state = MQTTState.DISCONNECTED
        self._pending.clear()     # SUBSCRIBE/UNSUBSCRIBE are not re-sent (§4.4 lists PUBLISH/PUBREL)
        self._ping_sent_at = None
        if self.clean_session:
            self._forget()

    def _forget(self) -> None:
        self._inflight.clear()
        self._awaiting_release.clear()
        self._pending.clear()

    # --- calls: messages and subscriptions ----------------------------------------------------

    def publish(self, topic: str, payload: bytes, now: float, *, qos: int = 0,
                retain: bool = False) -> int | None:
        """Queue a PUBLISH; returns its Packet Identifier (None at QoS 0)."""
        self._require_connected("publish")
        if qos and not self.window_open:
            raise SessionError(f"{self.max_inflight} messages already in flight (max_inflight)")
        packet_id = self._allocate_id() if qos else None
        packet = p.Publish(topic, bytes(payload), qos, retain, False, packet_id)
        if qos:
            self._inflight[packet_id] = _InFlight(packet)
        self._send(packet, now)
        return packet_id

    def subscribe(self, topics: Iterable[tuple[str, int]], now: float) -> int:
        """Queue SUBSCRIBE for (Topic Filter, QoS) pairs; the answer is a SubscribeAcknowledged."""
        self._require_connected("subscribe")
        packet = p.Subscribe(self._allocate_id(), tuple((f, q) for f, q in topics))
        self._pending[packet.packet_id] = packet
        self._send(packet, now)
        return packet.packet_id

    def unsubscribe(self, topics: Iterable[str], now: float) -> int:
        self._require_connected("unsubscribe")
        packet = p.Unsubscribe(self._allocate_id(), tuple(topics))
        self._pending[packet.packet_id] = packet
        self._send(packet, now)
        return packet.packet_id

    def ping(self, now: float) -> None:
        """Queue PINGREQ (also what :meth:`tick` does when keep alive is due)."""
        self._require_connected("ping")
        self._send(p.Pingreq(), now)
        self._ping_sent_at = now

    def tick(self, now: float) -> None:
        """Keep alive (§3.1.2.10): PINGREQ when due; KeepaliveTimeout when PINGRESP is late."""
        if self.state is not MQTTState.CONNECTED or not self.keep_alive:
            return
        if self._ping_sent_at is not None:
            if now >= self._ping_sent_at + self.ping_timeout:
                raise KeepaliveTimeout(f"no PINGRESP {self.ping_timeout}s after PINGREQ (§3.1.2.10)")
        elif now >= self._last_sent + self.keep_alive:
            self.ping(now)

    # --- bytes in -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed received bytes; returns the events; answers (PUBACK, ...) go to the outbox."""
        events: list[Event] = []
        self._parser.feed(data)
        for packet in self._parser:
            event = self._handle(packet, now)
            if event is not None:
                events.append(event)
        return events

    def _handle(self, packet: p.Packet, now: float) -> Event | None:
        if self.state is MQTTState.CONNECTING:
            if not isinstance(packet, p.Connack):
                raise MQTTProtocolError(f"{packet.type.name} before CONNACK ([MQTT-3.2.0-1])")
            return self._connack(packet, now)
        if self.state is not MQTTState.CONNECTED:
            raise SessionError("data received while disconnected")
        handler = self._HANDLERS.get(type(packet))
        if handler is None:
            raise MQTTProtocolError(f"a server must not send {packet.type.name} to a client now (§4.8)")
        return handler(self, packet, now)

    def _connack(self, packet: p.Connack, now: float) -> Event:
        if packet.return_code:
            self.connection_lost()
            raise ConnectionRefused(packet.return_code)
        self.state = MQTTState.CONNECTED
        discarded: tuple[int, ...] = ()
        resent: list[int] = []
        if not packet.session_present:
            discarded = tuple(self._inflight)   # the server has no session: ours is void
            self._forget()
        else:
            for packet_id, flight in self._inflight.items():   # §4.4: in the original order
                self._send(p.Pubrel(packet_id) if flight.released
                           else replace(flight.publish, dup=True), now)
                resent.append(packet_id)
        return Connected(packet.session_present, tuple(resent), discarded)

    def _on_publish(self, packet: p.Publish, now: float) -> Event | None:
        if packet.qos == 1:
            self._send(p.Puback(packet.packet_id), now)        # §4.3.2
        elif packet.qos == 2:
            self._send(p.Pubrec(packet.packet_id), now)        # §4.3.3
            if packet.packet_id in self._awaiting_release:
                return None                                   # already delivered: method B
            self._awaiting_release.add(packet.packet_id)
        return MessageReceived(packet)

    def _on_pubrel(self, packet: p.Pubrel, now: float) -> None:
        self._awaiting_release.discard(packet.packet_id)
        self._send(p.Pubcomp(packet.packet_id), now)           # [MQTT-4.3.3-2]
        return None

    def _on_puback(self, packet: p.Puback, now: float) -> Event | None:
        flight = self._inflight.get(packet.packet_id)
        if flight is None or flight.publish.qos != 1:
            return None     # not ours (e.g. an answer to a session the server no longer has)
        del self._inflight[packet.packet_id]
        return PublishAcknowledged(packet.packet_id, 1)

    def _on_pubrec(self, packet: p.Pubrec, now: float) -> None:
        flight = self._inflight.get(packet.packet_id)
        if flight is None or flight.publish.qos != 2:
            return None
        flight.released = True      # from now on we re-send PUBREL, never the PUBLISH [MQTT-4.3.3-1]
        self._send(p.Pubrel(packet.packet_id), now)
        return None

    def _on_pubcomp(self, packet: p.Pubcomp, now: float) -> Event | None:
        flight = self._inflight.get(packet.packet_id)
        if flight is None or not flight.released:
            return None
        del self._inflight[packet.packet_id]
        return PublishAcknowledged(packet.packet_id, 2)

    def _on_suback(self, packet: p.Suback, now: float) -> Event:
        request = self._pending.pop(packet.packet_id, None)
        if not isinstance(request, p.Subscribe):
            raise MQTTProtocolError(f"SUBACK for unknown Packet Identifier {packet.packet_id}")
        if len(packet.return_codes) != len(request.topics):
            raise MQTTProtocolError(f"SUBACK has {len(packet.return_codes)} return codes for "
                                    f"{len(request.topics)} filters ([MQTT-3.8.4-5])")
        return SubscribeAcknowledged(packet.packet_id, packet.return_codes)

    def _on_unsuback(self, packet: p.Unsuback, now: float) -> Event:
        request = self._pending.pop(packet.packet_id, None)
        if not isinstance(request, p.Unsubscribe):
            raise MQTTProtocolError(f"UNSUBACK for unknown Packet Identifier {packet.packet_id}")
        return UnsubscribeAcknowledged(packet.packet_id)

    def _on_pingresp(self, packet: p.Pingresp, now: float) -> Event:
        self._ping_sent_at = None
        return PongReceived()

    _HANDLERS = {
        p.Publish: _on_publish, p.Puback: _on_puback, p.Pubrec: _on_pubrec,
        p.Pubrel: _on_pubrel, p.Pubcomp: _on_pubcomp, p.Suback: _on_suback,
        p.Unsuback: _on_unsuback, p.Pingresp: _on_pingresp,
    }

    # --- helpers ------------------------------------------------------------------------------

    def _require_connected(self, what: str) -> None:
        if self.state is not MQTTState.CONNECTED:
            raise SessionError(f"{what}() while {self.state.value}")

    def _send(self, packet: p.Packet, now: float) -> None:
        self._outbox.append(p.encode(packet))
        self._last_sent = now

    def _allocate_id(self) -> int:
        """§2.3.1: a Packet Identifier not in use by another of our unacknowledged packets."""
        in_use = self._inflight.keys() | self._pending.keys()
        if len(in_use) >= 0xFFFF:
            raise SessionError("all 65535 Packet Identifiers are in use")
        while self._next_id in in_use:
            self._next_id = self._next_id % 0xFFFF + 1
        packet_id = self._next_id
        self._next_id = self._next_id % 0xFFFF + 1
        return packet_id
