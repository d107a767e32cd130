"""The client side of one Engine.IO v4 session, as a sans-I/O state machine.

The client's duties in the spec: read the handshake, answer every ping with a pong ("Heartbeat"),
consider the server gone when no ping came within ``pingInterval + pingTimeout``, and drive the
upgrade ("Upgrade")::

    client                                             server
      GET  ?EIO=4&transport=polling            ->      0{"sid":...}        HANDSHAKE -> OPEN
      (open a WebSocket with the sid)
      ws   2probe                              ->                          OPEN -> PROBING
                                               <-      ws 3probe           PROBING -> UPGRADING
      (pause polling: wait for the GET in flight; the server ends it with a noop)
      ws   5  (then anything buffered)         ->                          UPGRADING -> UPGRADED

Transitions::

    state      input                                outputs                              next
    ---------  -----------------------------------  -----------------------------------  ---------
    HANDSHAKE  open packet                          Opened                               OPEN
    HANDSHAKE  anything else                        SessionClosed                        CLOSED "parse error"
    *          ping                                 pong on the current transport        same
    *          message                              MessageReceived                      same
    *          close                                (CloseWebSocket)                     CLOSED "transport close"
    OPEN       start_upgrade() (polling)            SendWebSocket(2probe)                PROBING
    PROBING    ws 3probe                            PausePolling                         UPGRADING
    PROBING    ws anything else / ws closed         CloseWebSocket, UpgradeAborted       OPEN
    UPGRADING  polling_paused()                     SendWebSocket(5, buffered...), Upgraded UPGRADED
    *          tick: no ping for interval+timeout   (CloseWebSocket)                     CLOSED "ping timeout"
    *          close()                              SendPolling(1) or SendWebSocket(1)+Close CLOSED "forced close"

Outputs are those of :mod:`lablib.engineio.events`: the events both ends share, the WebSocket
actions, and the client's polling actions :class:`SendPolling` (POST these packets) and
:class:`PausePolling`.
"""

from __future__ import annotations

import enum
from collections import deque

from ..errors import PacketError
from .packets import OpenInfo, Packet, PacketType, decode_packet
from ..events import Output
from .events import (CloseWebSocket, MessageReceived, Opened, PausePolling, SendPolling,
                     SendWebSocket, SessionClosed, Upgraded, UpgradeAborted)
from .transport import PollingReceiver, Transport

__all__ = ["EngineClientState", "ClientSession"]


class EngineClientState(enum.Enum):
    """The states of a client session (see the table above)."""

    HANDSHAKE = "HANDSHAKE"  #: waiting for the open packet
    OPEN = "OPEN"
    PROBING = "PROBING"      #: "2probe" sent over the new WebSocket
    UPGRADING = "UPGRADING"  #: "3probe" received; polling is being paused
    UPGRADED = "UPGRADED"
    CLOSED = "CLOSED"


_ALIVE = (EngineClientState.OPEN, EngineClientState.PROBING, EngineClientState.UPGRADING, EngineClientState.UPGRADED)


class ClientSession(PollingReceiver):
    """One Engine.IO session seen from the client.  ``now`` is seconds."""

    def __init__(self, now: float, *, transport: Transport | str = Transport.POLLING) -> None:
        self.transport = Transport(transport)
        self.state = EngineClientState.HANDSHAKE
        self.info: OpenInfo | None = None
        self.close_reason: str | None = None
        self.websocket_open = self.transport is Transport.WEBSOCKET
        self._buffer: deque[Packet] = deque()
        self._dead_at: float | None = None

    @property
    def sid(self) -> str | None:
        return self.info.sid if self.info else None

    # --- receiving -------------------------------------------------------------------------

    def receive_websocket_message(self, data: str | bytes, now: float) -> list[Output]:
        try:
            packet = decode_packet(data)
        except PacketError:
            if self.state is EngineClientState.PROBING:
                return self._abort_upgrade("parse error")
            return self.fail("parse error")
        if self.state is EngineClientState.PROBING:
            if packet.type is PacketType.PONG and packet.data == "probe":
                self.state = EngineClientState.UPGRADING
                return [PausePolling()]
            return self._abort_upgrade("expected 3probe")
        return self.receive_packets([packet], now)

    def receive_packets(self, packets, now: float) -> list[Output]:
        outputs: list[Output] = []
        for packet in packets:
            if self.state is EngineClientState.HANDSHAKE:
                outputs += self._receive_open(packet, now)
            elif self.state in _ALIVE:
                outputs += self._receive_packet(packet, now)
        return outputs

    def _receive_open(self, packet: Packet, now: float) -> list[Output]:
        if packet.type is not PacketType.OPEN or not isinstance(packet.data, str):
            return self.fail("parse error")
        try:
            self.info = OpenInfo.from_json(packet.data)
        except PacketError:
            return self.fail("parse error")
        self.state = EngineClientState.OPEN
        self._reset_heartbeat(now)
        return [Opened(self.info)]

    def _receive_packet(self, packet: Packet, now: float) -> list[Output]:
        kind = packet.type
        if kind is PacketType.PING:
            self._reset_heartbeat(now)
            return self._send(Packet(PacketType.PONG, packet.data))
        if kind is PacketType.MESSAGE:
            assert isinstance(packet.data, (str, bytes))
            return [MessageReceived(packet.data)]
        if kind is PacketType.CLOSE:
            return self._close_websocket() + self._closed("transport close")
        return []  # noop (the end of a poll during an upgrade), a stray pong, ...

    # --- sending ---------------------------------------------------------------------------

    def send(self, data: str | bytes) -> list[Output]:
        if self.state not in _ALIVE:
            return []
        return self._send(Packet(PacketType.MESSAGE, data))

    def _send(self, packet: Packet) -> list[Output]:
        if self.state is EngineClientState.UPGRADING:
            self._buffer.append(packet)  # goes out over the WebSocket after the "5"
            return []
        if self.transport is Transport.WEBSOCKET:
            return [SendWebSocket((packet,))]
        return [SendPolling((packet,))]

    def close(self, now: float) -> list[Output]:
        """Close the session ("forced close"): a close packet, then the WebSocket if any."""
        if self.state not in _ALIVE:
            return self._closed("forced close") if self.state is EngineClientState.HANDSHAKE else []
        # Messages sent while UPGRADING wait for the "5"; closing now, they go first, over the
        # transport the close packet takes (engine.io-client too sends what it buffered
        # before its close packet).
        packets = (*self._buffer, Packet(PacketType.CLOSE))
        self._buffer.clear()
        if self.transport is Transport.WEBSOCKET:
            outputs: list[Output] = [SendWebSocket(packets)]
        else:
            outputs = [SendPolling(packets)]
        return outputs + self._close_websocket() + self._closed("forced close")

    # --- the upgrade -------------------------------------------------------------------------

    def start_upgrade(self, now: float) -> list[Output]:
        """A WebSocket with our sid is open: probe it."""
        if (self.state is not EngineClientState.OPEN or self.transport is not Transport.POLLING
                or self.info is None or "websocket" not in self.info.upgrades):
            return [CloseWebSocket()]
        self.state = EngineClientState.PROBING
        self.websocket_open = True
        return [SendWebSocket((Packet(PacketType.PING, "probe"),))]

    def polling_paused(self, now: float) -> list[Output]:
        """No GET or POST is in flight any more: complete the upgrade with "5"."""
        if self.state is not EngineClientState.UPGRADING:
            return []
        self.state = EngineClientState.UPGRADED
        self.transport = Transport.WEBSOCKET
        packets = (Packet(PacketType.UPGRADE),) + tuple(self._buffer)
        self._buffer.clear()
        return [SendWebSocket(packets), Upgraded()]

    def websocket_closed(self, now: float) -> list[Output]:
        if not self.websocket_open:
            return []
        self.websocket_open = False
        if self.state in (EngineClientState.PROBING, EngineClientState.UPGRADING):
            return self._abort_upgrade("transport closed")
        if self.state in _ALIVE or self.state is EngineClientState.HANDSHAKE:
            return self._closed("transport close")
        return []

    def _abort_upgrade(self, reason: str) -> list[Output]:
        outputs = self._close_websocket()
        self.state = EngineClientState.OPEN
        buffered = tuple(self._buffer)
        self._buffer.clear()
        outputs.append(UpgradeAborted(reason))
        if buffered:
            outputs.append(SendPolling(buffered))
        return outputs

    # --- the heartbeat -----------------------------------------------------------------------

    def _reset_heartbeat(self, now: float) -> None:
        assert self.info is not None
        self._dead_at = now + (self.info.pingInterval + self.info.pingTimeout) / 1000

    def next_deadline(self) -> float | None:
        return self._dead_at if self.state in _ALIVE else None

    def tick(self, now: float) -> list[Output]:
        """The server is considered gone after pingInterval + pingTimeout without a ping."""
        if self.state in _ALIVE and self._dead_at is not None and now >= self._dead_at:
            return self._close_websocket() + self._closed("ping timeout")
        return []

    # --- internals ---------------------------------------------------------------------------

    def fail(self, reason: str) -> list[Output]:
        if self.state is EngineClientState.CLOSED:
            return []
        return self._close_websocket() + self._closed(reason)

    def _close_websocket(self) -> list[Output]:
        if not self.websocket_open:
            return []
        self.websocket_open = False
        return [CloseWebSocket()]

    def _closed(self, reason: str) -> list[Output]:
        self.state = EngineClientState.CLOSED
        self.close_reason = reason
        self._dead_at = None
        self._buffer.clear()
        return [SessionClosed(reason)]
