"""Connection state recovery, retries and the dedupe helper: exact packets, sans-I/O.

The cores speak in Socket.IO packets (Engine.IO adds its "4" on the wire: ``0{"sid"...}`` here
is ``40{"sid"...}`` in a capture).  The server's rng is seeded, so sids and pids are fixed;
offsets are the store's counter.  End-to-end runs (lablib both sides, through the relay's cut)
are at the end; interop with Node is in tests/interop/test_recovery.py.
"""

from __future__ import annotations

import json
import random

import pytest

from lablib.capture.relay import Relay
from lablib.errors import LocalProtocolError
from lablib.socketio.client import AsyncClient
from lablib.socketio.client_core import ClientCore
from lablib.socketio.dedupe import Dedupe
from lablib.socketio.events import (AckReceived, AckTimedOut, Connected, ConnectReceived,
                                      Disconnected, EventReceived, Send)
from lablib.socketio.recovery import InMemorySessionStore, RecoveryOptions
from lablib.socketio.server import Server, serve
from lablib.socketio.server_core import ServerCore
from tests.aio_support import asyncio_test, until


def _sent(outputs) -> list:
    return [m for o in outputs if isinstance(o, Send) for m in o.messages]


def _server(**recovery) -> ServerCore:
    return ServerCore(rng=random.Random(1), connection_state_recovery=recovery)


def _join(core: ServerCore, eio_sid: str, auth: str = "", now: float = 0.0):
    core.engine_opened(eio_sid, now)
    (request,) = core.receive(eio_sid, "0" + auth, now)
    return request, _sent(core.accept(eio_sid))


SID, PID = "9bFlIkpYt5HfavHYPmHN", "xLuGw9HEJxA8NExB6y8e"   # random.Random(1)'s first two


# --- server core --------------------------------------------------------------------------------

def test_without_the_option_nothing_changes():
    core = ServerCore(rng=random.Random(1))
    _, sent = _join(core, "e1")
    assert sent == [f'0{{"sid":"{SID}"}}']
    assert _sent(core.emit("news", ["x"])) == ['2["news","x"]']


def test_connect_answer_carries_pid_and_each_broadcast_an_offset():
    core = _server()
    request, sent = _join(core, "e1")
    assert request == ConnectReceived("e1", "/", SID, None, False)
    assert sent == [f'0{{"sid":"{SID}","pid":"{PID}"}}']
    assert _sent(core.emit("news", ["x"], now=1)) == ['2["news","x","1"]']
    assert _sent(core.emit("news", ["y"], to=SID, now=1)) == ['2["news","y","2"]']


def test_emits_asking_for_an_ack_get_no_offset_and_are_not_logged():
    core = _server()
    _join(core, "e1")
    _, _, out = core.emit_with_acks("ask", ["q"], now=1)
    assert _sent(out) == ['20["ask","q"]']
    _, out = core.emit_with_ack(SID, "ask", ["r"], now=1)
    assert _sent(out) == ['21["ask","r"]']
    assert _sent(core.ack(SID, 5, ["ok"])) == ['35["ok"]']
    assert len(core.store()) == 0


def _drop_and_come_back(core, reason="transport close", offset="1", auth_extra="", now=5.0):
    core.engine_closed("e1", reason, 2.0)
    core.engine_opened("e2", now)
    auth = {"pid": PID, "offset": offset}
    text = json.dumps(auth, separators=(",", ":"))[:-1] + auth_extra + "}"
    (request,) = core.receive("e2", "0" + text, now)
    return request, _sent(core.accept("e2"))


def test_an_unexpected_disconnect_keeps_sid_rooms_and_replays_missed_packets_in_order():
    core = _server()
    _join(core, "e1")
    core.enter_room(SID, "blue")
    core.emit("news", ["seen"], now=1)                          # offset 1, received
    core.engine_closed("e1", "transport close", 2.0)
    core.emit("news", ["a"], now=3)                              # 2: everyone
    core.emit("news", ["b"], to="blue", now=3)                   # 3: its room
    core.emit("news", ["c"], to="red", now=3)                    # 4: not its room
    core.emit("news", ["d"], to="blue", skip_sids=SID, now=3)    # 5: except it
    core.emit("news", [b"\x01"], now=3)                          # 6: binary, one attachment
    core.engine_opened("e2", 4.0)
    (request,) = core.receive("e2", f'0{{"pid":"{PID}","offset":"1","token":"t"}}', 4.0)
    assert request.recovered and request.sid == SID
    assert request.auth == {"pid": PID, "offset": "1", "token": "t"}
    assert _sent(core.accept("e2")) == [
        f'0{{"sid":"{SID}","pid":"{PID}"}}', '2["news","a","2"]', '2["news","b","3"]',
        '51-["news",{"_placeholder":true,"num":0},"6"]', b"\x01"]
    assert core.rooms(SID) == [SID, "blue"] and core.is_recovered(SID)


@pytest.mark.parametrize("reason", ["client namespace disconnect", "parse error"])
def test_a_deliberate_disconnect_keeps_nothing(reason):
    core = _server()
    _join(core, "e1")
    core.emit("news", ["x"], now=1)
    if reason == "client namespace disconnect":
        core.receive("e1", "1", 1.5)
    else:
        core.receive("e1", "9", 1.5)
    core.engine_closed("e1", "transport close", 2.0)
    core.engine_opened("e2", 3.0)
    (request,) = core.receive("e2", f'0{{"pid":"{PID}","offset":"1"}}', 3.0)
    assert not request.recovered and request.sid != SID


def test_server_namespace_disconnect_keeps_nothing():
    core = _server()
    _join(core, "e1")
    core.emit("news", ["x"], now=1)
    core.disconnect(SID)
    request, _ = _drop_and_come_back(core)
    assert not request.recovered


def test_an_expired_session_is_not_recovered():
    core = _server(max_disconnection_duration=1000)
    _join(core, "e1")
    core.emit("news", ["x"], now=1)
    request, sent = _drop_and_come_back(core, now=3.5)   # dropped at 2.0, 1.5 s later
    assert not request.recovered and request.sid != SID
    assert sent[0].startswith('0{"sid":') and PID not in sent[0]


def test_a_client_too_far_behind_gets_no_partial_replay():
    core = _server(max_log_packets=3)
    _join(core, "e1")
    core.emit("news", ["x"], now=1)          # 1: its last offset, trimmed by what follows
    core.engine_closed("e1", "transport close", 2.0)
    for index in range(3):
        core.emit("news", [index], now=3)    # 2, 3, 4
    core.engine_opened("e2", 4.0)
    (request,) = core.receive("e2", f'0{{"pid":"{PID}","offset":"1"}}', 4.0)
    assert not request.recovered
    assert _sent(core.accept("e2"))[1:] == []   # nothing replayed to the new session


def test_a_session_is_restored_once_and_unknown_offsets_or_pids_fail():
    core = _server()
    _join(core, "e1")
    core.emit("news", ["x"], now=1)
    request, _ = _drop_and_come_back(core, offset="nonsense")
    assert not request.recovered
    core2 = _server()
    _join(core2, "e1")
    core2.emit("news", ["x"], now=1)
    request, _ = _drop_and_come_back(core2)
    assert request.recovered
    core2.engine_opened("e3", 6.0)
    (again,) = core2.receive("e3", f'0{{"pid":"{PID}","offset":"1"}}', 6.0)
    assert not again.recovered


def test_a_restored_session_dropped_before_its_answer_is_kept_again():
    core = _server()
    _join(core, "e1")
    core.enter_room(SID, "blue")
    core.emit("news", ["x"], now=1)
    core.engine_closed("e1", "transport close", 2.0)
    core.emit("news", ["y"], to="blue", now=2.5)
    core.engine_opened("e2", 3.0)
    (request,) = core.receive("e2", f'0{{"pid":"{PID}","offset":"1"}}', 3.0)
    assert request.recovered
    core.engine_closed("e2", "transport close", 3.5)   # before accept()
    core.engine_opened("e3", 4.0)
    (again,) = core.receive("e3", f'0{{"pid":"{PID}","offset":"1"}}', 4.0)
    assert again.recovered and again.sid == SID
    assert _sent(core.accept("e3"))[1:] == ['2["news","y","2"]']
    assert core.rooms(SID) == [SID, "blue"]


def test_the_log_is_trimmed_by_age_and_size():
    store = InMemorySessionStore(RecoveryOptions(max_disconnection_duration=1000,
                                                 max_log_packets=2))
    for now in (0.0, 0.5, 0.6):
        store.append(["e"], None, (), now)
    assert len(store) == 2
    store.append(["e"], None, (), 1.55)   # 0.5 is now older than 1 s
    assert len(store) == 2


def test_options_are_checked():
    with pytest.raises(LocalProtocolError):
        RecoveryOptions.from_option({"maxDisconnectionDuration": 5})
    assert RecoveryOptions.from_option(None) is None
    assert RecoveryOptions.from_option({}) == RecoveryOptions(120000, True)


# --- client core: recovery ------------------------------------------------------------------------

def _client(**options) -> ClientCore:
    core = ClientCore(rng=random.Random(0), **options)
    core.connect("/", {"token": "t"})
    core.engine_opened(0.0)
    return core


def _reconnect(core: ClientCore, now: float = 10.0) -> list:
    out = core.engine_closed("transport close", 1.0)
    out += core.tick(now)
    return out + core.engine_opened(now)


def test_client_sends_pid_and_last_offset_merged_under_its_auth():
    core = _client()
    assert core.receive('0{"sid":"S","pid":"P"}', 0.0) == [Connected("/", "S", False)]
    assert core.receive('2["news","x","7"]', 0.0) == [
        EventReceived("/", "S", "news", ("x",), None)]   # the offset is taken off
    assert core.receive('21["ask","y"]', 0.0) == [EventReceived("/", "S", "ask", ("y",), 1)]
    assert _sent(_reconnect(core)) == ['0{"pid":"P","offset":"7","token":"t"}']
    assert core.receive('0{"sid":"S","pid":"P"}', 10.0) == [Connected("/", "S", True)]
    assert core.recovered()


def test_client_without_recovery_keeps_every_argument_and_sends_its_auth_only():
    core = _client()
    core.receive('0{"sid":"S"}', 0.0)
    assert core.receive('2["news","x","7"]', 0.0)[0].args == ("x", "7")
    assert _sent(_reconnect(core)) == ['0{"token":"t"}']


def test_client_holds_events_replayed_before_the_connect_answer_and_drops_repeats():
    core = _client()
    core.receive('0{"sid":"S","pid":"P"}', 0.0)
    core.receive('2["news","a","1"]', 0.0)
    _reconnect(core)
    assert core.receive('2["news","b","2"]', 10.0) == []          # held (Node replays first)
    out = core.receive('0{"sid":"S","pid":"P"}', 10.0)
    assert out == [Connected("/", "S", True), EventReceived("/", "S", "news", ("b",), None)]
    assert core.receive('2["news","b","2"]', 10.0) == []          # offset 2 seen: dropped


def test_a_new_session_forgets_the_old_offset():
    core = _client()
    core.receive('0{"sid":"S","pid":"P"}', 0.0)
    core.receive('2["news","a","1"]', 0.0)
    _reconnect(core)
    assert core.receive('0{"sid":"T","pid":"Q"}', 10.0) == [Connected("/", "T", False)]
    assert core.last_offset() is None
    assert _sent(_reconnect(core, 20.0)) == ['0{"pid":"Q","token":"t"}']


# --- client core: retries ----------------------------------------------------------------------------

def test_retries_one_in_flight_in_order_resent_after_the_ack_timeout():
    core = _client(retries=2, ack_timeout=1000)
    core.receive('0{"sid":"S"}', 0.0)
    handle, out = core.emit_with_ack("m", [1], now=0.0)
    assert handle == -1 and _sent(out) == ['20["m",1]']
    assert _sent(core.emit("m", [2], now=0.0)) == []        # waits behind the first
    assert core.queued() == 2
    assert _sent(core.tick(1.0)) == ['21["m",1]']             # same payload, new ack id
    assert core.receive("30[]", 1.1) == []                    # the late ack: ignored
    out = core.receive('31["ok"]', 1.2)
    assert out[0] == AckReceived("/", "S", -1, ("ok",)) and _sent(out) == ['22["m",2]']
    assert _sent(core.receive("32[]", 1.3)) == [] and core.queued() == 0


def test_retries_give_up_after_retries_resends():
    core = _client(retries=1, ack_timeout=1000)
    core.receive('0{"sid":"S"}', 0.0)
    handle, _ = core.emit_with_ack("m", [1], now=0.0)
    assert _sent(core.tick(1.0)) == ['21["m",1]']
    assert core.tick(2.0) == [AckTimedOut("/", "S", handle)]
    assert core.queued() == 0


def test_retries_resend_the_head_after_a_reconnection():
    core = _client(retries=3)
    core.receive('0{"sid":"S"}', 0.0)
    core.emit("m", [1], now=0.0)
    _reconnect(core)
    assert _sent(core.receive('0{"sid":"S2"}', 10.0)) == ['21["m",1]']


def test_retries_leave_volatile_emits_alone():
    core = _client(retries=3)
    core.receive('0{"sid":"S"}', 0.0)
    assert _sent(core.emit("m", [1], volatile=True)) == ['2["m",1]']


# --- the dedupe helper ---------------------------------------------------------------------------

def test_dedupe_is_bounded_by_count_and_age():
    seen = Dedupe(max_entries=2, ttl=10)
    assert seen.first("a", 0) and not seen.first("a", 1)
    assert seen.first("b", 1) and seen.first("c", 1)
    assert "a" not in seen and len(seen) == 2                 # the oldest went first
    assert seen.first("a", 2)                                 # forgotten: new again
    assert seen.first("b", 12)                                # b (seen at 1) expired
    assert seen.duplicates == 1


# --- end to end: lablib server and client, the relay cuts the connection ---------------------------

@pytest.mark.parametrize("skip", [True, False])
@asyncio_test(timeout=20)
async def test_lablib_client_recovers_missed_broadcasts_after_a_cut(skip):
    sio = Server(connection_state_recovery={"max_disconnection_duration": 60000,
                                            "skip_middlewares": skip},
                 rng=random.Random(3))
    connects = []

    @sio.event
    async def connect(sid, request, auth):
        connects.append((sid, sio.recovered(sid)))
        if not sio.recovered(sid):
            await sio.save_session(sid, {"user": auth["user"]})
            await sio.enter_room(sid, "blue")

    async with serve(sio) as server, Relay("127.0.0.1", server.port) as relay:
        client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.1,
                             rng=random.Random(2))
        events = []
        client.on("news", lambda text: events.append(text))
        await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"],
                             auth={"user": "ada"})
        sid = client.sid
        await sio.emit("news", "before", to="blue")
        await until(lambda: events == ["before"])
        relay.cut()
        await until(lambda: not sio.core.is_connected(sid))
        await sio.emit("news", "missed-1", to="blue")
        await sio.emit("news", "missed-2")
        await sio.emit("news", "other room", to="red")
        await until(lambda: client.connected and sio.core.is_connected(sid), timeout=10)
        await until(lambda: len(events) == 3)
        assert events == ["before", "missed-1", "missed-2"]
        assert client.recovered() and sio.recovered(sid) and client.sid == sid
        # skip_middlewares: the connect handler does not run again; else it runs, recovered
        assert connects == [(sid, False)] + ([] if skip else [(sid, True)])
        assert await sio.get_session(sid) == {"user": "ada"}
        assert sio.rooms(sid) == [sid, "blue"]
        await client.disconnect()
        # On the wire (server frames are not masked): the same sid and pid in both CONNECT
        # answers, then the replay with the offsets 2 and 3 (offset 4 went to "red").
        first, second = (c.data("s2c") for c in relay.capture.conversations[:2])
        start = first.index(f'40{{"sid":"{sid}","pid":"'.encode())
        answer = first[start:first.index(b"}", start) + 1]     # 40{"sid":"...","pid":"..."}
        assert answer in second
        assert sio.core.store().sessions() == []   # used once; a deliberate leave keeps none
        assert b'42["news","before","1"]' in first
        replay = second[second.index(answer):]
        assert replay.index(b'42["news","missed-1","2"]') < replay.index(b'42["news","missed-2","3"]')
        assert b"other room" not in second


@asyncio_test(timeout=20)
async def test_lablib_client_retries_until_acked_and_the_server_dedupes():
    sio = Server(rng=random.Random(4))
    seen, processed, lose_ack = Dedupe(), [], [True]

    @sio.on("order")
    async def order(sid, message):
        if not seen.first(message["id"]):
            return "duplicate"     # acknowledged again, not processed again
        processed.append(message["n"])
        if lose_ack[0]:            # the first ack is never sent: the client will retry
            lose_ack[0] = False
            raise RuntimeError("the ack is lost")
        return "ok"

    async with serve(sio) as server:
        client = AsyncClient(retries=3, ack_timeout=0.2, rng=random.Random(5))
        await client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"])
        assert await client.call("order", {"id": "m0", "n": 0}) == "duplicate"
        await client.emit("order", {"id": "m1", "n": 1})
        await until(lambda: processed == [0, 1])
        await client.disconnect()
