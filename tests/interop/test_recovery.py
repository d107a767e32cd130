"""Connection state recovery and retries against the official Node stack (socket.io 4.8).

* Node socket.io-client -> lablib server: the relay cuts the connection (and refuses the first
  reconnections, so the broadcasts surely happen while the client is away); the client comes
  back with ``recovered`` true, its sid, and the missed broadcasts (offset last).  The same
  with ``socket.io.engine.close()`` on the Node side.
* lablib client -> Node server with ``connectionStateRecovery``: the same cut; ``recovered()``
  is true and the missed broadcasts reach the handler without their offset; the middleware is
  skipped (``skipMiddlewares``).
* Node client with ``retries`` + ``ackTimeout`` -> lablib server whose handler loses the first
  ack: the emit is sent again and acknowledged once.
* lablib client with ``retries`` -> Node server that does not ack an order's first copy.

Scripts: interop/node/recovery_client.js and recovery_server.js.  Timeouts are guards.
"""

from __future__ import annotations

import json
import random

import pytest

from lablib.capture.relay import Relay
from lablib.services.node import node_script
from lablib.socketio.client import AsyncClient
from lablib.socketio.dedupe import Dedupe
from lablib.socketio.server import Server, serve
from tests.aio_support import asyncio_test, until
from tests.node_support import AsyncNodePeer, node_modules  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.interop, pytest.mark.node]

GUARD = 20.0


class NodePeer(AsyncNodePeer):
    guard = GUARD


def _events(peer: NodePeer, name: str) -> list:
    return [line["args"] for line in peer.seen if line.get("event") == name]


async def _cut_and_hold(relay: Relay) -> None:
    relay.refuse = True     # reconnections fail until the broadcasts are done
    relay.cut()


# --- Node client -> lablib server ---------------------------------------------------------------

@pytest.mark.parametrize("how", ["relay cut", "engine.close()"])
@asyncio_test(timeout=40)
async def test_node_client_recovers_against_lablib_server(node_modules, how):  # noqa: F811
    sio = Server(connection_state_recovery={"max_disconnection_duration": 60000},
                 rng=random.Random(1))
    connects = []

    @sio.event
    async def connect(sid, request, auth):
        connects.append(sid)
        await sio.enter_room(sid, "blue")

    async with serve(sio) as server, Relay("127.0.0.1", server.port) as relay:
        with node_script("recovery_client.js", f"http://127.0.0.1:{relay.port}") as process:
            node = NodePeer(process)
            first = await node.expect(lambda line: "connect" in line)
            assert first["recovered"] is False
            sid = first["connect"]
            await sio.emit("news", "before", to="blue")
            before = await node.expect(lambda line: line.get("event") == "news")
            assert before["args"][0] == "before" and isinstance(before["args"][1], str)
            if how == "relay cut":
                await _cut_and_hold(relay)
            else:
                relay.refuse = True
                node.send(cmd="closeEngine")
            await until(lambda: not sio.core.is_connected(sid), timeout=GUARD)
            await sio.emit("news", "missed-1", to="blue")
            await sio.emit("news", "missed-2")
            await sio.emit("news", "elsewhere", to="red")
            relay.refuse = False
            again = await node.expect(lambda line: "connect" in line)
            assert again == {"connect": sid, "recovered": True}
            await node.expect(lambda line: line.get("args", [None])[0] == "missed-2")
            assert [args[0] for args in _events(node, "news")] == ["before", "missed-1", "missed-2"]
            offsets = [args[1] for args in _events(node, "news")]
            assert len(set(offsets)) == 3
            assert sio.recovered(sid) and sio.rooms(sid) == [sid, "blue"]
            assert connects == [sid]   # skip_middlewares: the connect handler ran once
            node.send(cmd="exit")


@asyncio_test(timeout=40)
async def test_node_client_retries_against_lablib_server(node_modules):  # noqa: F811
    sio = Server(rng=random.Random(2))
    seen, processed, attempts = Dedupe(), [], []

    @sio.on("order")
    async def order(sid, message):
        attempts.append(message["id"])
        if not seen.first(message["id"]):
            return "duplicate"
        processed.append(message["id"])
        if len(processed) == 1:
            raise RuntimeError("the first ack is lost")
        return "ok"

    async with serve(sio) as server:
        options = json.dumps({"retries": 3, "ackTimeout": 300})
        with node_script("recovery_client.js", f"http://127.0.0.1:{server.port}",
                         options) as process:
            node = NodePeer(process)
            await node.expect(lambda line: "connect" in line)
            node.send(cmd="emit", event="order", args=[{"id": "a"}])
            node.send(cmd="emit", event="order", args=[{"id": "b"}])
            first = await node.expect(lambda line: line.get("ack") == 0)
            second = await node.expect(lambda line: line.get("ack") == 1)
            assert first == {"ack": 0, "err": None, "args": ["duplicate"]}
            assert second == {"ack": 1, "err": None, "args": ["ok"]}
            assert attempts == ["a", "a", "b"] and processed == ["a", "b"]
            node.send(cmd="exit")


# --- lablib client -> Node server -------------------------------------------------------------

@asyncio_test(timeout=40)
async def test_lablib_client_recovers_against_node_server(node_modules):  # noqa: F811
    options = json.dumps({"maxDisconnectionDuration": 60000, "skipMiddlewares": True})
    with node_script("recovery_server.js", options) as process:
        node = NodePeer(process)
        ready = await node.expect(lambda line: line.get("ready"))
        async with Relay("127.0.0.1", ready["port"]) as relay:
            client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.1,
                                 rng=random.Random(3))
            events = []
            client.on("news", lambda *args: events.append(args))
            await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"])
            joined = await node.expect(lambda line: "connection" in line)
            assert joined["recovered"] is False and client.sid == joined["connection"]
            node.send(cmd="broadcast", event="news", args=["before"], rooms=["blue"])
            await until(lambda: events == [("before",)], timeout=GUARD)
            await _cut_and_hold(relay)
            await node.expect(lambda line: "disconnect" in line)
            node.send(cmd="broadcast", event="news", args=["missed-1"], rooms=["blue"])
            node.send(cmd="broadcast", event="news", args=["missed-2", 2])
            node.send(cmd="broadcast", event="news", args=["elsewhere"], rooms=["red"])
            await node.expect(lambda line: line.get("sent") == 4)
            relay.refuse = False
            again = await node.expect(lambda line: "connection" in line)
            assert again == {"connection": joined["connection"], "recovered": True,
                             "rooms": [joined["connection"], "blue"]}
            await until(lambda: len(events) == 3, timeout=GUARD)
            assert events == [("before",), ("missed-1",), ("missed-2", 2)]
            assert client.recovered() and client.sid == joined["connection"]
            assert sum("middleware" in line for line in node.seen) == 1   # skipped on recovery
            await client.disconnect()
        node.send(cmd="exit")


@asyncio_test(timeout=40)
async def test_lablib_client_retries_against_node_server(node_modules):  # noqa: F811
    with node_script("recovery_server.js", "{}") as process:
        node = NodePeer(process)
        ready = await node.expect(lambda line: line.get("ready"))
        client = AsyncClient(retries=3, ack_timeout=0.3, rng=random.Random(4))
        await client.connect(f"http://127.0.0.1:{ready['port']}", transports=["websocket"])
        assert await client.call("order", {"id": "x"}) == "ok"
        await node.expect(lambda line: "order" in line)
        await node.expect(lambda line: "order" in line)
        assert [line["order"] for line in node.seen if "order" in line] == [{"id": "x"}] * 2
        await client.disconnect()
        node.send(cmd="exit")
