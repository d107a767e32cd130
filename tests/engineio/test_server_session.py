"""The server session state machine, driven by a fake clock (seconds as plain floats)."""

from __future__ import annotations

import pytest

from lablib.engineio.packets import OpenInfo, Packet, PacketType
from lablib.engineio import (AnswerPoll, CloseWebSocket, HoldPoll, MessageReceived,
                                     PongReceived, RefuseRequest, SendWebSocket, ServerSession,
                                     SessionClosed, EngineState, Transport, Upgraded, UpgradeAborted)
from lablib.errors import LocalProtocolError

M, PING, PONG, CLOSE, NOOP, UPGRADE = (PacketType.MESSAGE, PacketType.PING, PacketType.PONG,
                                       PacketType.CLOSE, PacketType.NOOP, PacketType.UPGRADE)


def opened(now: float = 0.0, **kwargs) -> ServerSession:
    """A polling session whose handshake GET has been answered."""
    session = ServerSession("sid", now, **kwargs)
    assert session.receive_poll(now) == [HoldPoll(), AnswerPoll((session.open_info.to_packet(),))]
    return session


def upgraded(now: float = 0.0) -> ServerSession:
    session = opened(now)
    session.attach_websocket(now)
    session.receive_websocket_message("2probe", now)
    session.receive_websocket_message("5", now)
    assert session.state is EngineState.UPGRADED
    return session


# --- a full polling session -----------------------------------------------------------------------

def test_full_polling_session():
    session = opened(0.0)
    assert session.state is EngineState.OPEN and session.transport is Transport.POLLING
    # the client polls, nothing to say: the GET is held
    assert session.receive_poll(1.0) == [HoldPoll()]
    assert session.poll_held
    # the application speaks: the held GET is answered at once
    assert session.send("hey") == [AnswerPoll((Packet(M, "hey"),))]
    assert not session.poll_held
    # no GET held: messages wait in the buffer, then leave together
    assert session.send("a") == [] and session.send(b"\x01") == []
    assert session.receive_poll(2.0) == [HoldPoll(), AnswerPoll((Packet(M, "a"), Packet(M, b"\x01")))]
    # a POST brings messages
    assert session.receive_payload("4hello\x1e4world\x1ebAQID", 3.0) == [
        MessageReceived("hello"), MessageReceived("world"), MessageReceived(b"\x01\x02\x03")]
    # the client closes: a held GET is released with a noop, the session is over
    session.receive_poll(4.0)
    assert session.receive_payload("1", 5.0) == [AnswerPoll((Packet(NOOP),)), SessionClosed("transport close")]
    assert session.state is EngineState.CLOSED and session.close_reason == "transport close"
    assert session.send("late") == []


def test_packets_after_a_close_packet_are_ignored():
    session = opened()
    assert session.receive_payload("4a\x1e1\x1e4b", 1.0) == [MessageReceived("a"), SessionClosed("transport close")]


def test_noop_open_upgrade_from_the_client_are_ignored():
    session = opened()
    assert session.receive_payload("6\x1e5\x1e0", 1.0) == []
    assert session.state is EngineState.OPEN


def test_bad_payload_closes_with_parse_error():
    session = opened()
    session.receive_poll(1.0)
    assert session.receive_payload("4a\x1ex", 1.0) == [AnswerPoll((Packet(CLOSE),)), SessionClosed("parse error")]


def test_a_ping_from_the_client_is_the_wrong_direction():
    session = opened()
    assert session.receive_payload("2", 1.0) == [SessionClosed("transport error")]


# --- concurrent GETs ------------------------------------------------------------------------------

def test_second_get_closes_the_session():
    session = opened()
    assert session.receive_poll(1.0) == [HoldPoll()]
    # the held GET gets the close packet, the second one the spec's 400 (the reference: 500)
    *outputs, refusal = session.receive_poll(1.1)
    assert outputs == [AnswerPoll((Packet(CLOSE),)), SessionClosed("transport error")]
    assert (refusal.status, refusal.error.to_json()) == (400, {"code": 3, "message": "Bad request"})
    assert session.state is EngineState.CLOSED


def test_dropped_get_closes_the_session():
    session = opened()
    session.receive_poll(1.0)
    assert session.poll_aborted(2.0) == [SessionClosed("transport error")]


# --- the heartbeat --------------------------------------------------------------------------------

def test_heartbeat_ping_pong_and_timeout():
    session = opened(0.0)  # pingInterval 25 s, pingTimeout 20 s
    assert session.next_deadline() == 25.0
    assert session.tick(24.999) == []
    assert session.tick(25.0) == []          # the ping is queued: no GET is held
    assert list(session.buffer) == [Packet(PING)]
    assert session.next_deadline() == 45.0   # the pong must come within pingTimeout
    assert session.receive_poll(26.0) == [HoldPoll(), AnswerPoll((Packet(PING),))]
    assert session.receive_payload("3", 27.0) == [PongReceived()]
    assert session.next_deadline() == 52.0   # next ping pingInterval after the pong
    session.receive_poll(28.0)
    assert session.tick(52.0) == [AnswerPoll((Packet(PING),))]  # a held GET carries it at once
    assert session.tick(71.9) == []
    session.receive_poll(72.0)
    assert session.tick(72.0) == [AnswerPoll((Packet(CLOSE),)), SessionClosed("ping timeout")]
    assert session.state is EngineState.CLOSED and session.next_deadline() is None


def test_ping_timeout_without_a_held_get():
    session = opened(0.0, ping_interval=300, ping_timeout=200)
    session.tick(0.3)
    assert session.tick(0.5) == [SessionClosed("ping timeout")]


def test_ping_over_the_websocket():
    session = upgraded(0.0)
    assert session.tick(25.0) == [SendWebSocket((Packet(PING),))]
    assert session.receive_websocket_message("3", 26.0) == [PongReceived()]
    assert session.tick(45.0) == []


# --- the upgrade ----------------------------------------------------------------------------------

def test_upgrade_sequence():
    session = opened(0.0)
    assert session.receive_poll(1.0) == [HoldPoll()]          # a GET is pending
    assert session.attach_websocket(1.1) == []
    assert session.state is EngineState.PROBING
    # the probe: answered over the WebSocket, and the pending GET released with a noop
    assert session.receive_websocket_message("2probe", 1.2) == [
        SendWebSocket((Packet(PONG, "probe"),)), AnswerPoll((Packet(NOOP),))]
    assert session.state is EngineState.UPGRADING
    # polling is paused: packets wait for the WebSocket, a GET gets a noop at once
    assert session.send("during") == []
    assert session.receive_poll(1.3) == [HoldPoll(), AnswerPoll((Packet(NOOP),))]
    # POSTs still work while upgrading
    assert session.receive_payload("4posted", 1.35) == [MessageReceived("posted")]
    # "5": the buffer is flushed onto the WebSocket
    assert session.receive_websocket_message("5", 1.4) == [Upgraded(), SendWebSocket((Packet(M, "during"),))]
    assert session.state is EngineState.UPGRADED and session.transport is Transport.WEBSOCKET
    # polling is refused from now on
    [refusal] = session.receive_poll(1.5)
    assert isinstance(refusal, RefuseRequest) and refusal.status == 400 and refusal.error.code == 3
    # messages flow over the WebSocket, both ways
    assert session.send("hi") == [SendWebSocket((Packet(M, "hi"),))]
    assert session.send(b"\x00") == [SendWebSocket((Packet(M, b"\x00"),))]
    assert session.receive_websocket_message("4hello", 2.0) == [MessageReceived("hello")]
    assert session.receive_websocket_message(b"\x01\x02", 2.0) == [MessageReceived(b"\x01\x02")]


def test_probe_without_a_pending_get():
    session = opened()
    session.attach_websocket(1.0)
    assert session.receive_websocket_message("2probe", 1.0) == [SendWebSocket((Packet(PONG, "probe"),))]


def test_during_probing_polling_goes_on():
    session = opened()
    session.attach_websocket(1.0)
    assert session.send("x") == []
    assert session.receive_poll(1.1) == [HoldPoll(), AnswerPoll((Packet(M, "x"),))]


@pytest.mark.parametrize("first", ["5", "4hello", "2", "x"])
def test_upgrade_requires_the_probe_first(first):
    session = opened()
    session.attach_websocket(1.0)
    outputs = session.receive_websocket_message(first, 1.1)
    assert outputs[0] == CloseWebSocket() and isinstance(outputs[1], UpgradeAborted)
    assert session.state is EngineState.OPEN and session.transport is Transport.POLLING


def test_upgrade_aborted_by_another_packet_returns_buffer_to_polling():
    session = opened()
    session.attach_websocket(1.0)
    session.receive_websocket_message("2probe", 1.0)
    session.send("kept")
    assert session.receive_websocket_message("4early", 1.1) == [CloseWebSocket(), UpgradeAborted("expected the upgrade packet")]
    assert session.receive_poll(1.2) == [HoldPoll(), AnswerPoll((Packet(M, "kept"),))]


def test_upgrade_timeout():
    session = opened(0.0)
    session.attach_websocket(1.0)
    session.receive_websocket_message("2probe", 1.0)
    assert session.next_deadline() == 11.0   # upgradeTimeout 10 s
    assert session.tick(11.0) == [CloseWebSocket(), UpgradeAborted("upgrade timeout")]
    assert session.state is EngineState.OPEN


def test_probing_websocket_closed():
    session = opened()
    session.attach_websocket(1.0)
    assert session.websocket_closed(1.1) == [UpgradeAborted("transport closed")]
    assert session.state is EngineState.OPEN


def test_second_websocket_refused():
    session = opened()
    session.attach_websocket(1.0)
    assert session.attach_websocket(1.1) == [CloseWebSocket()]
    assert upgraded().attach_websocket(1.0) == [CloseWebSocket()]


# --- close from either side -----------------------------------------------------------------------

def test_server_close_with_a_held_get():
    session = opened()
    session.receive_poll(1.0)
    session.buffer.append(Packet(M, "queued"))  # as if sent while the GET was not held
    assert session.close(2.0) == [AnswerPoll((Packet(M, "queued"), Packet(CLOSE))), SessionClosed("forced close")]


def test_server_close_waits_for_the_next_get():
    session = opened()
    session.send("last words")
    assert session.close(2.0) == []
    assert session.state is EngineState.CLOSING
    assert session.receive_payload("4ignored", 2.5) == []
    assert session.receive_poll(3.0) == [HoldPoll(), AnswerPoll((Packet(M, "last words"), Packet(CLOSE))),
                                         SessionClosed("forced close")]


def test_server_close_timeout_when_no_get_comes():
    session = opened(0.0)
    session.close(2.0)
    assert session.next_deadline() == 32.0
    assert session.tick(32.0) == [SessionClosed("forced close")]


def test_server_close_over_websocket():
    # no close packet over a WebSocket (reference websocket.ts doClose); what is buffered goes first
    session = upgraded()
    session.buffer.append(Packet(M, "bye"))
    assert session.close(3.0) == [SendWebSocket((Packet(M, "bye"),)), CloseWebSocket(), SessionClosed("forced close")]


def test_server_close_during_upgrade_closes_the_probe():
    session = opened()
    session.attach_websocket(1.0)
    assert session.close(1.5) == [CloseWebSocket()]
    assert session.state is EngineState.CLOSING


def test_client_close_over_websocket():
    session = upgraded()
    assert session.receive_websocket_message("1", 3.0) == [CloseWebSocket(), SessionClosed("transport close")]


def test_websocket_dropped_after_upgrade():
    session = upgraded()
    assert session.websocket_closed(3.0) == [SessionClosed("transport close")]


def test_bad_websocket_message_after_upgrade():
    session = upgraded()
    assert session.receive_websocket_message("", 3.0) == [CloseWebSocket(), SessionClosed("parse error")]


# --- a WebSocket-only session ---------------------------------------------------------------------

def test_websocket_only_session():
    session = ServerSession("sid", 0.0, transport=Transport.WEBSOCKET)
    assert session.open_info.upgrades == ()
    assert session.flush() == [SendWebSocket((OpenInfo("sid", ()).to_packet(),))]
    assert session.receive_websocket_message("4hi", 1.0) == [MessageReceived("hi")]
    assert session.receive_poll(1.0)[0].status == 400


# --- bounded buffer -------------------------------------------------------------------------------

def test_polling_refuses_text_with_the_record_separator_before_queueing_it():
    """A payload could not carry it: the GET that took it would get no answer, and what was
    queued with it would be lost.  Refused up front; the rest goes out as usual."""
    session = opened()
    assert session.send("first") == []
    with pytest.raises(LocalProtocolError, match="record separator"):
        session.send("a\x1eb")
    assert session.receive_poll(1.0) == [HoldPoll(), AnswerPoll((Packet(PacketType.MESSAGE, "first"),))]
    upgraded_session = upgraded()  # over a WebSocket the separator is just a character
    assert upgraded_session.send("a\x1eb") == [SendWebSocket((Packet(PacketType.MESSAGE, "a\x1eb"),))]


def test_buffer_bound_closes_the_session():
    session = opened(max_buffered_packets=3)
    assert session.send("1") == [] and session.send("2") == [] and session.send("3") == []
    assert session.send("4") == [SessionClosed("transport error")]
    assert len(session.buffer) == 0


def test_server_close_while_upgrading_ends_at_once():
    # The client paused polling after the probe: no GET will come for a close packet, so the
    # session ends now and closing the WebSocket is what tells the client.
    session = opened()
    session.attach_websocket(1.0)
    session.receive_websocket_message("2probe", 1.1)
    assert session.state is EngineState.UPGRADING
    assert session.close(1.2) == [CloseWebSocket(), SessionClosed("forced close")]
    assert session.state is EngineState.CLOSED


# --- heartbeat deadlines count from the scheduled ping (issue 9) ----------------------------------

def test_the_pong_deadline_counts_from_the_scheduled_ping():
    session = upgraded(0.0)
    assert session.tick(25.040) == [SendWebSocket((Packet(PING),))]  # the timer ran 40 ms late
    assert session.next_deadline() == 45.0


def test_overdue_timers_run_before_a_websocket_message():
    session = upgraded(0.0)
    session.tick(25.0)
    # the pong arrives when the deadline has passed, before any timer ran: too late
    assert session.receive_websocket_message("3", 45.0) == [CloseWebSocket(), SessionClosed("ping timeout")]
    assert session.state is EngineState.CLOSED


def test_a_pong_just_in_time_over_the_websocket():
    session = upgraded(0.0)
    session.tick(25.0)
    assert session.receive_websocket_message("3", 44.999) == [PongReceived()]


def test_one_late_tick_runs_every_overdue_timer_in_order():
    session = opened(0.0)
    # nothing ran for 50 s: the ping was due at 25 s, its pong at 45 s
    assert session.tick(50.0) == [SessionClosed("ping timeout")]
