"""The client session, alone and talking to the server core with no sockets in between."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.engineio import (ClientSession, EngineClientState, Opened, PausePolling,
                                            SendPolling)
from lablib.engineio.packets import OpenInfo, Packet, PacketType, encode_packet, encode_payload
from lablib.engineio.server_core import AcceptWebSocket, EngineServerCore, HTTPReply
from lablib.engineio import (AnswerPoll, CloseWebSocket, HoldPoll, MessageReceived,
                                     SendWebSocket, SessionClosed, Upgraded, UpgradeAborted)
from lablib.http import Headers, Request

M, PING, PONG, CLOSE, NOOP, UPGRADE = (PacketType.MESSAGE, PacketType.PING, PacketType.PONG,
                                       PacketType.CLOSE, PacketType.NOOP, PacketType.UPGRADE)
INFO = OpenInfo("abc", ("websocket",), 300, 200, 1000)


def opened(now: float = 0.0) -> ClientSession:
    client = ClientSession(now)
    assert client.receive_payload("0" + INFO.to_json(), now) == [Opened(INFO)]
    assert client.state is EngineClientState.OPEN and client.sid == "abc"
    return client


def test_handshake_must_start_with_open():
    client = ClientSession(0.0)
    assert client.receive_payload("4hello", 0.0) == [SessionClosed("parse error")]
    assert ClientSession(0.0).receive_payload('0{"sid":1}', 0.0) == [SessionClosed("parse error")]


def test_pings_are_answered_on_the_current_transport():
    client = opened()
    assert client.receive_payload("2\x1e4hi", 0.1) == [SendPolling((Packet(PONG),)), MessageReceived("hi")]
    assert client.send("out") == [SendPolling((Packet(M, "out"),))]


def test_dead_server_after_interval_plus_timeout():
    client = opened(0.0)
    assert client.next_deadline() == 0.5
    client.receive_payload("2", 0.3)            # a ping pushes the deadline
    assert client.tick(0.79) == []
    assert client.tick(0.8) == [SessionClosed("ping timeout")]
    assert client.state is EngineClientState.CLOSED


def test_upgrade_steps():
    client = opened()
    assert client.start_upgrade(0.1) == [SendWebSocket((Packet(PING, "probe"),))]
    assert client.receive_websocket_message("3probe", 0.2) == [PausePolling()]
    assert client.send("held") == []
    assert client.receive_payload("6", 0.25) == []  # the noop that ends the pending poll
    assert client.polling_paused(0.3) == [SendWebSocket((Packet(UPGRADE), Packet(M, "held"))), Upgraded()]
    assert client.send(b"\x01") == [SendWebSocket((Packet(M, b"\x01"),))]
    assert client.receive_websocket_message("2", 0.4) == [SendWebSocket((Packet(PONG),))]
    assert client.close(0.5) == [SendWebSocket((Packet(CLOSE),)), CloseWebSocket(), SessionClosed("forced close")]


def test_close_while_upgrading_sends_the_held_messages_first():
    """A message sent while UPGRADING waits for the "5"; close() now must not drop it."""
    client = opened()
    client.start_upgrade(0.1)
    assert client.receive_websocket_message("3probe", 0.2) == [PausePolling()]
    assert client.send("important") == []
    assert client.close(0.3) == [SendPolling((Packet(M, "important"), Packet(CLOSE))),
                                 CloseWebSocket(), SessionClosed("forced close")]


def test_failed_probe_goes_back_to_polling():
    client = opened()
    client.start_upgrade(0.1)
    assert client.receive_websocket_message("4nope", 0.2) == [CloseWebSocket(), UpgradeAborted("expected 3probe")]
    assert client.state is EngineClientState.OPEN
    assert client.send("x") == [SendPolling((Packet(M, "x"),))]


def test_no_upgrade_when_the_server_offers_none():
    client = ClientSession(0.0)
    client.receive_payload("0" + OpenInfo("a", (), 300, 200).to_json(), 0.0)
    assert client.start_upgrade(0.1) == [CloseWebSocket()]


def test_close_from_the_server_and_from_the_client():
    client = opened()
    assert client.receive_payload("4bye\x1e1", 0.1) == [MessageReceived("bye"), SessionClosed("transport close")]
    client = opened()
    assert client.close(0.1) == [SendPolling((Packet(CLOSE),)), SessionClosed("forced close")]


def test_websocket_only_client():
    client = ClientSession(0.0, transport="websocket")
    assert client.receive_websocket_message("0" + INFO.to_json(), 0.0) == [Opened(INFO)]
    assert client.send("x") == [SendWebSocket((Packet(M, "x"),))]
    assert client.websocket_closed(0.1) == [SessionClosed("transport close")]


# --- client and server cores, wired together by hand ---------------------------------------------

def request(method: str, target: str, body: bytes = b"", upgrade: bool = False) -> Request:
    headers = [("Host", "localhost")] + ([("Upgrade", "websocket"), ("Connection", "Upgrade")] if upgrade else [])
    return Request(method, target, Headers(headers), body=body)


def test_client_and_server_cores_do_a_whole_upgrade():
    server = EngineServerCore(rng=random.Random(3))
    client = ClientSession(0.0)
    # handshake
    reply = server.handle_request(request("GET", "/engine.io/?EIO=4&transport=polling"), 0.0).reply
    [opened_event] = client.receive_payload(reply.body.decode(), 0.0)
    sid = opened_event.info.sid
    base = f"/engine.io/?EIO=4&transport=polling&sid={sid}"
    # a message each way over polling
    [post] = client.send("hello server")
    result = server.handle_request(request("POST", base, encode_payload(post.packets).encode()), 0.1)
    assert result.outputs == (MessageReceived("hello server"),)
    server.sessions[sid].send("hello client")
    reply = server.handle_request(request("GET", base), 0.2).reply
    assert client.receive_payload(reply.body.decode(), 0.2) == [MessageReceived("hello client")]
    # a long poll is pending while the client opens a WebSocket with the sid
    assert server.handle_request(request("GET", base), 0.3).reply == HoldPoll()
    ws = server.handle_request(request("GET", base.replace("polling", "websocket"), upgrade=True), 0.4)
    assert ws.reply == AcceptWebSocket()
    session = ws.session
    [probe] = client.start_upgrade(0.4)
    to_server = [encode_packet(p, for_polling=False) for p in probe.packets]
    out = session.receive_websocket_message(to_server[0], 0.5)
    assert out == [SendWebSocket((Packet(PONG, "probe"),)), AnswerPoll((Packet(NOOP),))]
    assert client.receive_websocket_message(encode_packet(out[0].packets[0], for_polling=False), 0.5) == [PausePolling()]
    assert client.receive_payload(server.poll_reply(out[1].packets).body.decode(), 0.5) == []
    [upgrade, upgraded] = client.polling_paused(0.6)
    assert session.receive_websocket_message(encode_packet(upgrade.packets[0], for_polling=False), 0.6) == [Upgraded()]
    # heartbeat over the WebSocket
    [ping] = session.tick(25.0)
    [pong] = client.receive_websocket_message(encode_packet(ping.packets[0], for_polling=False), 25.0)
    assert pong == SendWebSocket((Packet(PONG),))
    # the client closes
    close, *_ = client.close(26.0)
    assert session.receive_websocket_message(encode_packet(close.packets[0], for_polling=False), 26.0) == [
        CloseWebSocket(), SessionClosed("transport close")]


# --- the server core never crashes, whatever arrives ------------------------------------------------

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(st.tuples(st.sampled_from(["GET", "POST", "PUT", "OPTIONS"]),
                          st.sampled_from(["polling", "websocket", "x"]),
                          st.booleans(), st.binary(max_size=30), st.floats(0, 100)), max_size=12))
def test_random_requests_get_http_answers(steps):
    server = EngineServerCore(rng=random.Random(0), max_payload=20)
    sid = server.handle_request(request("GET", "/engine.io/?EIO=4&transport=polling"), 0.0).session.sid
    for method, transport, upgrade, body, now in sorted(steps, key=lambda s: s[4]):
        server.tick(now)
        result = server.handle_request(
            request(method, f"/engine.io/?EIO=4&transport={transport}&sid={sid}", body, upgrade), now)
        assert isinstance(result.reply, (HTTPReply, HoldPoll, AcceptWebSocket))
        if isinstance(result.reply, AcceptWebSocket):
            result.session.receive_websocket_message(body, now)
    assert all(len(s.buffer) <= s.max_buffered_packets for s in server.sessions.values())
