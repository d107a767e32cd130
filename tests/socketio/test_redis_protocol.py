"""lablib.socketio.redis_protocol: the @socket.io/redis-adapter 8.x wire format, sans-I/O.

Byte vectors here are the ones the Node adapter produced in
tests/interop/test_redis_adapter.py; hypothesis checks that every message round-trips.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lablib.errors import PacketError
from lablib.socketio.packets import Packet, PacketType
from lablib.socketio.redis_protocol import (
    ABSENT, BroadcastMessage, BroadcastOptions, Channels, Ignored, Request, RequestType, Response,
    broadcast_targets, decode_broadcast, decode_request, decode_response, encode_broadcast,
    encode_request, encode_response, is_json, packet_from_wire, packet_to_wire, receive_broadcast)

# --- channels -------------------------------------------------------------------------------


def test_channel_names():
    chat = Channels("/chat")
    assert chat.broadcast == "socket.io#/chat#"
    assert chat.pattern == "socket.io#/chat#*"
    assert chat.room("lobby") == "socket.io#/chat#lobby#"
    assert chat.request == "socket.io-request#/chat#"
    assert chat.response == "socket.io-response#/chat#"
    assert chat.specific_response("aB3xYz") == "socket.io-response#/chat#aB3xYz#"
    assert Channels("/", key="app").room("r") == "app#/#r#"


def test_one_room_gets_its_own_channel_several_share_the_namespaces():
    channels = Channels("/")
    assert channels.for_broadcast(["r1"]) == "socket.io#/#r1#"
    assert channels.for_broadcast([]) == "socket.io#/#"
    assert channels.for_broadcast(["r1", "r2"]) == "socket.io#/#"
    assert channels.for_broadcast(["r1", "r1"]) == "socket.io#/#r1#"   # a set in Node


def test_room_of():
    channels = Channels("/")
    assert channels.room_of(b"socket.io#/#") == ""
    assert channels.room_of("socket.io#/#lobby#") == "lobby"
    assert channels.room_of("socket.io#/chat#lobby#") is None     # another namespace
    assert channels.room_of("socket.io-request#/#") is None
    assert Channels("/chat").room_of("socket.io#/#") is None


@given(st.text(min_size=1).filter(lambda s: "#" not in s), st.text())
def test_room_channel_round_trip(namespace, room):
    channels = Channels("/" + namespace)
    assert channels.room_of(channels.room(room)) == room


# --- broadcasts -----------------------------------------------------------------------------

UID = "4iE9Kn"
NODE_BROADCAST = (  # io.to("room1").except("sidX").emit("hello", 1, "two", {three: 3.5}, buf)
    b"\x93\xa64iE9Kn"
    b"\x83\xa4type\x02\xa4data\x95\xa5hello\x01\xa3two\x81\xa5three"
    b"\xcb\x40\x0c\x00\x00\x00\x00\x00\x00\xc4\x03\x01\x02\x03\xa3nsp\xa1/"
    b"\x83\xa5rooms\x91\xa5room1\xa6except\x91\xa4sidX\xa5flags\x80")
NODE_MESSAGE = BroadcastMessage(
    UID, Packet(PacketType.EVENT, "/", ["hello", 1, "two", {"three": 3.5}, b"\x01\x02\x03"]),
    BroadcastOptions(("room1",), ("sidX",), {}))


def test_decode_the_node_broadcast():
    message = decode_broadcast(NODE_BROADCAST)
    assert message == NODE_MESSAGE
    assert message.packet.type == PacketType.BINARY_EVENT   # bytes inside: lablib's type 5


def test_encode_gives_nodes_bytes():
    assert encode_broadcast(NODE_MESSAGE) == ("socket.io#/#room1#", NODE_BROADCAST)


def test_binary_events_travel_as_type_2():
    """Node's encoder adds the attachments; a type 5 would make it JSON-encode the Buffers."""
    wire = packet_to_wire(Packet(PacketType.BINARY_EVENT, "/chat", ["x", b"\x00"]))
    assert wire == {"type": 2, "data": ["x", b"\x00"], "nsp": "/chat"}
    assert packet_to_wire(Packet(PacketType.ACK, "/", [b"\x01"], id=7)) == \
        {"type": 3, "data": [b"\x01"], "nsp": "/", "id": 7}


def test_a_packet_without_nsp_is_in_the_main_namespace():
    assert packet_from_wire({"type": 2, "data": ["e"]}) == Packet(PacketType.EVENT, "/", ["e"])


def test_notepack_undefined_and_missing_flags():
    # [uid, {type: 2, data: ["e", undefined]}, {rooms: [], except: []}]: notepack once wrote
    # undefined as fixext 1 of type 0; an undefined "flags" is left out of the map.
    payload = (b"\x93\xa1u\x82\xa4type\x02\xa4data\x92\xa1e\xd4\x00\x00"
               b"\x82\xa5rooms\x90\xa6except\x90")
    message = decode_broadcast(payload)
    assert message.packet.data == ["e", None]
    assert message.opts == BroadcastOptions((), (), None)


@pytest.mark.parametrize("payload", [
    b"", b"\xc1", b"\x92\xa1u\x80", b"\x93\x01\x80\x80", b"\x93\xa1u\x80\x80",
    b"\x93\xa1u\x81\xa4type\x02\x80",                     # EVENT without data
    b"\x93\xa1u\x81\xa4type\x02\x81\xa5rooms\x01",        # rooms is not a list
    b"\x93\xa1u\x82\xa4type\x09\xa4data\x90\x80",         # no packet type 9
    b"\x93\xa1u\x81\xa4type\x02\x80\x00",                 # trailing bytes
    b"\xdd\xff\xff\xff\xff",                              # claims 4 billion items
])
def test_malformed_broadcasts_raise_packet_error(payload):
    with pytest.raises(PacketError):
        decode_broadcast(payload)


# --- the receipt filter ---------------------------------------------------------------------

def _receive(channel, message, *, uid="mine01", rooms=("room1",), namespace="/"):
    _, payload = encode_broadcast(message)
    return receive_broadcast(channel, payload, channels=Channels(namespace), uid=uid,
                             has_room=lambda room: room in rooms)


def test_receive_delivers_a_broadcast_from_another_server():
    assert _receive("socket.io#/#room1#", NODE_MESSAGE) == NODE_MESSAGE
    assert _receive("socket.io#/#", NODE_MESSAGE) == NODE_MESSAGE


def test_receive_ignores_in_the_reference_order():
    assert _receive("socket.io#/chat#", NODE_MESSAGE) is Ignored.OTHER_CHANNEL
    assert _receive("socket.io#/#room2#", NODE_MESSAGE) is Ignored.UNKNOWN_ROOM
    assert _receive("socket.io#/#", NODE_MESSAGE, uid=UID) is Ignored.OWN_UID
    chat = BroadcastMessage("other1", Packet(PacketType.EVENT, "/chat", ["e"]))
    assert _receive("socket.io#/#", chat) is Ignored.OTHER_NAMESPACE
    assert receive_broadcast("socket.io#/#", b"\xc1", channels=Channels("/"), uid="x",
                             has_room=lambda room: True) is Ignored.MALFORMED


def test_an_unknown_room_is_not_even_decoded():
    assert receive_broadcast("socket.io#/#nobody#", b"\xc1", channels=Channels("/"), uid="x",
                             has_room=lambda room: False) is Ignored.UNKNOWN_ROOM


ROOMS = {"s1": ["s1"], "s2": ["s2"], "s3": ["s3"], "red": ["s1", "s2"], "blue": ["s2", "s3"]}


def _targets(rooms=(), except_=()):
    return broadcast_targets(BroadcastOptions(tuple(rooms), tuple(except_)),
                             lambda room: ROOMS.get(room, []), ["s1", "s2", "s3"])


def test_broadcast_targets():
    assert _targets() == ["s1", "s2", "s3"]
    assert _targets(["red"]) == ["s1", "s2"]
    assert _targets(["red", "blue"]) == ["s1", "s2", "s3"]       # each once
    assert _targets(["red"], ["s1"]) == ["s2"]                    # except a sid
    assert _targets([], ["blue"]) == ["s1"]                       # except a room
    assert _targets(["nowhere"]) == []


# --- requests and responses -----------------------------------------------------------------

NODE_FETCH = b'{"uid":"4iE9Kn","requestId":"Zx81Qa","type":5,"opts":{"rooms":["room1"],"except":[]}}'


def test_the_node_fetch_sockets_request():
    request = decode_request(NODE_FETCH)
    assert request == Request(RequestType.REMOTE_FETCH, "4iE9Kn", "Zx81Qa",
                              opts=BroadcastOptions(("room1",), (), None))
    assert encode_request(request) == NODE_FETCH


@pytest.mark.parametrize("request_, payload", [
    (Request(RequestType.ALL_ROOMS, "u", "r"), b'{"uid":"u","requestId":"r","type":1}'),
    (Request(RequestType.REMOTE_JOIN, "u", opts=BroadcastOptions(("a",), ("b",), None),
             rooms=("c",)),
     b'{"uid":"u","type":2,"opts":{"rooms":["a"],"except":["b"]},"rooms":["c"]}'),
    (Request(RequestType.REMOTE_DISCONNECT, "u", opts=BroadcastOptions((), (), None),
             close=True),
     b'{"uid":"u","type":4,"opts":{"rooms":[],"except":[]},"close":true}'),
    (Request(RequestType.SERVER_SIDE_EMIT, "u", data=["ping", 1]),
     b'{"uid":"u","type":6,"data":["ping",1]}'),
    (Request(RequestType.SERVER_SIDE_EMIT, "u", "r", data=["caf\u00e9"]),
     b'{"uid":"u","requestId":"r","type":6,"data":["caf\xc3\xa9"]}'),
])
def test_json_requests_in_nodes_key_order(request_, payload):
    assert encode_request(request_) == payload
    assert decode_request(payload) == request_


def test_broadcast_with_ack_is_messagepack():
    request = Request(RequestType.BROADCAST, "u", "r",
                      packet=Packet(PacketType.EVENT, "/", ["e"]),
                      opts=BroadcastOptions((), (), {"timeout": 5000}))
    payload = encode_request(request)
    assert payload == (b"\x85\xa3uid\xa1u\xa9requestId\xa1r\xa4type\x07"
                       b"\xa6packet\x83\xa4type\x02\xa4data\x91\xa1e\xa3nsp\xa1/"
                       b"\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x81\xa7timeout"
                       b"\xcd\x13\x88")
    assert not is_json(payload) and decode_request(payload) == request


@pytest.mark.parametrize("response, payload", [
    (Response("r", sockets=["s1"]), b'{"requestId":"r","sockets":["s1"]}'),
    (Response("r", rooms=["a", "b"]), b'{"requestId":"r","rooms":["a","b"]}'),
    (Response("r"), b'{"requestId":"r"}'),
    (Response("r", RequestType.SERVER_SIDE_EMIT, data="pong"),
     b'{"type":6,"requestId":"r","data":"pong"}'),
    (Response("r", RequestType.BROADCAST_CLIENT_COUNT, client_count=2),
     b'{"type":8,"requestId":"r","clientCount":2}'),
    (Response("r", RequestType.BROADCAST_ACK, packet=["ok", b"\x01"]),
     b"\x83\xa4type\x09\xa9requestId\xa1r\xa6packet\x92\xa2ok\xc4\x01\x01"),
])
def test_responses_in_nodes_key_order(response, payload):
    assert encode_response(response) == payload
    assert decode_response(payload) == response


@pytest.mark.parametrize("payload", [b"{", b'{"uid":"u"}', b'{"uid":1,"type":1}',
                                     b'{"uid":"u","type":42}', b"[1]", b"\x90", b"\xff\xfe"])
def test_malformed_requests_raise_packet_error(payload):
    with pytest.raises(PacketError):
        decode_request(payload)


@pytest.mark.parametrize("payload", [b'{"clientCount":-1}', b'{"clientCount":"2"}',
                                     b'{"clientCount":1.5}', b'{"type":99}', b'{"requestId":7}'])
def test_malformed_responses_raise_packet_error(payload):
    with pytest.raises(PacketError):
        decode_response(payload)


def test_absent_is_not_none():
    assert Request(RequestType.SERVER_SIDE_EMIT, "u").data is ABSENT
    assert encode_request(Request(RequestType.SERVER_SIDE_EMIT, "u", data=None)) == \
        b'{"uid":"u","type":6,"data":null}'


# --- round trips ----------------------------------------------------------------------------

names = st.text(max_size=12)
json_scalars = (st.none() | st.booleans() | st.integers(-2**53, 2**53)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(names, inner, max_size=4), max_leaves=12)
binary_values = st.recursive(json_scalars | st.binary(max_size=20),
                             lambda inner: st.lists(inner, max_size=4)
                             | st.dictionaries(names, inner, max_size=4), max_leaves=12)
namespaces = st.sampled_from(["/", "/chat", "/a/b", "/\u00e9"])
events = st.builds(lambda ns, name, args: Packet(PacketType.EVENT, ns, [name, *args]),
                   namespaces, st.sampled_from(["msg", "chat", "x"]),
                   st.lists(binary_values, max_size=4))
options = st.builds(BroadcastOptions, st.lists(names, max_size=3).map(tuple),
                    st.lists(names, max_size=3).map(tuple),
                    st.none() | st.dictionaries(st.sampled_from(["volatile", "compress",
                                                                 "local", "timeout"]),
                                                st.booleans() | st.integers(0, 10**6)))


@given(st.text(min_size=1, max_size=8), events, options)
def test_broadcast_round_trip(uid, packet, opts):
    message = BroadcastMessage(uid, packet, opts)
    channel, payload = encode_broadcast(message)
    assert decode_broadcast(payload) == message
    assert Channels(packet.namespace).room_of(channel) == (
        opts.rooms[0] if len(set(opts.rooms)) == 1 else "")


json_requests = st.one_of(
    st.builds(Request, st.just(RequestType.ALL_ROOMS), names, names),
    st.builds(Request, st.sampled_from([RequestType.REMOTE_JOIN, RequestType.REMOTE_LEAVE]),
              names, opts=options.map(lambda o: BroadcastOptions(o.rooms, o.except_, None)),
              rooms=st.lists(names, max_size=3).map(tuple)),
    st.builds(Request, st.just(RequestType.REMOTE_DISCONNECT), names,
              opts=st.just(BroadcastOptions((), (), None)), close=st.booleans()),
    st.builds(Request, st.just(RequestType.SERVER_SIDE_EMIT), names, st.none() | names,
              data=st.lists(json_values, min_size=1, max_size=3)),
    st.builds(Request, st.just(RequestType.BROADCAST), names, names, packet=events,
              opts=options),
)


@given(json_requests)
def test_request_round_trip(request_):
    payload = encode_request(request_)
    assert is_json(payload) == (request_.type != RequestType.BROADCAST)
    assert decode_request(payload) == request_


responses = st.one_of(
    st.builds(Response, names, sockets=st.lists(json_values, max_size=3)),
    st.builds(Response, names, rooms=st.lists(names, max_size=3)),
    st.builds(Response, names, st.just(RequestType.SERVER_SIDE_EMIT), data=json_values),
    st.builds(Response, names, st.just(RequestType.BROADCAST_CLIENT_COUNT),
              client_count=st.integers(0, 10**6)),
    st.builds(Response, names, st.just(RequestType.BROADCAST_ACK),
              packet=st.lists(binary_values, max_size=3)),
)


@given(responses)
def test_response_round_trip(response):
    assert decode_response(encode_response(response)) == response
