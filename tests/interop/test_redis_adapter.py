"""lablib.socketio.redis_protocol against the official Node @socket.io/redis-adapter 8.x.

Real Redis (lablib.services.redis), real Node (interop/node/redis_adapter_peer.js: a socket.io
server with the official adapter, and socket.io-client sockets).  Node -> Python: what the
adapter publishes decodes field by field and re-encodes to the same bytes; Python -> Node: a
broadcast encoded by lablib reaches a socket.io-client through the Node server, honouring rooms
and except; a fetchSockets() request from Node is answered by lablib.
"""

from __future__ import annotations

import time

import pytest
import redis

from lablib.services.node import node_script
from lablib.socketio.packets import Packet, PacketType
from lablib.socketio.redis_protocol import (
    BroadcastMessage, BroadcastOptions, Channels, Request, RequestType, Response,
    decode_broadcast, decode_request, encode_broadcast, encode_request, encode_response,
    receive_broadcast)
from tests.node_support import NodePeer, node_modules  # noqa: F401 (a fixture)
from tests.redis_support import redis_url  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.interop, pytest.mark.node]

GUARD = 30.0   # seconds before a missing line or message fails the test (never a measurement)
CHANNELS = Channels("/")




def _next_message(pubsub) -> dict:
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is not None:
            return message
    pytest.fail("nothing was published in time")


@pytest.fixture
def subscriber(redis_url):  # noqa: F811
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe(CHANNELS.pattern)
    pubsub.subscribe(CHANNELS.request)
    yield pubsub
    pubsub.close()
    client.close()


@pytest.fixture
def peer(node_modules, redis_url):  # noqa: F811
    with node_script("redis_adapter_peer.js", redis_url) as process:
        node = NodePeer(process)
        node.ready = node.expect(lambda line: line.get("ready"))
        yield node
        node.send(cmd="exit")


def test_node_broadcast_to_a_room_with_except(subscriber, peer):
    uid = peer.ready["uid"]
    peer.send(cmd="broadcast", rooms=["room1"], event="hello",
              args=[1, "two", {"three": 3.5}, {"$bin": "010203"}], **{"except": ["sidX"]})
    message = _next_message(subscriber)
    assert message["type"] == "pmessage"
    assert message["pattern"] == b"socket.io#/#*"
    assert message["channel"] == b"socket.io#/#room1#"    # one room: the room's channel
    payload = message["data"]

    decoded = decode_broadcast(payload)
    assert decoded.uid == uid and len(uid) == 6
    assert decoded.packet == Packet(PacketType.BINARY_EVENT, "/",
                                    ["hello", 1, "two", {"three": 3.5}, b"\x01\x02\x03"])
    assert decoded.opts == BroadcastOptions(rooms=("room1",), except_=("sidX",), flags={})
    # The exact bytes: fixarray(3), uid as fixstr(6), the packet map {type, data, nsp} with the
    # type still 2 (EVENT) and the Buffer as bin8, opts {rooms, except, flags: {}}.
    assert payload == (b"\x93\xa6" + uid.encode()
                       + b"\x83\xa4type\x02\xa4data\x95\xa5hello\x01\xa3two\x81\xa5three"
                       + b"\xcb\x40\x0c\x00\x00\x00\x00\x00\x00\xc4\x03\x01\x02\x03"
                       + b"\xa3nsp\xa1/"
                       + b"\x83\xa5rooms\x91\xa5room1\xa6except\x91\xa4sidX\xa5flags\x80")
    assert encode_broadcast(decoded) == ("socket.io#/#room1#", payload)   # same bytes back

    # The receipt filter, as another server in the cluster would apply it.
    assert receive_broadcast(message["channel"], payload, channels=CHANNELS, uid="other1",
                             has_room=lambda room: room == "room1") == decoded


def test_node_broadcast_to_two_rooms_uses_the_namespace_channel(subscriber, peer):
    peer.send(cmd="broadcast", rooms=["a", "b"], event="e", args=[])
    message = _next_message(subscriber)
    assert message["channel"] == b"socket.io#/#"
    decoded = decode_broadcast(message["data"])
    assert decoded.packet == Packet(PacketType.EVENT, "/", ["e"])
    assert decoded.opts == BroadcastOptions(("a", "b"), (), {})
    assert encode_broadcast(decoded) == ("socket.io#/#", message["data"])


def test_node_fetch_sockets_request_answered_by_python(subscriber, peer):
    peer.send(cmd="connectClient", name="a", rooms=["room1"])
    sid = peer.expect(lambda line: line.get("connected") == "a")["sid"]
    peer.send(cmd="fetchSockets", rooms=["room1"])
    message = _next_message(subscriber)
    assert message["type"] == "message"
    assert message["channel"] == b"socket.io-request#/#"
    payload = message["data"]
    assert payload[:1] == b"{"                                  # requests are JSON
    request = decode_request(payload)
    assert request.type == RequestType.REMOTE_FETCH
    assert request.uid == peer.ready["uid"]
    assert isinstance(request.request_id, str) and len(request.request_id) == 6
    assert request.opts == BroadcastOptions(("room1",), (), None)
    assert payload == (b'{"uid":"' + request.uid.encode() + b'","requestId":"'
                       + request.request_id.encode()
                       + b'","type":5,"opts":{"rooms":["room1"],"except":[]}}')
    assert encode_request(request) == payload

    # Answer as a lablib server would: Node's fetchSockets() resolves with both servers' sockets.
    ours = {"id": "py-sid-1", "handshake": {"auth": {}}, "rooms": ["py-sid-1", "room1"],
            "data": {"server": "lablib"}}
    redis.Redis(connection_pool=subscriber.connection_pool).publish(
        CHANNELS.response, encode_response(Response(request.request_id, sockets=[ours])))
    fetched = peer.expect(lambda line: "fetched" in line)["fetched"]
    assert {s["id"] for s in fetched} == {sid, "py-sid-1"}
    assert [s for s in fetched if s["id"] == "py-sid-1"][0]["data"] == {"server": "lablib"}


def test_python_broadcast_reaches_node_clients(redis_url, peer):  # noqa: F811
    peer.send(cmd="connectClient", name="a", rooms=["room1"])
    peer.expect(lambda line: line.get("connected") == "a")
    peer.send(cmd="connectClient", name="b", rooms=["room1"])
    sid_b = peer.expect(lambda line: line.get("connected") == "b")["sid"]

    publisher = redis.Redis.from_url(redis_url)
    message = BroadcastMessage("lablib", Packet(PacketType.EVENT, "/",
                                                ["from-python", {"n": 1}, b"\xff\x00"]),
                               BroadcastOptions(rooms=("room1",), except_=(sid_b,)))
    channel, payload = encode_broadcast(message)
    assert channel == "socket.io#/#room1#"
    assert publisher.publish(channel, payload) == 1      # the Node server's subscription
    got = peer.expect(lambda line: "event" in line)
    assert got == {"client": "a", "event": "from-python", "args": [{"n": 1}, {"$bin": "ff00"}]}

    # b was excepted: the next event b receives is the one sent to b alone (same server, same
    # connection, so had b received the first it would have come before this one).
    _, to_b = encode_broadcast(BroadcastMessage(
        "lablib", Packet(PacketType.EVENT, "/", ["only-b"]), BroadcastOptions(rooms=(sid_b,))))
    assert publisher.publish(CHANNELS.room(sid_b), to_b) == 1
    got = peer.expect(lambda line: line.get("client") == "b")
    assert got == {"client": "b", "event": "only-b", "args": []}
    publisher.close()


def test_python_request_is_understood_by_node(redis_url, peer, subscriber):  # noqa: F811
    """A REMOTE_JOIN encoded by lablib makes the Node server's socket join a room."""
    peer.send(cmd="connectClient", name="a", rooms=[])
    sid = peer.expect(lambda line: line.get("connected") == "a")["sid"]
    publisher = redis.Redis.from_url(redis_url)
    join = Request(RequestType.REMOTE_JOIN, "lablib", opts=BroadcastOptions((sid,), (), None),
                   rooms=("joined-by-python",))
    assert publisher.publish(CHANNELS.request, encode_request(join)) == 2   # Node's and ours
    assert decode_request(_next_message(subscriber)["data"]) == join
    assert peer.expect(lambda line: "joined" in line) == {"joined": "joined-by-python",
                                                          "sid": sid}
    # The join is visible to Node's own fetchSockets (local part) ...
    peer.send(cmd="fetchSockets", rooms=["joined-by-python"])
    request = decode_request(_next_message(subscriber)["data"])   # ... which asks us too
    publisher.publish(CHANNELS.response, encode_response(Response(request.request_id,
                                                                  sockets=[])))
    fetched = peer.expect(lambda line: "fetched" in line)["fetched"]
    assert [s["id"] for s in fetched] == [sid]
    assert "joined-by-python" in fetched[0]["rooms"]
    publisher.close()


def test_node_server_side_emit_and_broadcast_with_ack(subscriber, peer):
    uid = peer.ready["uid"]
    peer.send(cmd="serverSideEmit", event="hello-servers", args=[{"n": 1}])
    payload = _next_message(subscriber)["data"]
    assert payload == b'{"uid":"' + uid.encode() + b'","type":6,"data":["hello-servers",{"n":1}]}'
    request = decode_request(payload)
    assert request == Request(RequestType.SERVER_SIDE_EMIT, uid, data=["hello-servers", {"n": 1}])
    assert encode_request(request) == payload

    peer.send(cmd="broadcastWithAck", rooms=["room1"], timeout=60000, event="ask",
              args=[{"$bin": "0a"}])
    message = _next_message(subscriber)
    assert message["channel"] == b"socket.io-request#/#"
    payload = message["data"]
    assert payload[:1] == b"\x85"                     # a MessagePack map of 5: not JSON
    request = decode_request(payload)
    assert request.type == RequestType.BROADCAST and request.uid == uid
    assert request.packet == Packet(PacketType.EVENT, "/", ["ask", b"\x0a"])
    assert request.opts == BroadcastOptions(("room1",), (), {"timeout": 60000})
    assert encode_request(request) == payload
