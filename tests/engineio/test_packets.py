"""Engine.IO v4 packets and payloads: exact encodings, python-engineio equality, hypothesis."""

from __future__ import annotations

import pytest
from engineio import packet as pe_packet
from engineio import payload as pe_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.engineio.packets import (OpenInfo, Packet, PacketType, decode_packet, decode_payload,
                                     encode_packet, encode_payload)
from lablib.errors import LablibError, LocalProtocolError, PacketError, PayloadTooBig

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

M = PacketType.MESSAGE


# --- exact encodings (the spec's examples) --------------------------------------------------------

@pytest.mark.parametrize("packet, websocket, polling", [
    (Packet(M, "hello"), "4hello", "4hello"),
    (Packet(M, "€"), "4€", "4€"),
    (Packet(M, ""), "4", "4"),
    (Packet(M, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04", "bAQIDBA=="),
    (Packet(M, b""), b"", "b"),
    (Packet(PacketType.OPEN, '{"sid":"x"}'), '0{"sid":"x"}', '0{"sid":"x"}'),
    (Packet(PacketType.CLOSE), "1", "1"),
    (Packet(PacketType.PING), "2", "2"),
    (Packet(PacketType.PING, "probe"), "2probe", "2probe"),
    (Packet(PacketType.PONG, "probe"), "3probe", "3probe"),
    (Packet(PacketType.UPGRADE), "5", "5"),
    (Packet(PacketType.NOOP), "6", "6"),
])
def test_exact_encodings(packet, websocket, polling):
    assert encode_packet(packet, for_polling=False) == websocket
    assert encode_packet(packet, for_polling=True) == polling
    assert decode_packet(websocket) == packet
    assert decode_packet(polling) == packet


def test_payloads_from_the_spec():
    assert encode_payload([Packet(M, "hello"), Packet(PacketType.PING), Packet(M, "world")]) == "4hello\x1e2\x1e4world"
    assert encode_payload([Packet(M, "hello"), Packet(M, b"\x01\x02\x03\x04")]) == "4hello\x1ebAQIDBA=="
    assert encode_payload([Packet(M, "€"), Packet(M, b"\x01\x02\x03\x04")]) == "4€\x1ebAQIDBA=="
    assert decode_payload("4hello\x1e4world") == [Packet(M, "hello"), Packet(M, "world")]
    assert encode_payload([Packet(PacketType.NOOP)]) == "6"


def test_dict_data_is_compact_json_in_key_order():
    packet = Packet(PacketType.OPEN, {"sid": "abc", "upgrades": ["websocket"], "pingInterval": 25000})
    assert encode_packet(packet, for_polling=True) == '0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}'


def test_text_data_stays_text():
    # python-engineio would return a dict here; Engine.IO itself does not interpret messages
    assert decode_packet('4{"a":1}') == Packet(M, '{"a":1}')
    assert decode_packet("4123").data == "123"


def test_normalisation_makes_round_trips_exact():
    assert Packet(M).data == ""
    assert Packet(PacketType.PING, "").data is None
    assert Packet(3) == Packet(PacketType.PONG)
    assert repr(Packet(M, "hi")) == "Packet(MESSAGE, 'hi')"


def test_binary_only_for_messages():
    with pytest.raises(LocalProtocolError):
        Packet(PacketType.PING, b"x")
    with pytest.raises(LocalProtocolError):
        Packet(9)
    with pytest.raises(LocalProtocolError):
        Packet(M, 42)  # type: ignore[arg-type]


def test_record_separator_cannot_be_sent_over_polling():
    with pytest.raises(LocalProtocolError):
        encode_payload([Packet(M, "a\x1eb")])
    assert encode_packet(Packet(M, "a\x1eb"), for_polling=False) == "4a\x1eb"


# --- strict decoding ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "7", "x", "9hello", "٣", "bAQ", "b!!!!", "bAQIDBA=\x00", "bé"])
def test_bad_packets(bad):
    with pytest.raises(PacketError):
        decode_packet(bad)


@pytest.mark.parametrize("bad", ["", "4a\x1e", "\x1e4a", "4a\x1e\x1e4b", "4a\x1ex"])
def test_bad_payloads(bad):
    with pytest.raises(PacketError):
        decode_payload(bad)


def test_oversized_payload():
    assert decode_payload("4" + "a" * 9, max_payload=10) == [Packet(M, "a" * 9)]
    with pytest.raises(PayloadTooBig) as info:
        decode_payload("4" + "a" * 10, max_payload=10)
    assert info.value.http_status == 413
    with pytest.raises(PayloadTooBig):  # the limit counts UTF-8 bytes, not characters
        decode_payload("4€€€", max_payload=9)


def test_binary_frames_are_messages():
    assert decode_packet(b"4hello") == Packet(M, b"4hello")
    assert decode_packet(bytearray(b"\x00")) == Packet(M, b"\x00")


# --- the open packet ------------------------------------------------------------------------------

def test_open_info_json_matches_the_reference_key_order():
    info = OpenInfo("lv_VI97HAXpY6yYWAAAC")
    assert info.to_json() == ('{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
                              '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')
    assert OpenInfo.from_json(info.to_json()) == info
    assert encode_packet(info.to_packet(), for_polling=True) == "0" + info.to_json()


def test_open_info_without_max_payload():  # servers before engine.io 6.2 did not send it
    info = OpenInfo.from_json('{"sid":"a","upgrades":[],"pingInterval":300,"pingTimeout":200}')
    assert info == OpenInfo("a", (), 300, 200, 1_000_000)


@pytest.mark.parametrize("bad", ["", "[]", "{", '{"upgrades":[]}', '{"sid":"a","pingInterval":"x","pingTimeout":1}',
                                 '{"sid":"a","upgrades":[1],"pingInterval":1,"pingTimeout":1}',
                                 '{"sid":"a","pingInterval":true,"pingTimeout":1}'])
def test_open_info_rejects(bad):
    with pytest.raises(PacketError):
        OpenInfo.from_json(bad)


# --- byte for byte with python-engineio -------------------------------------------------------------

def pe_of(packet: Packet) -> pe_packet.Packet:
    return pe_packet.Packet(int(packet.type), packet.data)


SAMPLES = [
    Packet(M, "hello"), Packet(M, "€ and ünïcode"), Packet(M, b"\x00\xff" * 10), Packet(M, ""),
    Packet(PacketType.PING), Packet(PacketType.PING, "probe"), Packet(PacketType.PONG, "probe"),
    Packet(PacketType.CLOSE), Packet(PacketType.UPGRADE), Packet(PacketType.NOOP),
    OpenInfo("9bFlIkpYt5HfavHYPmHN").to_packet(),
    Packet(PacketType.OPEN, OpenInfo("x").to_dict()),
]


@pytest.mark.parametrize("packet", SAMPLES, ids=repr)
def test_packet_equals_python_engineio(packet):
    assert encode_packet(packet, for_polling=False) == pe_of(packet).encode(b64=False)
    assert encode_packet(packet, for_polling=True) == pe_of(packet).encode(b64=True)


def test_payload_equals_python_engineio():
    assert encode_payload(SAMPLES) == pe_payload.Payload(packets=[pe_of(p) for p in SAMPLES]).encode()


# --- hypothesis -----------------------------------------------------------------------------------

text_data = st.text(alphabet=st.characters(blacklist_characters="\x1e", blacklist_categories=("Cs",)))
packets = st.one_of(
    st.builds(Packet, st.just(M), st.one_of(text_data, st.binary(max_size=64))),
    st.builds(Packet, st.sampled_from([t for t in PacketType if t is not M]), st.one_of(st.none(), text_data)),
)


@FAST
@given(packets)
def test_packet_round_trip(packet):
    for for_polling in (False, True):
        assert decode_packet(encode_packet(packet, for_polling=for_polling)) == packet


@FAST
@given(packets)
def test_packet_equals_python_engineio_always(packet):
    assert encode_packet(packet, for_polling=True) == pe_of(packet).encode(b64=True)


@FAST
@given(st.lists(packets, min_size=1, max_size=8))
def test_payload_round_trip(many):
    text = encode_payload(many)
    assert decode_payload(text) == many
    assert decode_payload(text, max_payload=len(text.encode())) == many
    assert text == pe_payload.Payload(packets=[pe_of(p) for p in many]).encode()


@FAST
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40)))
def test_random_packets_raise_only_lablib_errors(data):
    try:
        decode_packet(data)
    except LablibError:
        pass


@FAST
@given(st.text(alphabet=st.sampled_from("0123456789b\x1eAQID=+/é "), max_size=40), st.integers(0, 50))
def test_random_payloads_raise_only_lablib_errors(text, limit):
    try:
        decode_payload(text, max_payload=limit)
    except (PacketError, PayloadTooBig):
        pass
