"""The asyncio Socket.IO client against a Socket.IO peer the test scripts packet by packet.

:class:`Peer` is lablib's Engine.IO server (path ``/socket.io/``) with a tiny scripted Socket.IO
side: it records every Engine.IO message the client sends (exact text and bytes), decodes them
with :class:`~lablib.socketio.packets.Decoder`, accepts CONNECTs (or refuses, or stays silent),
acks ``echo`` events, and lets the test send any packet or close the Engine.IO session.  That
makes the wire visible: the CONNECT with its auth, the binary attachments, the ack ids, what is
sent again after a reconnection.

Interop with python-socketio's server is in ``tests/interop/test_socketio_client.py``.
Timeouts are guards against hangs, never measurements; the backoff is checked on the delays the
client drew, not on the clock.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from lablib.engineio.server import Server, serve
from lablib.errors import LocalProtocolError
from lablib.socketio.backoff import Backoff
from lablib.socketio import client as client_module
from lablib.socketio.client import (AsyncClient, ConnectionError, NamespaceRefusedError,
                                    TransportError)
from lablib.socketio.client_core import ManagerState
from lablib.socketio.packets import Decoder, Packet, PacketType, encode
from tests.aio_support import asyncio_test, until
from tests.wire import names, sio_recorder


class Peer:
    """A scripted Socket.IO server on lablib's Engine.IO server.

    ``on_connect``: "accept" (answer ``0{"sid":...}`` with sids s1, s2, ...), "silent", or a
    CONNECT_ERROR data to refuse with.  ``echo`` events asking for an ack are acked with their
    arguments; every other event is only recorded.
    """

    def __init__(self, on_connect="accept") -> None:
        self.on_connect = on_connect
        self.server = Server(path="/socket.io/", rng=random.Random(0))
        self.wire: list[tuple[str, str | bytes]] = []     # (eio sid, message) as received
        self.packets: list[tuple[str, Packet]] = []        # (eio sid, decoded packet)
        self.sessions: list[str] = []                      # eio sids, in connection order
        self.closed: list[tuple[str, str]] = []
        self._decoders: dict[str, Decoder] = {}
        self._sids = 0
        self.server.on("connect", lambda sid, request: self.sessions.append(sid))
        self.server.on("message", self._message)
        self.server.on("disconnect", lambda sid, reason: self.closed.append((sid, reason)))

    async def send(self, eio_sid: str, packet: Packet) -> None:
        for message in encode(packet):
            await self.server.send(eio_sid, message)

    async def _message(self, eio_sid: str, data: str | bytes) -> None:
        self.wire.append((eio_sid, data))
        packet = self._decoders.setdefault(eio_sid, Decoder()).receive(data)
        if packet is None:
            return
        self.packets.append((eio_sid, packet))
        if packet.type is PacketType.CONNECT:
            if self.on_connect == "accept":
                self._sids += 1
                await self.send(eio_sid, Packet(PacketType.CONNECT, packet.namespace,
                                                {"sid": f"s{self._sids}"}))
            elif self.on_connect != "silent":
                await self.send(eio_sid, Packet(PacketType.CONNECT_ERROR, packet.namespace,
                                                self.on_connect))
        elif packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT):
            if packet.data[0] == "echo" and packet.id is not None:
                await self.send(eio_sid, Packet(PacketType.ACK, packet.namespace,
                                                packet.data[1:], packet.id))

    def texts(self, eio_sid: str | None = None) -> list[str | bytes]:
        return [m for s, m in self.wire if eio_sid is None or s == eio_sid]


class running:
    """``async with running(peer) as url``."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def __aenter__(self) -> str:
        self._serve = serve(self.peer.server, "127.0.0.1", 0)
        server = await self._serve.__aenter__()
        return f"http://127.0.0.1:{server.port}"

    async def __aexit__(self, *exc) -> None:
        await self._serve.__aexit__(*exc)


# --- options ------------------------------------------------------------------------------------

def test_options_are_python_socketio_seconds_and_the_core_gets_milliseconds():
    client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.2,
                         randomization_factor=0.25, reconnection_attempts=3)
    backoff = client.core.backoff
    assert (backoff.min_ms, backoff.max_ms, backoff.jitter) == (50, 200, 0.25)
    assert client.core.reconnection_attempts == 3
    defaults = AsyncClient().core
    assert (defaults.backoff.min_ms, defaults.backoff.max_ms, defaults.backoff.jitter) == (1000, 5000, 0.5)
    assert defaults.reconnection and defaults.reconnection_attempts is None   # 0: unlimited
    with pytest.raises(ValueError):
        AsyncClient(reconnection_attempts=-1)


def test_the_engineio_rng_is_seeded_without_drawing_from_rng():
    client = AsyncClient(rng=random.Random(7))
    assert client.core.backoff.rng.random() == random.Random(7).random()
    again = AsyncClient(rng=random.Random(7))
    assert again.engineio_rng.random() == AsyncClient(rng=random.Random(7)).engineio_rng.random()


def test_handlers_register_per_namespace_and_the_connection_events_apart():
    client = AsyncClient()

    @client.event
    def connect():
        pass

    @client.event(namespace="/chat")
    def news(item):
        pass

    @client.on("reconnect", namespace="/chat")   # belongs to the connection, not a namespace
    def reconnect(attempt):
        pass

    assert client.handlers == {"/": {"connect": connect}, "/chat": {"news": news}}
    assert client.manager_handlers == {"reconnect": reconnect}


# --- connecting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("transports", [["polling"], ["websocket"], None])
@asyncio_test
async def test_connect_sends_connect_per_namespace_over_one_engineio_session(transports):
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        main, chat = sio_recorder(client, "/"), sio_recorder(client, "/chat", manager=False)
        await client.connect(url, transports=transports, namespaces=["/", "/chat"],
                             auth={"token": "é"})
        assert len(peer.sessions) == 1
        assert peer.texts() == ['0{"token":"é"}', '0/chat,{"token":"é"}']
        assert client.namespaces == {"/": "s1", "/chat": "s2"}
        assert (client.sid, client.get_sid("/chat"), client.connected) == ("s1", "s2", True)
        assert client.transport() == ("polling" if transports == ["polling"] else "websocket")
        assert client.eio is not None and client.eio.sid == peer.sessions[0]
        await client.disconnect()
        assert peer.texts()[2:] == ["1", "1/chat,"]
        assert main == chat == ["connect", ("disconnect", "io client disconnect")]
        assert not client.connected and client.eio is None and client.transport() is None
        await until(lambda: peer.closed)   # the Engine.IO session is closed with the last one


@asyncio_test
async def test_default_namespaces_are_those_with_handlers_and_no_auth_is_a_bare_connect():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        client.on("news", lambda *a: None, namespace="/news")
        client.on("reconnect", lambda attempt: None)
        await client.connect(url, transports=["websocket"])
        assert peer.texts() == ["0/news,"]
        await client.disconnect()
        plain = AsyncClient()
        await plain.connect(url, transports=["websocket"])
        assert peer.texts()[-1] == "0"
        await plain.disconnect()


@asyncio_test
async def test_a_refused_namespace_raises_with_the_server_message_and_data():
    peer = Peer(on_connect={"message": "not allowed", "data": {"why": [1, 2]}})
    async with running(peer) as url:
        client = AsyncClient()
        events = sio_recorder(client)
        with pytest.raises(NamespaceRefusedError) as caught:
            await client.connect(url, transports=["websocket"])
        assert str(caught.value) == "not allowed"
        assert (caught.value.errors, caught.value.data) == ({"/": "not allowed"}, {"/": {"why": [1, 2]}})
        # the server's refusal, told apart from a transport failure by type and attributes
        assert isinstance(caught.value, ConnectionError) and not isinstance(caught.value, TransportError)
        assert (caught.value.namespace, caught.value.message, caught.value.server_data) == (
            "/", "not allowed", {"why": [1, 2]})
        assert events == [("connect_error", {"message": "not allowed", "data": {"why": [1, 2]}})]
        assert client.core.state is ManagerState.CLOSED and client.reconnect_delays_ms == []
        await until(lambda: peer.closed)
        # a plain-string CONNECT_ERROR (older servers)
        peer.on_connect = "go away"
        with pytest.raises(ConnectionError, match="go away"):
            await client.connect(url, transports=["websocket"])


@asyncio_test
async def test_unreachable_server_raises_without_reconnecting():
    peer = Peer()
    async with running(peer) as url:
        pass   # closed: nothing listens on that port any more
    client = AsyncClient(reconnection_delay=0.01)
    events = sio_recorder(client)
    with pytest.raises(TransportError) as caught:
        await client.connect(url, transports=["polling"])
    assert caught.value.errors.keys() == {"/"}
    # a transport failure, told apart from a refusal: the cause is the OS's error
    assert isinstance(caught.value, ConnectionError)
    assert not isinstance(caught.value, NamespaceRefusedError)
    assert isinstance(caught.value.__cause__, OSError) and caught.value.description
    assert names(events) == ["connect_error"]
    assert client.reconnect_delays_ms == [] and client.core.state is ManagerState.CLOSED
    await client.wait()


@asyncio_test
async def test_namespaces_not_answered_within_wait_timeout_fail_and_disconnect():
    peer = Peer(on_connect="silent")
    async with running(peer) as url:
        client = AsyncClient()
        with pytest.raises(ConnectionError, match="timed out") as caught:
            await client.connect(url, transports=["websocket"], wait_timeout=0.1)
        assert not isinstance(caught.value, (TransportError, NamespaceRefusedError))
        await until(lambda: peer.closed)
        assert not client.connected


@asyncio_test
async def test_connect_twice_raises():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        await client.connect(url, transports=["websocket"])
        with pytest.raises(ConnectionError, match="Already connected"):
            await client.connect(url)
        await client.disconnect()
        await client.connect(url, transports=["websocket"])   # a new life after disconnect()
        assert client.sid == "s2"
        await client.disconnect()


# --- events and acks ----------------------------------------------------------------------------

@asyncio_test
async def test_emit_puts_events_and_binary_attachments_on_the_wire():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        await client.connect(url, transports=["websocket"], namespaces=["/", "/chat"])
        await client.emit("hello")
        await client.emit("hello", ("a", 1))
        await client.emit("hello", ["one list"])
        await client.emit("file", {"name": "x", "parts": [b"\x01", {"tail": b"\x02\x03"}]},
                          namespace="/chat")
        await client.send("text")
        await until(lambda: len(peer.wire) == 9)
        assert peer.texts()[2:] == [
            '2["hello"]', '2["hello","a",1]', '2["hello",["one list"]]',
            '52-/chat,["file",{"name":"x","parts":[{"_placeholder":true,"num":0},'
            '{"tail":{"_placeholder":true,"num":1}}]}]', b"\x01", b"\x02\x03",
            '2["message","text"]']
        await client.disconnect()


@asyncio_test
async def test_call_and_callbacks_get_the_ack_arguments():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        await client.connect(url, transports=["polling"])
        assert await client.call("echo", "one", timeout=5) == "one"
        assert await client.call("echo", ("a", b"\x00", [1]), timeout=5) == ("a", b"\x00", [1])
        assert await client.call("echo", timeout=5) is None
        got = asyncio.get_running_loop().create_future()
        await client.emit("echo", (1, 2), callback=lambda *args: got.set_result(args))
        assert await got == (1, 2)
        assert peer.texts()[1:] == ['20["echo","one"]', '51-1["echo","a",{"_placeholder":true,"num":0},[1]]',
                                    b"\x00", '22["echo"]', '23["echo",1,2]']
        await client.disconnect()


@asyncio_test
async def test_call_times_out_and_a_late_ack_is_ignored():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        await client.connect(url, transports=["websocket"])
        with pytest.raises(TimeoutError):
            await client.call("unanswered", timeout=0.05)
        eio_sid = peer.sessions[0]
        await peer.send(eio_sid, Packet(PacketType.ACK, "/", ["late"], 0))
        assert await client.call("echo", "next", timeout=5) == "next"   # ack id 1
        await client.disconnect()


@asyncio_test
async def test_server_events_run_handlers_and_their_return_values_are_the_acks():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        seen = []

        @client.event
        def several(a, b):
            seen.append(("several", a, b))
            return ("x", b"\x09")

        @client.on("one", namespace="/chat")
        async def one(value):
            seen.append(("one", value))
            return {"k": [value]}

        @client.on("*")
        def anything(event, *args):
            seen.append(("*", event, args))

        @client.event
        def fails():
            raise RuntimeError("a bug in a handler")

        await client.connect(url, transports=["websocket"], namespaces=["/", "/chat"])
        eio_sid = peer.sessions[0]
        await peer.send(eio_sid, Packet(PacketType.EVENT, "/", ["several", 1, {"b": b"\xff"}], 7))
        await peer.send(eio_sid, Packet(PacketType.EVENT, "/chat", ["one", "v"], 8))
        await peer.send(eio_sid, Packet(PacketType.EVENT, "/", ["other", 2]))
        await peer.send(eio_sid, Packet(PacketType.EVENT, "/", ["fails"]))
        await peer.send(eio_sid, Packet(PacketType.EVENT, "/", ["other", 3], 9))
        await until(lambda: len(peer.wire) == 6)
        assert seen == [("several", 1, {"b": b"\xff"}), ("one", "v"), ("*", "other", (2,)),
                        ("*", "other", (3,))]
        assert peer.texts()[2:] == ['61-7["x",{"_placeholder":true,"num":0}]', b"\x09",
                                    '3/chat,8[{"k":["v"]}]', "39[]"]
        await client.disconnect()


@asyncio_test
async def test_a_disconnect_handler_without_the_reason_parameter_still_runs():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()
        calls = []
        client.on("disconnect", lambda: calls.append("disconnect"))
        await client.connect(url, transports=["websocket"])
        await client.disconnect()
        assert calls == ["disconnect"]


@asyncio_test
async def test_emit_needs_a_running_client_a_known_namespace_and_a_free_name():
    client = AsyncClient()
    with pytest.raises(LocalProtocolError, match="not connected"):
        await client.emit("x")
    peer = Peer()
    async with running(peer) as url:
        await client.connect(url, transports=["websocket"])
        with pytest.raises(LocalProtocolError, match="never connected"):
            await client.emit("x", namespace="/other")
        with pytest.raises(LocalProtocolError, match="reserved"):
            await client.emit("disconnect")
        await client.disconnect()
        with pytest.raises(LocalProtocolError, match="not connected"):
            await client.call("x")
    with pytest.raises(ValueError):
        await client.connect(url, namespaces=[])


# --- disconnection and reconnection -------------------------------------------------------------

@asyncio_test
async def test_server_disconnect_packet_ends_the_client_without_reconnection():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient(reconnection_delay=0.01)
        events = sio_recorder(client)
        await client.connect(url, transports=["websocket"])
        await peer.send(peer.sessions[0], Packet(PacketType.DISCONNECT, "/"))
        await asyncio.wait_for(client.wait(), 5)
        assert events == ["connect", ("disconnect", "io server disconnect")]
        assert client.reconnect_delays_ms == [] and len(peer.sessions) == 1
        await until(lambda: peer.closed)


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
@asyncio_test
async def test_lost_engineio_session_reconnects_with_buffered_emits(transports):
    peer = Peer()
    async with running(peer) as url:
        seed = 11
        client = AsyncClient(reconnection_delay=0.02, reconnection_delay_max=0.1,
                             rng=random.Random(seed))
        events = sio_recorder(client)
        chat = sio_recorder(client, "/chat", manager=False)
        await client.connect(url, transports=transports, namespaces=["/", "/chat"],
                             auth={"user": 1})
        first = peer.sessions[0]
        # an emit handed to the connection before it dies and still waiting for its ack
        pending = asyncio.ensure_future(client.call("unanswered", timeout=5))
        await until(lambda: '20["unanswered"]' in peer.texts(first))
        await peer.server.disconnect(first)          # Engine.IO close, not Socket.IO's
        await until(lambda: "disconnect" in names(events))
        with pytest.raises(ConnectionError):
            await pending
        await client.emit("buffered", 1)
        await client.emit("buffered", (2, b"\x02"), namespace="/chat")
        buffered_call = asyncio.ensure_future(client.call("echo", "later", timeout=5))
        await until(lambda: client.connected and len(client.namespaces) == 2)
        assert await buffered_call == "later"
        # handlers run in the client's dispatch task: wait for them rather than race them
        await until(lambda: len(events) >= 5 and len(chat) >= 3)
        second = peer.sessions[1]
        assert peer.texts(second)[:2] == ['0{"user":1}', '0/chat,{"user":1}']
        # each namespace flushes its send buffer, in order, as soon as it is connected again
        assert peer.texts(second)[2:] == [
            '2["buffered",1]', '21["echo","later"]',
            '51-/chat,["buffered",2,{"_placeholder":true,"num":0}]', b"\x02"]
        assert names(events) == ["connect", "disconnect", "reconnect_attempt", "reconnect", "connect"]
        assert events[1] == ("disconnect", "transport close")
        assert chat == ["connect", ("disconnect", "transport close"), "connect"]
        assert client.namespaces == {"/": "s3", "/chat": "s4"}
        backoff = Backoff(min_ms=20, max_ms=100, rng=random.Random(seed))
        assert client.reconnect_delays_ms == [backoff.duration()]
        await client.disconnect()


@asyncio_test
async def test_garbage_from_the_server_is_a_parse_error_then_a_reconnection():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient(reconnection_delay=0.01, rng=random.Random(1))
        events = sio_recorder(client)
        await client.connect(url, transports=["websocket"])
        await peer.server.send(peer.sessions[0], "9 not a packet")
        await until(lambda: len(peer.sessions) == 2 and client.connected)
        assert names(events) == ["connect", "disconnect", "reconnect_attempt", "reconnect", "connect"]
        assert events[1] == ("disconnect", "parse error")
        await until(lambda: peer.closed and peer.closed[0][0] == peer.sessions[0])   # we closed it
        await client.disconnect()


@asyncio_test
async def test_no_reconnection_when_disabled():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient(reconnection=False)
        events = sio_recorder(client)
        await client.connect(url, transports=["websocket"])
        await peer.server.disconnect(peer.sessions[0])
        await asyncio.wait_for(client.wait(), 5)
        assert events == ["connect", ("disconnect", "transport close")]
        assert len(peer.sessions) == 1


@asyncio_test
async def test_failed_attempts_follow_the_backoff_then_give_up():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient(reconnection_attempts=3, reconnection_delay=0.01,
                             reconnection_delay_max=0.04, rng=random.Random(3))
        events = sio_recorder(client)
        await client.connect(url, transports=["websocket"])
    # the server closed its sessions and stopped listening: every attempt fails
    await asyncio.wait_for(client.wait(), 5)
    assert names(events) == ["connect", "disconnect"] + ["reconnect_attempt", "connect_error",
                                                         "reconnect_error"] * 3 + ["reconnect_failed"]
    assert [e[1] for e in events if e[0] == "reconnect_attempt"] == [1, 2, 3]
    backoff = Backoff(min_ms=10, max_ms=40, rng=random.Random(3))
    assert client.reconnect_delays_ms == [backoff.duration() for _ in range(3)]


@asyncio_test
async def test_disconnect_while_waiting_to_reconnect_stops_reconnecting():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient(reconnection_delay=5, reconnection_delay_max=5)
        events = sio_recorder(client)
        await client.connect(url, transports=["websocket"])
        await peer.server.disconnect(peer.sessions[0])
        await until(lambda: client.reconnect_delays_ms)
        await client.emit("never sent")     # buffered, then dropped with the namespace
        await asyncio.wait_for(client.disconnect(), 5)
        assert names(events) == ["connect", "disconnect"]
        assert len(peer.sessions) == 1 and client.core.state is ManagerState.CLOSED


@asyncio_test
async def test_a_handler_may_disconnect_the_client():
    peer = Peer()
    async with running(peer) as url:
        client = AsyncClient()

        @client.event
        async def bye():
            await client.disconnect()

        await client.connect(url, transports=["websocket"])
        await peer.send(peer.sessions[0], Packet(PacketType.EVENT, "/", ["bye"]))
        await asyncio.wait_for(client.wait(), 5)
        assert peer.texts()[-1] == "1" and not client.connected


@asyncio_test
async def test_a_cancelled_connect_leaves_nothing_running():
    peer = Peer(on_connect="silent")
    async with running(peer) as url:
        client = AsyncClient()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.connect(url, transports=["websocket"], wait_timeout=5), 0.2)
        await asyncio.wait_for(client.wait(), 5)
        await until(lambda: peer.closed)
        assert client.core.state is ManagerState.CLOSED


def test_disconnect_reasons_are_exported_by_name():
    """The reason strings of socket.io-client, as constants an application can compare with."""
    assert (client_module.IO_SERVER_DISCONNECT, client_module.IO_CLIENT_DISCONNECT,
            client_module.PING_TIMEOUT, client_module.TRANSPORT_CLOSE,
            client_module.TRANSPORT_ERROR) == ("io server disconnect", "io client disconnect",
                                               "ping timeout", "transport close", "transport error")
    for name in ("IO_SERVER_DISCONNECT", "IO_CLIENT_DISCONNECT", "PING_TIMEOUT",
                 "TRANSPORT_CLOSE", "TRANSPORT_ERROR", "NamespaceRefusedError", "TransportError"):
        assert name in client_module.__all__
