"""MQTT 3.1.1 packet codec: exact bytes, strict decoding, round trips under any chunking."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lablib.errors import LablibError
from lablib.mqtt.errors import InvalidPacket, MalformedPacket, PacketTooLarge
from lablib.mqtt.packets import (MAX_REMAINING_LENGTH, NEED_DATA, Connack, Connect, Disconnect,
                                 PacketParser, Pingreq, Pingresp, Puback, Pubcomp, Publish, Pubrec,
                                 Pubrel, Suback, Subscribe, Unsuback, Unsubscribe, decode,
                                 decode_remaining_length, encode, encode_remaining_length)


def parse_one(data: bytes):
    packets = PacketParser(max_packet_size=MAX_REMAINING_LENGTH).receive_data(data)
    assert len(packets) == 1
    return packets[0]


# --- exact byte vectors (each checked by hand against the spec's figures) ------------------------

VECTORS = [
    # §3.1: protocol name "MQTT", level 4, flags (clean session = 0x02), keep alive 60, client id
    (Connect("c1"), b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"),
    # will (flag 0x04, QoS 1 -> 0x08, retain 0x20), user name 0x80, password 0x40, no clean session
    (Connect("c", clean_session=False, keep_alive=10, will_topic="w", will_message=b"x",
             will_qos=1, will_retain=True, username="u", password=b"p"),
     b"\x10\x19\x00\x04MQTT\x04\xec\x00\x0a\x00\x01c\x00\x01w\x00\x01x\x00\x01u\x00\x01p"),
    (Connack(), b"\x20\x02\x00\x00"),
    (Connack(session_present=True), b"\x20\x02\x01\x00"),
    (Connack(return_code=5), b"\x20\x02\x00\x05"),
    (Publish("a/b", b"hi"), b"\x30\x07\x00\x03a/bhi"),
    (Publish("a/b", b"hi", qos=1, packet_id=10), b"\x32\x09\x00\x03a/b\x00\x0ahi"),
    (Publish("a", b"", qos=2, retain=True, dup=True, packet_id=0xFFFF),
     b"\x3d\x05\x00\x01a\xff\xff"),
    (Puback(1), b"\x40\x02\x00\x01"),
    (Pubrec(2), b"\x50\x02\x00\x02"),
    (Pubrel(3), b"\x62\x02\x00\x03"),       # [MQTT-3.6.1-1]: flags 0010
    (Pubcomp(4), b"\x70\x02\x00\x04"),
    (Subscribe(5, (("a/+", 1), ("#", 2))), b"\x82\x0c\x00\x05\x00\x03a/+\x01\x00\x01#\x02"),
    (Suback(5, (1, 0x80)), b"\x90\x04\x00\x05\x01\x80"),
    (Unsubscribe(6, ("a/+",)), b"\xa2\x07\x00\x06\x00\x03a/+"),
    (Unsuback(6), b"\xb0\x02\x00\x06"),
    (Pingreq(), b"\xc0\x00"),
    (Pingresp(), b"\xd0\x00"),
    (Disconnect(), b"\xe0\x00"),
]


@pytest.mark.parametrize("packet, data", VECTORS, ids=[type(p).__name__ for p, _ in VECTORS])
def test_exact_bytes(packet, data):
    assert encode(packet) == data
    assert parse_one(data) == packet


# --- the Remaining Length varint (§2.2.3) --------------------------------------------------------

@pytest.mark.parametrize("value, data", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),          # the table's rows in §2.2.3
])
def test_remaining_length_table(value, data):
    assert encode_remaining_length(value) == data
    assert decode_remaining_length(b"\x30" + data) == (value, len(data))


def test_remaining_length_limits():
    with pytest.raises(InvalidPacket):
        encode_remaining_length(MAX_REMAINING_LENGTH + 1)
    with pytest.raises(MalformedPacket, match="longer than 4 bytes"):
        decode_remaining_length(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(MalformedPacket, match="minimally"):
        decode_remaining_length(b"\x30\x80\x00")
    assert decode_remaining_length(b"\x30\xff\xff") is NEED_DATA


@given(st.integers(0, MAX_REMAINING_LENGTH))
def test_remaining_length_round_trip(value):
    data = encode_remaining_length(value)
    assert 1 <= len(data) <= 4
    assert decode_remaining_length(b"\x00" + data) == (value, len(data))


# --- strict decoding: each case says why ----------------------------------------------------------

@pytest.mark.parametrize("data, reason", [
    (b"\x00\x00", "type 0 is reserved"),
    (b"\xf0\x00", "type 15 is reserved"),
    (b"\x61\x02\x00\x01", "flags 0001, must be 0010"),        # PUBREL with wrong flags
    (b"\x80\x06\x00\x01\x00\x01a\x00", "flags 0000, must be 0010"),   # SUBSCRIBE flags 0000
    (b"\xc1\x00", "flags 0001, must be 0000"),                 # PINGREQ with a flag
    (b"\x36\x05\x00\x01a\x00\x01", "QoS bits 11"),
    (b"\x38\x03\x00\x01a", "DUP must be 0"),                    # QoS 0 with DUP
    (b"\x32\x05\x00\x01a\x00\x00", "Packet Identifier 0"),
    (b"\x40\x02\x00\x00", "Packet Identifier 0"),
    (b"\x30\x04\x00\x02\xc3\x28", "not well-formed UTF-8"),
    (b"\x30\x04\x00\x02\xed\xa0", "not well-formed UTF-8"),    # a surrogate half
    (b"\x30\x03\x00\x01\x00", "U+0000"),
    (b"\x30\x03\x00\x01+", "wildcards"),
    (b"\x30\x02\x00\x00", "at least one character"),
    (b"\x30\x03\x00\x05a", "Remaining Length too short"),
    (b"\x40\x03\x00\x01\x00", "beyond the packet's fields"),
    (b"\x20\x02\x02\x00", "reserved acknowledge flag"),
    (b"\x20\x02\x00\x06", "return code 6 is reserved"),
    (b"\x20\x02\x01\x05", "Session Present 0"),
    (b"\x10\x0e\x00\x04MQTT\x04\x03\x00\x3c\x00\x02c1", "reserved Connect Flags bit 0"),
    (b"\x10\x0e\x00\x04MQTX\x04\x02\x00\x3c\x00\x02c1", "Protocol Name"),
    (b"\x10\x0e\x00\x04MQTT\x04\x1a\x00\x3c\x00\x02c1", "Will QoS 3"),
    (b"\x10\x0e\x00\x04MQTT\x04\x22\x00\x3c\x00\x02c1", "no will"),      # will retain, no will
    (b"\x10\x11\x00\x04MQTT\x04\x42\x00\x3c\x00\x02c1\x00\x01p", "needs a User Name"),
    (b"\x82\x02\x00\x01", "at least one Topic Filter"),
    (b"\x82\x06\x00\x01\x00\x01a\x04", "reserved bits 7-2"),
    (b"\x82\x06\x00\x01\x00\x01a\x03", "Requested QoS must be 0, 1 or 2"),
    (b"\x82\x07\x00\x01\x00\x02a#\x00", "'#' must be a whole level"),
    (b"\x82\x08\x00\x01\x00\x03a+b\x00", "'+' must occupy a whole level"),
    (b"\x90\x03\x00\x01\x03", "return code 0x03 is reserved"),
    (b"\x90\x02\x00\x01", "one return code per filter"),
    (b"\xa2\x02\x00\x01", "at least one Topic Filter"),
    (b"\xc0\x01\x00", "beyond the packet's fields"),
])
def test_malformed(data, reason):
    with pytest.raises(MalformedPacket, match=reason.replace("+", r"\+")):
        PacketParser().receive_data(data)


def test_bad_type_refused_before_its_body_arrives():
    parser = PacketParser()
    with pytest.raises(MalformedPacket, match="reserved"):
        parser.receive_data(b"\xf0\xff\xff\xff\x7f")   # would announce 256 MB


def test_max_packet_size_refuses_before_buffering():
    parser = PacketParser(max_packet_size=100)
    with pytest.raises(PacketTooLarge, match="101 bytes"):
        parser.receive_data(b"\x30\x65")               # only the header: 101 bytes announced
    assert parser.buffered == 2
    with pytest.raises(PacketTooLarge):                # the parser stays failed
        parser.receive_data(b"\xc0\x00")


def test_exactly_max_packet_size_is_accepted():
    packet = Publish("t", b"x" * 97)                   # 2 + 1 + 97 = 100 bytes of body
    assert PacketParser(max_packet_size=100).receive_data(encode(packet)) == [packet]


@pytest.mark.parametrize("build, reason", [
    (lambda: Publish("a/#", b""), "wildcards"),
    (lambda: Publish("a", qos=1), "Packet Identifier must be 1-65535"),
    (lambda: Publish("a", qos=0, packet_id=1), "no Packet Identifier"),
    (lambda: Publish("a", qos=3, packet_id=1), "QoS must be 0, 1 or 2"),
    (lambda: Publish("a", dup=True), "DUP must be 0"),
    (lambda: Publish("\ud800", b""), "surrogate"),
    (lambda: Puback(0), "1-65535"),
    (lambda: Puback(65536), "1-65535"),
    (lambda: Subscribe(1, ()), "at least one"),
    (lambda: Subscribe(1, (("a", 3),)), "Requested QoS"),
    (lambda: Connect("c", password=b"p"), "needs a User Name"),
    (lambda: Connect("c", will_qos=1), "no will"),
    (lambda: Connect("x" * 65536), "at most 65535"),
])
def test_building_a_forbidden_packet_is_a_local_error(build, reason):
    with pytest.raises(InvalidPacket, match=reason):
        build()


def test_parser_yields_packets_split_across_and_within_chunks():
    data = encode(Pingreq()) + encode(Publish("t", b"abc", qos=1, packet_id=7)) + encode(Pingresp())
    parser = PacketParser()
    assert parser.receive_data(data[:3]) == [Pingreq()]
    assert parser.buffered == 1
    assert parser.receive_data(data[3:-1]) == [Publish("t", b"abc", qos=1, packet_id=7)]
    assert parser.receive_data(data[-1:]) == [Pingresp()]
    assert parser.offset == len(data)


# --- hypothesis: round trips, any chunking, random bytes ------------------------------------------

utf8_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    max_size=20)
topic_names = utf8_text.filter(lambda t: t and "+" not in t and "#" not in t)
level = st.one_of(st.just("+"), st.text(st.characters(blacklist_categories=("Cs",),
                                                      blacklist_characters="\x00+#/"), max_size=5))
topic_filters = st.builds(lambda levels, hash_: "/".join(levels + (["#"] if hash_ else [])),
                          st.lists(level, min_size=0, max_size=4), st.booleans()
                          ).filter(lambda f: f != "")
packet_ids = st.integers(1, 0xFFFF)
qos = st.integers(0, 2)


@st.composite
def publishes(draw):
    q = draw(qos)
    return Publish(draw(topic_names), draw(st.binary(max_size=300)), q, draw(st.booleans()),
                   draw(st.booleans()) if q else False, draw(packet_ids) if q else None)


@st.composite
def connects(draw):
    will = draw(st.booleans())
    username = draw(st.none() | utf8_text)
    return Connect(draw(utf8_text), draw(st.booleans()), draw(st.integers(0, 0xFFFF)),
                   draw(topic_names) if will else None,
                   draw(st.binary(max_size=20)) if will else b"",
                   draw(qos) if will else 0, draw(st.booleans()) if will else False,
                   username, draw(st.none() | st.binary(max_size=20)) if username is not None else None)


packets = st.one_of(
    connects(),
    st.builds(lambda sp, rc: Connack(sp and rc == 0, rc), st.booleans(), st.integers(0, 5)),
    publishes(),
    *(st.builds(cls, packet_ids) for cls in (Puback, Pubrec, Pubrel, Pubcomp, Unsuback)),
    st.builds(Subscribe, packet_ids, st.lists(st.tuples(topic_filters, qos), min_size=1,
                                              max_size=4).map(tuple)),
    st.builds(Suback, packet_ids, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1,
                                           max_size=4).map(tuple)),
    st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=4).map(tuple)),
    st.builds(Pingreq), st.builds(Pingresp), st.builds(Disconnect),
)


@given(packets)
def test_round_trip(packet):
    data = encode(packet)
    assert decode(data[0], data[1 + decode_remaining_length(data)[1]:]) == packet
    assert parse_one(data) == packet


@settings(max_examples=200)
@given(st.lists(packets, min_size=1, max_size=6), st.data())
def test_any_chunking_gives_the_same_packets(sequence, data):
    stream = b"".join(encode(p) for p in sequence)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser, out = PacketParser(), []
    for start, end in zip([0] + cuts, cuts + [len(stream)]):
        out += parser.receive_data(stream[start:end])
    assert out == sequence
    assert parser.buffered == 0


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_lablib_errors(data):
    parser = PacketParser(max_packet_size=1000)
    try:
        parser.receive_data(data)
    except LablibError:
        pass
