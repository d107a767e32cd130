"""The server side of one Engine.IO v4 session, as a sans-I/O state machine.

A session outlives the HTTP requests and the WebSocket that carry it: the long-poll GETs come
and go, POSTs bring packets, a WebSocket may join and take over.  :class:`ServerSession` holds
what survives them - the state, the heartbeat timers, the buffer of packets waiting for a
transport - and decides, for every input, what must happen.  It owns no socket and no clock:
every method takes ``now`` (seconds, e.g. ``loop.time()``), and the driver calls
:meth:`ServerSession.tick` at :meth:`ServerSession.next_deadline`.

Every method returns a list of *outputs* (:mod:`lablib.engineio.events`), in order.  Events
are for the application (a message arrived, the session closed); actions are for the driver:

* :class:`HoldPoll` - keep the GET just received open; it is now *the held poll*.
* :class:`AnswerPoll` - answer the held poll (200, the packets as a payload).
* :class:`RefuseRequest` - answer the request just received with an error status.
* :class:`SendWebSocket` - send these packets over the session's WebSocket, one per message.
* :class:`CloseWebSocket` - close the session's WebSocket.

States (the spec's "Handshake", "Heartbeat" and "Upgrade" sections; where it is silent, the
reference server engine.io ``lib/socket.ts`` and ``lib/transports/polling.ts``)::

    OPEN       the session runs on the transport it started with (polling, or websocket)
    PROBING    a WebSocket joined a polling session; we wait for its "2probe"
    UPGRADING  probe answered with "3probe"; polling is paused: the held GET was released
               with a noop and every new GET gets a noop at once; we wait for "5"
    UPGRADED   the client sent "5": the WebSocket is the transport, polling is refused
    CLOSING    we closed a polling session with no GET held: the close packet waits for one
    CLOSED     over; the sid is forgotten

Transitions (``*`` = any of OPEN, PROBING, UPGRADING, UPGRADED)::

    state      input                              outputs                             next
    ---------  ---------------------------------  ----------------------------------  ---------
    OPEN       GET (no poll held)                 HoldPoll [, AnswerPoll(buffer)]     OPEN
    OPEN       GET while one is held              AnswerPoll(1), RefuseRequest(400)   CLOSED "transport error"
    *          message                            MessageReceived                     same
    *          pong                               PongReceived (next ping in interval) same
    *          ping (v4: wrong direction)         AnswerPoll(1) if held               CLOSED "transport error"
    *          close "1" (polling)                AnswerPoll(6) if held               CLOSED "transport close"
    OPEN       WebSocket with our sid joins       -                                   PROBING
    PROBING    ws "2probe"                        SendWebSocket(3probe), AnswerPoll(6) UPGRADING
    PROBING    ws: anything else                  CloseWebSocket, UpgradeAborted      OPEN
    UPGRADING  GET                                HoldPoll, AnswerPoll(6)             UPGRADING
    UPGRADING  ws "5"                             Upgraded, SendWebSocket(buffer)     UPGRADED
    UPGRADING  ws: anything else                  CloseWebSocket, UpgradeAborted      OPEN
    PROBING/UPGRADING  ws closed / upgrade timeout  (CloseWebSocket,) UpgradeAborted  OPEN
    UPGRADED   ws "1" (ws closed: no action)      CloseWebSocket                      CLOSED "transport close"
    *          tick: pingInterval elapsed         PING queued (flushed if possible)   same
    *          tick: no pong within pingTimeout   AnswerPoll(1) if held, CloseWebSocket CLOSED "ping timeout"
    *          close(), polling, GET held         AnswerPoll(buffer + 1)              CLOSED "forced close"
    *          close(), polling, no GET held      close packet queued                 CLOSING
    *          close(), websocket                 SendWebSocket(buffer), CloseWebSocket CLOSED "forced close"
    CLOSING    GET                                HoldPoll, AnswerPoll(buffer + 1)    CLOSED "forced close"
    CLOSING    tick: close timeout (30 s)         -                                   CLOSED "forced close"

The close reasons are the reference server's.  Where this machine is stricter than the reference
(and why), see the notes on each method.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Sequence

from ..errors import EngineIOError, LocalProtocolError, PacketError
from ..events import Output
from .events import (AnswerPoll, CloseWebSocket, HoldPoll, MessageReceived, PongReceived,
                     RefuseRequest, SendWebSocket, SessionClosed, Upgraded, UpgradeAborted)
from .packets import RECORD_SEPARATOR, OpenInfo, Packet, PacketType, decode_packet
from .transport import PollingReceiver, Transport

__all__ = ["EngineState", "ServerSession"]


class EngineState(enum.Enum):
    """The states of a server session (see the table above)."""

    OPEN = "OPEN"
    PROBING = "PROBING"
    UPGRADING = "UPGRADING"
    UPGRADED = "UPGRADED"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


# --- the session --------------------------------------------------------------------------------

_ALIVE = (EngineState.OPEN, EngineState.PROBING, EngineState.UPGRADING, EngineState.UPGRADED)


class ServerSession(PollingReceiver):
    """One Engine.IO session on the server.  Times in the constructor are milliseconds, as on
    the wire; ``now`` is seconds.

    The open packet is queued at once: a polling session delivers it to the first GET (the
    handshake request itself), a WebSocket session with :meth:`flush`.

    ``max_buffered_packets`` bounds the packets waiting for a client that does not poll; past
    it the session closes ("transport error").  The reference server has no such bound.
    """

    def __init__(self, sid: str, now: float, *, transport: Transport = Transport.POLLING,
                 ping_interval: int = 25000, ping_timeout: int = 20000,
                 max_payload: int = 1_000_000, upgrades: Sequence[str] | None = None,
                 upgrade_timeout: int = 10000, close_timeout: int = 30000,
                 max_buffered_packets: int = 10_000) -> None:
        self.sid = sid
        self.transport = Transport(transport)
        self.state = EngineState.OPEN
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.upgrade_timeout = upgrade_timeout
        self.close_timeout = close_timeout
        self.max_buffered_packets = max_buffered_packets
        if upgrades is None:
            upgrades = ("websocket",) if self.transport is Transport.POLLING else ()
        self.open_info = OpenInfo(sid, tuple(upgrades), ping_interval, ping_timeout, max_payload)
        self.close_reason: str | None = None
        self.buffer: deque[Packet] = deque([self.open_info.to_packet()])
        self.poll_held = False          #: a GET is waiting for packets
        self.websocket_open = self.transport is Transport.WEBSOCKET  #: a WebSocket is attached
        self._next_ping_at: float | None = now + ping_interval / 1000
        self._pong_deadline: float | None = None
        self._upgrade_deadline: float | None = None
        self._close_deadline: float | None = None

    def __repr__(self) -> str:
        return f"<ServerSession {self.sid} {self.state.name} {self.transport.value}>"

    # --- the application's side --------------------------------------------------------------

    def send(self, data: str | bytes) -> list[Output]:
        """Queue a message for the client (delivered now if a transport can take it)."""
        return self.send_packet(Packet(PacketType.MESSAGE, data))

    def send_packet(self, packet: Packet) -> list[Output]:
        """Queue a packet (delivered now if a transport can take it).

        Over polling, text with a ``\x1e`` is refused (LocalProtocolError) here, before it is
        queued: the payload that carried it could not be encoded, so the GET would get no
        answer, and the packets queued with it would be lost.
        """
        if self.state not in _ALIVE:
            return []  # the reference silently drops packets sent while closing or closed
        if (self.transport is Transport.POLLING and isinstance(packet.data, str)
                and RECORD_SEPARATOR in packet.data):
            raise LocalProtocolError("a polling payload cannot carry the record separator \x1e")
        if len(self.buffer) >= self.max_buffered_packets:
            return self._fail("transport error")
        self.buffer.append(packet)
        return self.flush()

    def close(self, now: float) -> list[Output]:
        """Close the session from the server ("forced close").

        Over polling the close packet rides on a GET: the held one if any, else the next one
        (state CLOSING, at most ``close_timeout``).  Over a WebSocket the buffer is flushed and
        the WebSocket closed - the reference sends no close packet there, and neither do we.
        """
        if self.state not in _ALIVE:
            return []
        outputs: list[Output] = []
        if self.state is EngineState.UPGRADING and not self.poll_held:
            # The client has paused polling for the upgrade: no GET will come to carry a close
            # packet.  Closing the new WebSocket is how it learns; the session ends now.
            return self._drop_websocket() + self._closed("forced close")
        if self.state in (EngineState.PROBING, EngineState.UPGRADING):
            outputs += self._drop_websocket()
        if self.transport is Transport.WEBSOCKET:
            outputs += self.flush()
            outputs.append(CloseWebSocket())
            self.websocket_open = False
            return outputs + self._closed("forced close")
        self.buffer.append(Packet(PacketType.CLOSE))
        self.state = EngineState.CLOSING
        self._next_ping_at = self._pong_deadline = None
        self._close_deadline = now + self.close_timeout / 1000
        return outputs + self.flush()

    # --- HTTP long-polling -------------------------------------------------------------------

    def receive_poll(self, now: float) -> list[Output]:
        """A GET arrived for this session.

        Two GETs at once break the ordering guarantee: the spec says "return an HTTP 400 error
        status and close the session".  The reference (polling.ts ``onPollRequest``) answers the
        second GET with **500** (409 with its ``downgradeOverlapStatus`` option) and closes the
        session with "transport error", which answers the first GET with a close packet.  We do
        the same, but answer the spec's 400 (code 3, "Bad request"): nothing failed on the server.
        """
        if self.state is EngineState.CLOSED:
            return [RefuseRequest(400, EngineIOError(1))]
        if self.transport is not Transport.POLLING:
            return [RefuseRequest(400, EngineIOError(3))]  # polling after the upgrade
        if self.poll_held:
            outputs = self._fail("transport error")
            return outputs + [RefuseRequest(400, EngineIOError(3))]
        outputs: list[Output] = [HoldPoll()]
        self.poll_held = True
        if self.state is EngineState.UPGRADING:
            outputs += self._answer_poll((Packet(PacketType.NOOP),))
            return outputs
        return outputs + self.flush()

    def poll_aborted(self, now: float) -> list[Output]:
        """The client dropped the held GET before it was answered ("transport error")."""
        if not self.poll_held:
            return []
        self.poll_held = False
        if self.state is EngineState.CLOSING:
            return self._closed("forced close")
        return self._fail("transport error")

    def receive_packets(self, packets: Sequence[Packet], now: float) -> list[Output]:
        """Packets from the client over its current transport (a POST, or the upgraded WebSocket)."""
        outputs: list[Output] = []
        for packet in packets:
            if self.state not in _ALIVE:
                break  # what follows a close packet is ignored
            outputs += self._receive_packet(packet, now)
        return outputs

    def _receive_packet(self, packet: Packet, now: float) -> list[Output]:
        kind = packet.type
        if kind is PacketType.MESSAGE:
            assert isinstance(packet.data, (str, bytes))
            return [MessageReceived(packet.data)]
        if kind is PacketType.PONG:
            self._pong_deadline = None
            self._next_ping_at = now + self.ping_interval / 1000
            return [PongReceived()]
        if kind is PacketType.PING:
            # v4 reversed the heartbeat: a client never pings.  The reference closes the session
            # ("invalid heartbeat direction"); python-engineio ignores the packet.
            return self._fail("transport error")
        if kind is PacketType.CLOSE:
            return self._client_close()
        # open, upgrade and noop from the client carry no meaning here; the reference ignores them.
        return []

    def _client_close(self) -> list[Output]:
        outputs: list[Output] = []
        if self.transport is Transport.POLLING:
            # the reference releases a held GET with a noop (polling.ts onClose), not a close packet
            if self.poll_held:
                outputs += self._answer_poll((Packet(PacketType.NOOP),))
            outputs += self._drop_websocket()
        elif self.websocket_open:
            outputs.append(CloseWebSocket())
            self.websocket_open = False
        return outputs + self._closed("transport close")

    # --- the WebSocket -----------------------------------------------------------------------

    def attach_websocket(self, now: float) -> list[Output]:
        """A WebSocket carrying our sid completed its handshake: start the upgrade (PROBING).

        Only a polling session in OPEN can be upgraded; the router refuses the others before
        the WebSocket handshake (the reference accepts the WebSocket and closes it at once).
        """
        if self.state is not EngineState.OPEN or self.transport is not Transport.POLLING or self.websocket_open:
            return [CloseWebSocket()]
        self.state = EngineState.PROBING
        self.websocket_open = True
        self._upgrade_deadline = now + self.upgrade_timeout / 1000
        return []

    def receive_websocket_message(self, data: str | bytes, now: float) -> list[Output]:
        """One WebSocket message (text -> str, binary -> bytes) from the client."""
        overdue = self.tick(now)
        if not self.websocket_open or self.state not in _ALIVE:
            return overdue
        return overdue + self._receive_websocket_message(data, now)

    def _receive_websocket_message(self, data: str | bytes, now: float) -> list[Output]:
        try:
            packet = decode_packet(data)
        except PacketError:
            if self.state in (EngineState.PROBING, EngineState.UPGRADING):
                return self._abort_upgrade("parse error")
            return self.fail("parse error")
        if self.state is EngineState.PROBING:
            if packet.type is PacketType.PING and packet.data == "probe":
                self.state = EngineState.UPGRADING
                outputs: list[Output] = [SendWebSocket((Packet(PacketType.PONG, "probe"),))]
                if self.poll_held:  # release the pending GET so the client can pause polling
                    outputs += self._answer_poll((Packet(PacketType.NOOP),))
                return outputs
            # the spec says the client MUST probe first; the reference would accept a bare "5"
            return self._abort_upgrade("expected the probe")
        if self.state is EngineState.UPGRADING:
            if packet.type is PacketType.UPGRADE:
                self.state = EngineState.UPGRADED
                self.transport = Transport.WEBSOCKET
                self._upgrade_deadline = None
                return [Upgraded()] + self.flush()
            return self._abort_upgrade("expected the upgrade packet")
        return self.receive_packets([packet], now)

    def websocket_closed(self, now: float) -> list[Output]:
        """The session's WebSocket is gone (closed by the peer, or the connection dropped)."""
        if not self.websocket_open or self.state not in _ALIVE:
            self.websocket_open = False
            return []
        self.websocket_open = False
        if self.state in (EngineState.PROBING, EngineState.UPGRADING):
            return self._abort_upgrade("transport closed", close=False)
        return self._closed("transport close")

    # --- timers ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next be called (None: no timer is running)."""
        times = [t for t in (self._next_ping_at, self._pong_deadline, self._upgrade_deadline,
                             self._close_deadline) if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[Output]:
        """Run every timer due at ``now``, earliest first: ping, ping timeout, upgrade timeout,
        close timeout.

        Deadlines count from when a timer was *due*, not from when it ran: a ping scheduled at
        ``t`` whose timer fired late still wants its pong by ``t + pingTimeout``.  So one late
        call can run several timers in turn (the ping, then its already-passed pong deadline),
        and every input method runs the overdue timers first: a packet that arrives after the
        deadline finds the session closed, however late the timer task is.
        """
        outputs: list[Output] = []
        while self.state is not EngineState.CLOSED:
            due = self.next_deadline()
            if due is None or due > now:
                break
            outputs += self._fire_timer(due)
        return outputs

    def _fire_timer(self, due: float) -> list[Output]:
        """Run the timer whose deadline is ``due`` (the earliest one)."""
        if due == self._pong_deadline:
            return self._fail("ping timeout")
        if due == self._close_deadline:
            return self._closed("forced close")
        if due == self._upgrade_deadline:
            return self._abort_upgrade("upgrade timeout")
        assert due == self._next_ping_at
        self._next_ping_at = None
        self._pong_deadline = due + self.ping_timeout / 1000
        return self.send_packet(Packet(PacketType.PING))

    # --- internals ---------------------------------------------------------------------------

    def flush(self) -> list[Output]:
        """Hand the buffered packets to a transport that can take them now, if any."""
        if not self.buffer:
            return []
        if self.transport is Transport.WEBSOCKET:
            if not self.websocket_open:
                return []
            packets = tuple(self.buffer)
            self.buffer.clear()
            return [SendWebSocket(packets)]
        if self.poll_held and self.state in (EngineState.OPEN, EngineState.PROBING, EngineState.CLOSING):
            packets = tuple(self.buffer)
            self.buffer.clear()
            outputs = self._answer_poll(packets)
            if self.state is EngineState.CLOSING:
                outputs += self._closed("forced close")
            return outputs
        return []  # UPGRADING keeps everything for the WebSocket; else wait for a GET

    def _answer_poll(self, packets: tuple[Packet, ...]) -> list[Output]:
        self.poll_held = False
        return [AnswerPoll(packets)]

    def fail(self, reason: str) -> list[Output]:
        """Close the session because of an error (a bad payload, a protocol violation)."""
        if self.state not in _ALIVE and self.state is not EngineState.CLOSING:
            return []
        return self._fail(reason)

    def _fail(self, reason: str) -> list[Output]:
        # The reference closes the transport: a held GET gets a close packet, a WebSocket is
        # closed; what was still buffered is dropped.
        outputs: list[Output] = []
        self.buffer.clear()
        if self.poll_held:
            outputs += self._answer_poll((Packet(PacketType.CLOSE),))
        if self.websocket_open:
            outputs.append(CloseWebSocket())
            self.websocket_open = False
        return outputs + self._closed(reason)

    def _drop_websocket(self, *, close: bool = True) -> list[Output]:
        """Forget the probing WebSocket; the session is back in OPEN over polling."""
        outputs: list[Output] = [CloseWebSocket()] if close and self.websocket_open else []
        self.websocket_open = False
        self._upgrade_deadline = None
        if self.state in (EngineState.PROBING, EngineState.UPGRADING):
            self.state = EngineState.OPEN
        return outputs

    def _abort_upgrade(self, reason: str, *, close: bool = True) -> list[Output]:
        # the reference (socket.ts _maybeUpgrade) closes the new transport and carries on
        return self._drop_websocket(close=close) + [UpgradeAborted(reason)] + self.flush()

    def _closed(self, reason: str) -> list[Output]:
        self.state = EngineState.CLOSED
        self.close_reason = reason
        self.poll_held = False
        self.buffer.clear()
        self._next_ping_at = self._pong_deadline = None
        self._upgrade_deadline = self._close_deadline = None
        return [SessionClosed(reason)]
