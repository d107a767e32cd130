"""The Socket.IO server where the bytes and their grouping matter: raw sockets on 127.0.0.1.

* packets right behind a CONNECT, in the same WebSocket read or the same polling POST body;
* what a connect handler emits to its client, and emits that reach nobody;
* a broadcast to a room with a member that never reads.

The peers are lablib's sans-I/O WebSocket client over a raw TCP socket or lablib's Engine.IO
client speaking Socket.IO by hand (both in ``tests/wire.py``).  Timeouts are guards against
hangs, never measurements.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random

import pytest

from lablib.socketio.server import Server, serve
from tests.aio_support import asyncio_test, until
from tests.wire import Peer, RawSocketIO, RawWebSocket, eio_target, polling_handshake

TARGET = eio_target("/socket.io/", "websocket")


def echo_server(**settings) -> Server:
    """A seeded server whose connect handler takes its time (a task switch) and which acks
    ``echo`` with its arguments."""
    sio = Server(rng=random.Random(9), close_timeout=0.3, **settings)

    @sio.event
    async def connect(sid, request, auth):
        await asyncio.sleep(0)   # as a handler that looks something up would

    sio.on("echo", lambda sid, *args: args)
    return sio


# --- item: an event right behind its CONNECT ----------------------------------------------------

@asyncio_test
async def test_events_in_the_same_websocket_read_as_the_connect_are_answered():
    """``40`` and 20 events in one TCP segment: the CONNECT answer, then 20 acks (they were
    dropped: the events came while the connect handler was deciding)."""
    async with serve(echo_server()) as sio:
        ws = await RawWebSocket.open(sio.port, TARGET)
        assert (await ws.message()).startswith('0{"sid":"')
        frames = ws.conn.send_text("40") + b"".join(
            ws.conn.send_text('42%d["echo","x%d"]' % (i, i)) for i in range(20))
        ws.peer.send(frames)
        assert (await ws.message()).startswith('40{"sid":"')
        assert [await ws.message() for _ in range(20)] == ['43%d["x%d"]' % (i, i) for i in range(20)]
        ws.peer.close()


@asyncio_test
async def test_an_event_in_the_same_polling_post_as_the_connect_is_answered():
    async with serve(echo_server()) as sio:
        peer = await Peer.open(sio.port)
        sid = await polling_handshake(peer, "/socket.io/")
        target = eio_target("/socket.io/", sid=sid)
        assert (await peer.request("POST", target, b'40\x1e421["echo","x"]'))[1] == b"ok"
        packets: list[bytes] = []
        while len(packets) < 2:
            packets += (await peer.request("GET", target))[1].split(b"\x1e")
        assert packets[0].startswith(b'40{"sid":"')
        assert packets[1:] == [b'431["x"]']
        peer.close()


@asyncio_test
async def test_events_behind_a_refused_connect_are_dropped_with_it():
    sio = echo_server()
    sio.on("connect", lambda sid, request, auth: False)
    async with serve(sio) as server:
        ws = await RawWebSocket.open(server.port, TARGET)
        await ws.message()
        ws.peer.send(ws.conn.send_text("40") + ws.conn.send_text('421["echo","x"]'))
        assert await ws.message() == '44{"message":"Connection rejected by server"}'
        ws.send_text("40/nowhere,")   # the next answer is this one's: nothing came for the event
        assert await ws.message() == '44/nowhere,{"message":"Invalid namespace"}'
        ws.peer.close()


# --- item: emits from the connect handler; emits to nobody -----------------------------------------

@asyncio_test
async def test_what_the_connect_handler_emits_follows_the_connect_answer():
    sio = Server(rng=random.Random(9), close_timeout=0.3)

    @sio.event
    async def connect(sid, request, auth):
        await sio.emit("welcome", sid, to=sid)
        sio.enter_room(sid, "lobby")
        await sio.emit("lobby news", "hello lobby", room="lobby")
        await sio.emit("everyone")   # a namespace-wide broadcast: not to a client not yet in

    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        await raw.send("0")
        answer = await raw.recv()
        sid = json.loads(answer[1:])["sid"]
        assert [await raw.recv() for _ in range(2)] == [
            '2["welcome","%s"]' % sid, '2["lobby news","hello lobby"]']
        assert sio.rooms(sid) == [sid, "lobby"]
        await sio.emit("marker")
        assert await raw.recv() == '2["marker"]'   # "everyone" never came
        await raw.close()
    assert sio.undelivered == 0


@asyncio_test
async def test_an_emit_to_a_gone_sid_is_logged_and_counted(caplog):
    sio = Server(rng=random.Random(9), close_timeout=0.3)
    async with serve(sio) as server:
        raw = await RawSocketIO().open(server.port)
        sid = await raw.join()
        await raw.close()
        await until(lambda: not sio.core.is_connected(sid))
        with caplog.at_level(logging.DEBUG, logger="lablib.socketio.server"):
            await sio.emit("late", 1, to=sid)
            await sio.emit("late", 2, to="empty room")
        assert sio.undelivered == 2
        assert f"nothing delivered to {sid}" in caplog.text
        assert "nothing delivered to empty room" in caplog.text


# --- item: a slow reader in a room -------------------------------------------------------------------

MESSAGE = 64 * 1024
COUNT = 64              # 4 MiB per member in all
BOUND = 256 * 1024      # max_write_buffer in this test


@pytest.mark.parametrize("with_acks", [False, True], ids=["emit", "emit-with-callback"])
@asyncio_test(timeout=30)
async def test_a_member_that_never_reads_neither_delays_a_broadcast_nor_holds_memory(
        with_acks, caplog):
    """Two healthy clients and one that never reads share a room; the server broadcasts 4 MiB
    to it, 64 KiB at a time.  Each broadcast returns without waiting for the slow member, the
    healthy ones receive every message while the slow one has read nothing, the slow one is
    disconnected once more than ``max_write_buffer`` waits for it, and what the server holds
    for it never exceeds that bound plus one message."""
    sio = Server(rng=random.Random(9), close_timeout=0.3, max_write_buffer=BOUND,
                 ping_interval=60000, ping_timeout=60000)
    reasons: dict[str, str] = {}
    sio.on("connect", lambda sid, request, auth: sio.enter_room(sid, "room"))
    sio.on("disconnect", lambda sid, reason: reasons.setdefault(sid, reason))
    async with serve(sio) as server:
        healthy = [await RawSocketIO().open(server.port) for _ in range(2)]
        healthy_sids = [await raw.join() for raw in healthy]
        slow = await RawWebSocket.open(server.port, TARGET, rcvbuf=4096)
        slow.send_text("40")   # joins the room; from here on it never reads
        await until(lambda: len(sio.core.sids("/")) == 3)
        slow_sid = next(s for s in sio.core.sids("/") if s not in healthy_sids)
        slow_link = sio.eio._links[sio.core.eio_sid_of(slow_sid)]
        transport = slow_link.websocket.transport
        acks: list = []
        most_held = 0
        for i in range(COUNT):
            data = ("%04d" % i) + "x" * (MESSAGE - 4)
            if with_acks:
                await sio.emit("blob", data, room="room", callback=lambda *a: acks.append(a))
            else:
                await sio.emit("blob", data, room="room")
            if not transport.is_closing():
                most_held = max(most_held, transport.get_write_buffer_size())
            for raw in healthy:   # each healthy member has this message, in order
                message = await raw.recv()
                assert message.startswith('2["blob","%04d' % i) or \
                    message.startswith('2%d["blob","%04d' % (i, i)), message[:20]
                if with_acks:
                    await raw.send("3%d[true]" % i)
        await until(lambda: slow_sid in reasons)
        assert reasons[slow_sid] == "transport error"
        assert not any(sid in reasons for sid in healthy_sids)
        assert most_held <= BOUND + MESSAGE + 1024
        assert "reads too slowly" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        if with_acks:
            await until(lambda: len(acks) == 2 * COUNT)
        assert (await slow.peer.read_all()) is not None   # its connection was aborted
        for raw in healthy:
            await raw.close()
