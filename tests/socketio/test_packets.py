"""Socket.IO v5 packets: the spec's encodings, python-socketio equality, attachments, strict decoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from socketio import packet as ps_packet

from lablib.errors import LablibError, LocalProtocolError, PacketError
from lablib.socketio.packets import (MAX_ACK_ID, Decoder, Packet, PacketType, decode, deconstruct,
                                     encode, has_binary, reconstruct)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

T = PacketType
B4 = b"\x01\x02\x03\x04"
PH0 = '{"_placeholder":true,"num":0}'
PH1 = '{"_placeholder":true,"num":1}'


# --- the spec's examples ("Packet encoding" tables) -----------------------------------------------

SPEC_EXAMPLES = [
    (Packet(T.CONNECT), ["0"]),
    (Packet(T.CONNECT, data={"sid": "wZX3oN0bSVIhsaknAAAI"}), ['0{"sid":"wZX3oN0bSVIhsaknAAAI"}']),
    (Packet(T.CONNECT, "/admin"), ["0/admin,"]),
    (Packet(T.CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
     ['0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}']),
    (Packet(T.CONNECT_ERROR, data={"message": "Not authorized"}), ['4{"message":"Not authorized"}']),
    (Packet(T.EVENT, data=["foo"]), ['2["foo"]']),
    (Packet(T.EVENT, "/admin", ["bar"]), ['2/admin,["bar"]']),
    (Packet(T.EVENT, data=["baz", B4]), [f'51-["baz",{PH0}]', B4]),
    (Packet(T.EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"]),
     [f'52-/admin,["baz",{PH0},{PH1}]', b"\x01\x02", b"\x03\x04"]),
    (Packet(T.EVENT, data=["foo"], id=12), ['212["foo"]']),
    (Packet(T.ACK, data=[], id=12), ["312[]"]),
    (Packet(T.EVENT, "/admin", ["foo"], 13), ['2/admin,13["foo"]']),
    (Packet(T.ACK, "/admin", ["bar"], 13), ['3/admin,13["bar"]']),
    (Packet(T.EVENT, data=["foo", B4], id=14), [f'51-14["foo",{PH0}]', B4]),
    (Packet(T.ACK, data=["bar"], id=14), ['314["bar"]']),
    (Packet(T.ACK, data=["bar", B4], id=15), [f'61-15["bar",{PH0}]', B4]),
    (Packet(T.DISCONNECT), ["1"]),
    (Packet(T.DISCONNECT, "/admin"), ["1/admin,"]),
    # the sample session: socket.emit("hey", "Jude")
    (Packet(T.EVENT, data=["hey", "Jude"]), ['2["hey","Jude"]']),
]


@pytest.mark.parametrize("packet, messages", SPEC_EXAMPLES)
def test_spec_examples(packet, messages):
    assert encode(packet) == messages
    assert decode(messages) == packet


def test_binary_type_follows_the_data():
    assert Packet(T.EVENT, data=["x", b"1"]).type is T.BINARY_EVENT
    assert Packet(T.ACK, data=[b"1"], id=0).type is T.BINARY_ACK
    assert Packet(T.BINARY_EVENT, data=["x"]).type is T.EVENT
    assert Packet(T.BINARY_ACK, data=[], id=1).type is T.ACK
    assert Packet(T.EVENT, data=["x", bytearray(b"1")]).binary
    assert encode(Packet(T.EVENT, data=["x", memoryview(b"ab")])) == [f'51-["x",{PH0}]', b"ab"]


def test_nested_attachments_are_numbered_depth_first():
    data = ["up", {"a": [b"A", {"b": b"B"}], "c": b"C"}, [[b"D"]]]
    stripped, attachments = deconstruct(data)
    assert attachments == [b"A", b"B", b"C", b"D"]
    assert json.dumps(stripped, separators=(",", ":")) == (
        '["up",{"a":[{"_placeholder":true,"num":0},{"b":{"_placeholder":true,"num":1}}],'
        '"c":{"_placeholder":true,"num":2}},[[{"_placeholder":true,"num":3}]]]')
    assert data[1]["a"][0] == b"A"   # the input is not modified
    assert reconstruct(stripped, attachments) == data


def test_non_ascii_and_surrogates_are_written_as_json_stringify_does():
    assert encode(Packet(T.EVENT, data=["é", "€😀"])) == ['2["é","€😀"]']
    # a lone surrogate cannot be UTF-8: escaped, as ES2019's well-formed JSON.stringify
    assert encode(Packet(T.EVENT, data=["x", "\ud800"])) == ['2["x","\\ud800"]']
    assert decode('2["x","\\ud800"]').data == ["x", "\ud800"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(type=9), "unknown"),
    (dict(type=T.EVENT, namespace="admin", data=["x"]), "starts with '/'"),
    (dict(type=T.EVENT, namespace="/a,b", data=["x"]), "','"),
    (dict(type=T.EVENT, data=[]), "non-empty array"),
    (dict(type=T.EVENT, data=[1, 2]), "event name"),
    (dict(type=T.EVENT, data="x"), "non-empty array"),
    (dict(type=T.EVENT, data=["x"], id=-1), "ack id"),
    (dict(type=T.EVENT, data=["x"], id=MAX_ACK_ID + 1), "ack id"),
    (dict(type=T.EVENT, data=["x"], id=True), "ack id"),
    (dict(type=T.ACK, data=[]), "needs an ack id"),
    (dict(type=T.ACK, data={}, id=1), "array"),
    (dict(type=T.CONNECT, data=["x"]), "object"),
    (dict(type=T.CONNECT, data={}, id=1), "no ack id"),
    (dict(type=T.CONNECT, data={"b": b"1"}), "binary"),
    (dict(type=T.DISCONNECT, data={}), "no data"),
    (dict(type=T.CONNECT_ERROR, data=None), "object or a string"),
    (dict(type=T.EVENT, data=["x", float("nan")]), "JSON number"),
    (dict(type=T.EVENT, data=["x", {1: 2}]), "keys must be strings"),
    (dict(type=T.EVENT, data=["x", {1, 2}]), "not JSON"),
])
def test_packets_that_cannot_be_encoded(kwargs, match):
    with pytest.raises(LocalProtocolError, match=match):
        Packet(**kwargs)


# --- byte-for-byte with python-socketio --------------------------------------------------------------

def ps_encode(kind, namespace, data, ack_id):
    encoded = ps_packet.Packet(kind, data=data, namespace=namespace, id=ack_id).encode()
    return [bytes(m) if isinstance(m, (bytes, bytearray)) else m
            for m in (encoded if isinstance(encoded, list) else [encoded])]


@pytest.mark.parametrize("packet, _", SPEC_EXAMPLES)
def test_spec_examples_equal_python_socketio(packet, _):
    plain = {T.BINARY_EVENT: T.EVENT, T.BINARY_ACK: T.ACK}.get(packet.type, packet.type)
    assert encode(packet) == ps_encode(int(plain), packet.namespace, packet.data, packet.id)


# Up to "~": python-socketio (json.dumps' ensure_ascii) escapes DEL and everything above it.
json_scalars = st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(
    st.characters(max_codepoint=0x7E), max_size=8)
json_floats = st.floats(allow_nan=False, allow_infinity=False)
keys = st.text(st.characters(max_codepoint=0x7E), max_size=5)


def json_like(scalars, with_bytes):
    leaves = scalars | st.binary(max_size=8) if with_bytes else scalars
    return st.recursive(leaves, lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(keys, children, max_size=4), max_leaves=12)


namespaces = st.sampled_from(["/", "/admin", "/a-b_c.d", "/chat/room"])
ack_ids = st.none() | st.integers(0, MAX_ACK_ID)
event_names = st.text(st.characters(max_codepoint=0x7E), max_size=8).filter(
    lambda n: n not in ("connect", "connect_error", "disconnect", "disconnecting",
                        "newListener", "removeListener"))


@FAST
@given(namespaces, event_names, st.lists(json_like(json_scalars, True), max_size=4), ack_ids)
def test_events_equal_python_socketio(namespace, name, args, ack_id):
    packet = Packet(T.EVENT, namespace, [name, *args], ack_id)
    assert encode(packet) == ps_encode(2, namespace, [name, *args], ack_id)


@FAST
@given(namespaces, st.lists(json_like(json_scalars, True), max_size=4), st.integers(0, MAX_ACK_ID))
def test_acks_equal_python_socketio(namespace, args, ack_id):
    assert encode(Packet(T.ACK, namespace, args, ack_id)) == ps_encode(3, namespace, args, ack_id)


def test_non_ascii_is_where_python_socketio_differs():
    # python-socketio writes json.dumps' default \\u escapes; JSON.stringify (and lablib) do not.
    ours, theirs = encode(Packet(T.EVENT, data=["é"])), ps_encode(2, "/", ["é"], None)
    assert ours == ['2["é"]'] and theirs == ['2["\\u00e9"]']
    assert decode(ours) == decode(theirs)


# --- round trips ------------------------------------------------------------------------------------

def any_packet():
    data = json_like(json_scalars | json_floats | st.text(max_size=8), True)
    plain_data = json_like(json_scalars | json_floats | st.text(max_size=8), False)
    return st.one_of(
        st.builds(lambda ns, n, a, i: Packet(T.EVENT, ns, [n, *a], i),
                  namespaces, event_names, st.lists(data, max_size=4), ack_ids),
        st.builds(lambda ns, a, i: Packet(T.ACK, ns, a, i),
                  namespaces, st.lists(data, max_size=4), st.integers(0, MAX_ACK_ID)),
        st.builds(lambda ns, d: Packet(T.CONNECT, ns, d), namespaces,
                  st.none() | st.dictionaries(keys, plain_data, max_size=3)),
        st.builds(lambda ns, d: Packet(T.CONNECT_ERROR, ns, d), namespaces,
                  st.text(max_size=8) | st.dictionaries(keys, plain_data, max_size=3)),
        st.builds(lambda ns: Packet(T.DISCONNECT, ns), namespaces),
    )


@FAST
@given(any_packet())
def test_round_trip(packet):
    messages = encode(packet)
    assert isinstance(messages[0], str)
    assert all(isinstance(m, bytes) for m in messages[1:])
    assert len(messages) - 1 == (int(messages[0][1:].split("-", 1)[0]) if packet.binary else 0)
    assert decode(messages, max_attachments=len(messages)) == packet


@FAST
@given(json_like(json_scalars | json_floats, True))
def test_deconstruct_then_reconstruct(data):
    stripped, attachments = deconstruct(data)
    assert not has_binary(stripped)
    assert len(attachments) == sum(1 for _ in _binaries(data))
    assert reconstruct(stripped, attachments) == data


def _binaries(value):
    if isinstance(value, bytes):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _binaries(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _binaries(item)


# --- strict decoding ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("7", "unknown packet type"),
    ("x", "unknown packet type"),
    ("51[]", "attachment count"),
    ("5-[\"x\"]", "attachment count"),
    ("5a-[\"x\"]", "attachment count"),
    ("50-[\"x\"]", "0 attachments"),
    ("511-[\"x\"]", "more than the limit of 10"),
    ("599999999999-[\"x\"]", "attachment count"),
    ('51-["x",{"_placeholder":true,"num":1}]', "out of range"),
    ('51-["x",{"_placeholder":true,"num":-1}]', "out of range"),
    ('51-["x",{"_placeholder":true,"num":"0"}]', "out of range"),
    ('51-["x",{"_placeholder":true}]', "out of range"),
    ("2[\"x\"", "not JSON"),
    ("2{oops}", "not JSON"),
    ('2["x"]]', "not JSON"),
    ('2["x",NaN]', "not JSON"),
    ('2["x",Infinity]', "not JSON"),
    ('2["x",1e999]', "out of range"),
    ("2", "non-empty array"),
    ("2[]", "non-empty array"),
    ("2[1]", "event name"),
    ('2{"a":1}', "non-empty array"),
    ('2["disconnect"]', "reserved event name"),
    ('51-["connect",{"_placeholder":true,"num":0}]', "reserved event name"),
    ("3[]", "needs an ack id"),
    ('31{"a":1}', "array"),
    ("0[]", "object"),
    ('0"x"', "object"),
    ("01", "no ack id"),
    ('1{"reason":"x"}', "no data"),
    ("4", "object or a string"),
    ("4[]", "object or a string"),
    ("2admin,[\"x\"]", "not JSON"),
    # the namespace runs to ',' or to the end: '/admin["x"]' is a namespace, and no data
    ('2/admin["x"]', "non-empty array"),
    ("2/admin", "non-empty array"),
    ("3/admin", "needs an ack id"),
    ('212345678901234567["x"]', "ack id too long"),
    ('29007199254740992["x"]', "ack id too long"),
])
def test_decoding_errors(text, match):
    with pytest.raises(PacketError, match=match):
        Decoder().receive(text)


@pytest.mark.parametrize("text, packet", [
    ("0/admin", Packet(T.CONNECT, "/admin")),
    ("1/admin", Packet(T.DISCONNECT, "/admin")),
    ("0/admin,", Packet(T.CONNECT, "/admin")),
    ("1/chat/room", Packet(T.DISCONNECT, "/chat/room")),
    ("0/", Packet(T.CONNECT, "/")),
])
def test_a_namespace_may_run_to_the_end_of_the_packet(text, packet):
    """socket.io-parser (and python-socketio) end the namespace at ',' or at the end of the
    text; ``0/admin`` is a CONNECT to "/admin" (encoding still writes ``0/admin,``)."""
    assert Decoder().receive(text) == packet
    assert ps_packet.Packet(encoded_packet=text).namespace == packet.namespace


def test_largest_ack_id_decodes():
    assert decode('29007199254740991["x"]').id == MAX_ACK_ID
    assert decode('2007["x"]').id == 7   # leading zeros, as Number("007")


def test_placeholders_in_a_plain_event_are_just_data():
    assert decode(f'2["x",{PH0}]').data == ["x", {"_placeholder": True, "num": 0}]


def test_decoder_collects_attachments_then_is_ready_again():
    d = Decoder()
    assert d.receive(f'52-/admin,7["up",{PH1},{PH0}]') is None
    assert d.awaiting_attachments == 2
    assert d.receive(b"first") is None
    assert d.awaiting_attachments == 1
    assert d.receive(bytearray(b"second")) == Packet(T.EVENT, "/admin", ["up", b"second", b"first"], 7)
    assert d.awaiting_attachments == 0
    assert d.receive('2["next"]') == Packet(T.EVENT, data=["next"])


def test_binary_message_when_none_expected():
    with pytest.raises(PacketError, match="no attachment was expected"):
        Decoder().receive(b"\x01")


def test_text_while_attachments_expected_resets_the_decoder():
    d = Decoder()
    d.receive(f'51-["x",{PH0}]')
    with pytest.raises(PacketError, match="still expected"):
        d.receive('2["y"]')
    assert d.awaiting_attachments == 0
    assert d.receive('2["y"]') == Packet(T.EVENT, data=["y"])   # usable again after reset


def test_limits_are_configurable():
    assert Decoder(max_attachments=1).receive(f'51-["x",{PH0}]') is None
    with pytest.raises(PacketError, match="limit of 1"):
        Decoder(max_attachments=1).receive(f'52-["x",{PH0},{PH1}]')
    assert Decoder(reserved_events=()).receive('2["disconnect"]') == Packet(T.EVENT, data=["disconnect"])


def test_deep_nesting_is_refused_cleanly():
    with pytest.raises(PacketError):
        Decoder().receive('2["x",' + "[" * 100_000 + "]" * 100_000 + "]")
    with pytest.raises(PacketError):
        Decoder().receive('2["x",' + "[" * 100_000)


def test_huge_number_is_refused_cleanly():
    with pytest.raises(PacketError, match="not JSON"):
        Decoder().receive('2["x",' + "9" * 10_000 + "]")


def test_decode_helper():
    with pytest.raises(PacketError, match="incomplete"):
        decode([f'51-["x",{PH0}]'])
    with pytest.raises(PacketError, match="more messages"):
        decode(['2["x"]', '2["y"]'])
    with pytest.raises(PacketError, match="str or bytes"):
        Decoder().receive(42)  # type: ignore[arg-type]


def test_reconstruct_refuses_bad_placeholders():
    with pytest.raises(PacketError, match="out of range"):
        reconstruct([{"_placeholder": True, "num": 2}], [b"a"])
    with pytest.raises(PacketError, match="out of range"):
        reconstruct([{"_placeholder": True, "num": True}], [b"a", b"b"])
    assert reconstruct([{"_placeholder": False, "num": 5}], []) == [{"_placeholder": False, "num": 5}]


@FAST
@given(st.lists(st.text(max_size=30) | st.binary(max_size=10), max_size=6))
def test_random_messages_raise_only_packet_errors(messages):
    d = Decoder()
    for message in messages:
        try:
            packet = d.receive(message)
        except PacketError:
            continue
        if packet is not None:
            assert isinstance(packet, Packet)


prefixes = st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "51-", "52-", "61-", "2/a,", "21",
                            "51-/x,3", "3/admin,7"])
json_texts = st.builds(lambda v: json.dumps(v), json_like(json_scalars, False))


@FAST
@given(st.lists(st.builds(str.__add__, prefixes, json_texts | st.text(max_size=12)) | st.binary(max_size=4),
                max_size=6))
def test_plausible_messages_raise_only_packet_errors(messages):
    d = Decoder()
    for message in messages:
        try:
            d.receive(message)
        except PacketError:
            pass
        except LablibError as exc:   # pragma: no cover - would be a bug
            pytest.fail(f"{type(exc).__name__}: {exc}")
