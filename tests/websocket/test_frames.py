"""RFC 6455 §5 — frames: exact bytes, the parser's rules, masking, and hypothesis properties."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.errors import InvalidUTF8, LablibError, PayloadTooBig, WebSocketProtocolError
from lablib.websocket.frames import (NEED_DATA, CloseCode, Frame, FrameParser, Opcode, apply_mask,
                                     encode_close_payload, encode_frame, is_valid_close_code,
                                     parse_close_payload)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY = bytes.fromhex("37fa213d")  # the masking key of RFC 6455 §5.7's examples


def reference_mask(data: bytes, key: bytes) -> bytes:
    """§5.3 written literally: octet i XOR key octet i mod 4 (slow on purpose)."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def parse_all(data: bytes, **kwargs) -> list[Frame]:
    parser = FrameParser(**kwargs)
    frames = parser.receive_data(data)
    assert parser.buffered == 0
    return frames


def parse_error(data: bytes, **kwargs) -> WebSocketProtocolError:
    with pytest.raises(WebSocketProtocolError) as info:
        FrameParser(**kwargs).receive_data(data)
    return info.value


# --- RFC 6455 §5.7: every example, both directions ---------------------------------------------

RFC_EXAMPLES = [
    # (what the RFC calls it, bytes on the wire, frames)
    ("single-frame unmasked text",
     bytes.fromhex("810548656c6c6f"), [Frame(Opcode.TEXT, b"Hello")]),
    ("single-frame masked text",
     bytes.fromhex("818537fa213d7f9f4d5158"), [Frame(Opcode.TEXT, b"Hello", masking_key=KEY)]),
    ("fragmented unmasked text",
     bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
     [Frame(Opcode.TEXT, b"Hel", fin=False), Frame(Opcode.CONT, b"lo")]),
    ("unmasked ping",
     bytes.fromhex("890548656c6c6f"), [Frame(Opcode.PING, b"Hello")]),
    ("masked pong",
     bytes.fromhex("8a8537fa213d7f9f4d5158"), [Frame(Opcode.PONG, b"Hello", masking_key=KEY)]),
    ("256 bytes binary, unmasked",
     b"\x82\x7e\x01\x00" + bytes(256), [Frame(Opcode.BINARY, bytes(256))]),
    ("64 KiB binary, unmasked",
     b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + bytes(65536),
     [Frame(Opcode.BINARY, bytes(65536))]),
]


@pytest.mark.parametrize("name, wire, frames", RFC_EXAMPLES, ids=[e[0] for e in RFC_EXAMPLES])
def test_rfc_examples_encode(name, wire, frames):
    assert b"".join(frame.encode() for frame in frames) == wire


@pytest.mark.parametrize("name, wire, frames", RFC_EXAMPLES, ids=[e[0] for e in RFC_EXAMPLES])
def test_rfc_examples_parse(name, wire, frames):
    assert parse_all(wire) == frames


def test_rfc_masked_hello_fields():
    (frame,) = parse_all(bytes.fromhex("818537fa213d7f9f4d5158"), mask_required=True)
    assert frame.fin and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.opcode is Opcode.TEXT
    assert frame.mask and frame.masking_key == KEY
    assert frame.payload == b"Hello" and frame.payload_len == 5 and frame.header_len == 6


# --- exact bytes for every opcode ------------------------------------------------------------

@pytest.mark.parametrize("opcode, first", [
    (Opcode.CONT, 0x80), (Opcode.TEXT, 0x81), (Opcode.BINARY, 0x82),
    (Opcode.CLOSE, 0x88), (Opcode.PING, 0x89), (Opcode.PONG, 0x8A),
])
def test_each_opcode_unmasked_and_masked(opcode, first):
    assert encode_frame(opcode, b"Spam") == bytes([first, 0x04]) + b"Spam"
    masked = encode_frame(opcode, b"Spam", masking_key=b"\x00\x00\x00\x00")
    assert masked == bytes([first, 0x84]) + b"\x00\x00\x00\x00Spam"
    masked = encode_frame(opcode, b"Spam", masking_key=KEY)
    assert masked == bytes([first, 0x84]) + KEY + reference_mask(b"Spam", KEY)
    assert parse_all(masked) == [Frame(opcode, b"Spam", masking_key=KEY)]


def test_fin_and_rsv_bits():
    assert encode_frame(Opcode.TEXT, b"", fin=False) == b"\x01\x00"
    assert encode_frame(Opcode.TEXT, b"", rsv1=True) == b"\xc1\x00"
    assert encode_frame(Opcode.TEXT, b"", rsv2=True) == b"\xa1\x00"
    assert encode_frame(Opcode.TEXT, b"", rsv3=True) == b"\x91\x00"
    assert encode_frame(Opcode.CONT, b"", fin=False, rsv1=True, rsv2=True, rsv3=True) == b"\x70\x00"


def test_masking_key_must_be_4_bytes():
    with pytest.raises(ValueError):
        encode_frame(Opcode.TEXT, b"x", masking_key=b"abc")


# --- every length boundary: 7-bit, 16-bit and 64-bit forms (§5.2) -----------------------------

LENGTHS = [
    # payload length, length bytes after the opcode byte (without the MASK bit)
    (0, b"\x00"),
    (1, b"\x01"),
    (125, b"\x7d"),
    (126, b"\x7e\x00\x7e"),
    (127, b"\x7e\x00\x7f"),
    (65535, b"\x7e\xff\xff"),
    (65536, b"\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    (65537, b"\x7f\x00\x00\x00\x00\x00\x01\x00\x01"),
]


@pytest.mark.parametrize("n, length_bytes", LENGTHS, ids=[str(n) for n, _ in LENGTHS])
def test_length_boundaries_unmasked(n, length_bytes):
    payload = bytes(i % 251 for i in range(n))
    wire = encode_frame(Opcode.BINARY, payload)
    assert wire == b"\x82" + length_bytes + payload
    frame = Frame(Opcode.BINARY, payload)
    assert frame.header_len == 1 + len(length_bytes)
    assert parse_all(wire, mask_required=False) == [frame]


@pytest.mark.parametrize("n, length_bytes", LENGTHS, ids=[str(n) for n, _ in LENGTHS])
def test_length_boundaries_masked(n, length_bytes):
    payload = bytes(i % 251 for i in range(n))
    wire = encode_frame(Opcode.BINARY, payload, masking_key=KEY)
    masked_len = bytes([length_bytes[0] | 0x80]) + length_bytes[1:]
    assert wire == b"\x82" + masked_len + KEY + reference_mask(payload, KEY)
    frame = Frame(Opcode.BINARY, payload, masking_key=KEY)
    assert frame.header_len == 1 + len(length_bytes) + 4
    assert parse_all(wire, mask_required=True) == [frame]


@pytest.mark.parametrize("n", [0, 125])
def test_control_frame_length_boundaries(n):
    for opcode, first in ((Opcode.CLOSE, 0x88), (Opcode.PING, 0x89), (Opcode.PONG, 0x8A)):
        payload = b"p" * n
        assert encode_frame(opcode, payload) == bytes([first, n]) + payload
        assert parse_all(encode_frame(opcode, payload)) == [Frame(opcode, payload)]


# --- the minimal-encoding rule (§5.2 "the minimal number of bytes MUST be used") -----------

@pytest.mark.parametrize("wire", [
    b"\x82\x7e\x00\x00",                              # 0 in the 16-bit form
    b"\x82\x7e\x00\x7d" + bytes(125),                 # 125 in the 16-bit form
    b"\x82\x7f" + struct.pack("!Q", 0),               # 0 in the 64-bit form
    b"\x82\x7f" + struct.pack("!Q", 125),
    b"\x82\x7f" + struct.pack("!Q", 126),             # fits 16 bits
    b"\x82\x7f" + struct.pack("!Q", 65535),
], ids=["16bit-0", "16bit-125", "64bit-0", "64bit-125", "64bit-126", "64bit-65535"])
def test_non_minimal_length_rejected(wire):
    error = parse_error(wire)
    assert error.close_code == 1002
    assert "minimal" in error.reason


def test_non_minimal_length_rejected_before_the_payload():
    parser = FrameParser()
    parser.feed(b"\x82\x7e\x00\x05")  # no payload yet
    with pytest.raises(WebSocketProtocolError):
        parser.next_frame()


def test_64bit_length_with_msb_set_rejected():
    error = parse_error(b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00")
    assert error.close_code == 1002
    assert "most significant bit" in error.reason


def test_minimal_forms_accepted_at_their_lower_bound():
    assert parse_all(b"\x82\x7e\x00\x7e" + bytes(126)) == [Frame(Opcode.BINARY, bytes(126))]
    wire = b"\x82\x7f" + struct.pack("!Q", 65536) + bytes(65536)
    assert parse_all(wire) == [Frame(Opcode.BINARY, bytes(65536))]


# --- opcodes, RSV bits, control frames, masking direction ------------------------------------

@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_rejected(opcode):
    error = parse_error(bytes([0x80 | opcode, 0x00]))
    assert type(error) is WebSocketProtocolError
    assert error.close_code == 1002
    assert "reserved opcode" in error.reason


@pytest.mark.parametrize("rsv_bits", [0x40, 0x20, 0x10, 0x70])
def test_rsv_bits_without_extension_rejected(rsv_bits):
    error = parse_error(bytes([0x81 | rsv_bits, 0x00]))
    assert error.close_code == 1002
    assert "RSV" in error.reason


def test_allowed_rsv_lets_rsv1_through_only():
    parser = FrameParser(allowed_rsv=0x40)
    assert parser.receive_data(b"\xc1\x02hi") == [Frame(Opcode.TEXT, b"hi", rsv1=True)]
    with pytest.raises(WebSocketProtocolError) as info:
        FrameParser(allowed_rsv=0x40).receive_data(b"\xe1\x00")  # RSV1 + RSV2
    assert info.value.close_code == 1002
    with pytest.raises(WebSocketProtocolError):
        FrameParser(allowed_rsv=0x40).receive_data(b"\xa1\x00")  # RSV2 alone


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_control_frame_longer_than_125_rejected(opcode):
    error = parse_error(bytes([0x80 | opcode, 0x7E, 0x00, 0x7E]) + bytes(126))
    assert error.close_code == 1002
    assert "125" in error.reason


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_fragmented_control_frame_rejected(opcode):
    error = parse_error(bytes([opcode, 0x00]))
    assert error.close_code == 1002
    assert "fragmented control" in error.reason


def test_control_frame_errors_detected_from_two_bytes():
    parser = FrameParser()
    parser.feed(b"\x89\x7e")  # the extended length has not arrived: still an error
    with pytest.raises(WebSocketProtocolError):
        parser.next_frame()


def test_server_requires_masked_client_frames():
    error = parse_error(b"\x81\x05Hello", mask_required=True)
    assert error.close_code == 1002
    assert "must be masked" in error.reason
    assert parse_all(bytes.fromhex("818537fa213d7f9f4d5158"), mask_required=True)[0].payload == b"Hello"


def test_client_forbids_masked_server_frames():
    error = parse_error(bytes.fromhex("818537fa213d7f9f4d5158"), mask_required=False)
    assert error.close_code == 1002
    assert "must not be masked" in error.reason
    assert parse_all(b"\x81\x05Hello", mask_required=False) == [Frame(Opcode.TEXT, b"Hello")]


def test_mask_required_none_accepts_both():
    wire = b"\x81\x05Hello" + bytes.fromhex("818537fa213d7f9f4d5158")
    frames = parse_all(wire, mask_required=None)
    assert [f.payload for f in frames] == [b"Hello", b"Hello"]
    assert [f.mask for f in frames] == [False, True]


def test_parser_stays_failed_after_an_error():
    parser = FrameParser()
    with pytest.raises(WebSocketProtocolError):
        parser.receive_data(b"\x83\x00")
    with pytest.raises(WebSocketProtocolError):
        parser.receive_data(b"\x81\x00")


# --- max_size: PayloadTooBig (1009) at header time ------------------------------------------

def test_max_size_rejects_at_header_time_16bit():
    parser = FrameParser(max_size=1000)
    parser.feed(b"\x82\x7e\x03\xe9")  # 1001 bytes announced, none sent
    with pytest.raises(PayloadTooBig) as info:
        parser.next_frame()
    assert info.value.close_code == 1009
    assert info.value.http_status == 413


def test_max_size_rejects_at_header_time_64bit():
    parser = FrameParser(max_size=1 << 20)
    parser.feed(b"\x82\x7f" + struct.pack("!Q", 1 << 40))  # a terabyte announced
    with pytest.raises(PayloadTooBig) as info:
        parser.next_frame()
    assert info.value.close_code == 1009


def test_max_size_rejects_masked_frame_before_the_key():
    parser = FrameParser(mask_required=True, max_size=10)
    parser.feed(b"\x82\x8b")  # 11 bytes, masked; no key yet
    with pytest.raises(PayloadTooBig):
        parser.next_frame()


def test_max_size_allows_exactly_the_limit():
    assert parse_all(b"\x82\x0a" + bytes(10), max_size=10) == [Frame(Opcode.BINARY, bytes(10))]
    with pytest.raises(PayloadTooBig):
        FrameParser(max_size=10).receive_data(b"\x82\x0b" + bytes(11))


@pytest.mark.parametrize("step_by_step", [False, True])
def test_max_size_bounds_a_fragmented_message_from_the_header(step_by_step):
    """The limit is on the whole message: the fragment that would take it past the limit fails
    as soon as its header arrives, however the frames are read."""
    parser = FrameParser(max_size=10)
    wire = (encode_frame(Opcode.TEXT, b"123456", fin=False) + encode_frame(Opcode.PING, b"p")
            + encode_frame(Opcode.CONT, b"7890", fin=False))  # exactly 10 so far
    first = [Frame(Opcode.TEXT, b"123456", fin=False), Frame(Opcode.PING, b"p"),
             Frame(Opcode.CONT, b"7890", fin=False)]
    if step_by_step:
        parser.feed(wire)
        assert [parser.next_frame() for _ in first] == first
    else:
        assert parser.receive_data(wire) == first
    parser.feed(b"\x80\x01")  # the header of a last fragment of 1 byte
    with pytest.raises(PayloadTooBig, match="fragmented message exceeds the limit of 10"):
        parser.next_frame() if step_by_step else parser.receive_frames()


def test_max_size_counts_a_new_message_from_zero():
    # Two fragmented messages of 8 bytes each, with a limit of 10: both fit.
    message = encode_frame(Opcode.BINARY, bytes(4), fin=False) + encode_frame(Opcode.CONT, bytes(4))
    assert len(FrameParser(max_size=10).receive_data(message * 2)) == 4


def test_frames_before_an_invalid_one_are_returned_then_the_error():
    parser = FrameParser()
    good = encode_frame(Opcode.TEXT, b"ok") + encode_frame(Opcode.BINARY, b"\x00")
    assert parser.receive_data(good + b"\x83\x00") == [Frame(Opcode.TEXT, b"ok"),
                                                        Frame(Opcode.BINARY, b"\x00")]
    with pytest.raises(WebSocketProtocolError, match="reserved opcode 0x3"):
        parser.receive_frames()
    with pytest.raises(WebSocketProtocolError):  # and it stays failed
        parser.receive_data(b"\x81\x00")


def test_max_size_does_not_apply_to_control_frames():
    assert parse_all(b"\x89\x05Hello", max_size=0) == [Frame(Opcode.PING, b"Hello")]


# --- incremental parsing -----------------------------------------------------------------------

def test_need_data_until_the_frame_is_complete():
    wire = encode_frame(Opcode.TEXT, b"x" * 300, masking_key=KEY)
    parser = FrameParser(mask_required=True)
    for i, byte in enumerate(wire[:-1]):
        parser.feed(bytes([byte]))
        assert parser.next_frame() is NEED_DATA
        assert parser.buffered == i + 1
    parser.feed(wire[-1:])
    assert parser.next_frame() == Frame(Opcode.TEXT, b"x" * 300, masking_key=KEY)
    assert parser.next_frame() is NEED_DATA
    assert parser.buffered == 0


def test_several_frames_in_one_chunk_and_a_partial_one():
    parser = FrameParser()
    frames = parser.receive_data(b"\x81\x02hi\x82\x01\x00\x89\x00\x81\x05Hel")
    assert frames == [Frame(Opcode.TEXT, b"hi"), Frame(Opcode.BINARY, b"\x00"), Frame(Opcode.PING)]
    assert parser.buffered == 5
    assert parser.receive_data(b"lo") == [Frame(Opcode.TEXT, b"Hello")]


def test_frame_repr_shows_fields():
    text = repr(Frame(Opcode.TEXT, b"Hello", masking_key=KEY))
    assert "TEXT" in text and "len=5" in text and "37fa213d" in text


# --- masking (§5.3) ---------------------------------------------------------------------------

MASK_LENGTHS = list(range(0, 41)) + [4088, 4093, 4094, 4095, 4096, 4097, 4098, 4099, 4100,
                                      4101, 4102, 4103, 4104, 4105, 8191, 65537]


@pytest.mark.parametrize("n", MASK_LENGTHS)
def test_apply_mask_matches_the_reference(n):
    data = bytes((i * 7 + 3) % 256 for i in range(n))
    for key in (KEY, b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x03\x04"):
        expected = reference_mask(data, key)
        assert apply_mask(data, key) == expected
        assert apply_mask(bytearray(data), key) == expected
        assert apply_mask(memoryview(data), key) == expected
        assert apply_mask(expected, key) == data  # masking is its own inverse


@pytest.mark.parametrize("n", [5, 4097, 4103])
@pytest.mark.parametrize("offset", [1, 3, 7])
def test_apply_mask_on_an_unaligned_memoryview(n, offset):
    buffer = bytearray(bytes((i * 13) % 256 for i in range(n + offset)))
    view = memoryview(buffer)[offset:]
    assert apply_mask(view, KEY) == reference_mask(bytes(view), KEY)


def test_apply_mask_returns_bytes():
    assert type(apply_mask(bytearray(b"abcd"), KEY)) is bytes
    assert type(apply_mask(bytearray(5000), KEY)) is bytes
    assert apply_mask(b"", KEY) == b""


@given(st.binary(max_size=9000), st.binary(min_size=4, max_size=4))
@FAST
def test_apply_mask_property(data, key):
    assert apply_mask(data, key) == reference_mask(data, key)


# --- close payload (§5.5.1, §7.4) -------------------------------------------------------------

def test_close_payload_round_trip():
    assert encode_close_payload(1000, "bye") == b"\x03\xe8bye"
    assert parse_close_payload(b"\x03\xe8bye") == (1000, "bye")
    assert encode_close_payload() == b""
    assert parse_close_payload(b"") == (CloseCode.NO_STATUS_RCVD, "")
    assert encode_close_payload(4999, "é") == b"\x13\x87\xc3\xa9"
    assert parse_close_payload(b"\x13\x87\xc3\xa9") == (4999, "é")


def test_close_payload_encode_limits():
    assert len(encode_close_payload(1000, "x" * 123)) == 125
    with pytest.raises(ValueError):
        encode_close_payload(1000, "x" * 124)
    with pytest.raises(ValueError):
        encode_close_payload(None, "a reason needs a code")


def test_close_payload_errors():
    with pytest.raises(WebSocketProtocolError) as info:
        parse_close_payload(b"\x03")
    assert info.value.close_code == 1002
    with pytest.raises(WebSocketProtocolError) as info:
        parse_close_payload(b"\x03\xed")  # 1005
    assert info.value.close_code == 1002
    with pytest.raises(InvalidUTF8) as info:
        parse_close_payload(b"\x03\xe8\xff")
    assert info.value.close_code == 1007


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_codes(code):
    assert not is_valid_close_code(code)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes(code):
    assert is_valid_close_code(code)
    assert parse_close_payload(struct.pack("!H", code)) == (code, "")


# --- hypothesis ------------------------------------------------------------------------------

@st.composite
def frames(draw, masked: bool | None = None):
    """Any frame §5 allows: control frames are fin and ≤ 125 bytes."""
    opcode = draw(st.sampled_from(list(Opcode)))
    if opcode.is_control:
        payload = draw(st.binary(max_size=125))
        fin = True
    else:
        size = draw(st.one_of(st.integers(0, 300), st.sampled_from([125, 126, 65535, 65536])))
        payload = draw(st.binary(min_size=size, max_size=size)) if size <= 300 else \
            bytes(range(256)) * (size // 256) + bytes(size % 256)
        fin = draw(st.booleans())
    if masked is None:
        masked = draw(st.booleans())
    masking_key = draw(st.binary(min_size=4, max_size=4)) if masked else None
    return Frame(opcode, payload, fin, draw(st.booleans()), draw(st.booleans()),
                 draw(st.booleans()), masking_key)


def split_points(draw, length: int) -> list[int]:
    points = draw(st.lists(st.integers(0, length), max_size=8))
    return sorted(set(points))


def chunks_of(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0] + points + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def feed_chunks(chunks: list[bytes], **kwargs) -> tuple[list[Frame], tuple | None]:
    """Feed chunk by chunk; return the frames seen and (type, close_code, reason) of any error."""
    parser = FrameParser(**kwargs)
    result: list[Frame] = []
    for chunk in chunks:
        parser.feed(chunk)
        try:
            while (frame := parser.next_frame()) is not NEED_DATA:
                result.append(frame)
        except LablibError as exc:  # anything else fails the test
            assert isinstance(exc, (WebSocketProtocolError, PayloadTooBig))
            return result, (type(exc), exc.close_code, exc.reason)
    return result, None


@given(frames())
@FAST
def test_encode_parse_round_trip(frame):
    wire = frame.encode()
    assert len(wire) == frame.header_len + frame.payload_len
    assert parse_all(wire, allowed_rsv=0x70) == [frame]


@given(st.lists(frames(masked=True), max_size=6), st.data())
@FAST
def test_chunking_never_changes_the_frames(frame_list, data):
    wire = b"".join(frame.encode() for frame in frame_list)
    kwargs = dict(mask_required=True, allowed_rsv=0x70)
    whole = feed_chunks([wire], **kwargs)
    assert whole == (frame_list, None)
    split = feed_chunks(chunks_of(wire, split_points(data.draw, len(wire))), **kwargs)
    assert split == whole
    if len(wire) < 2000:
        assert feed_chunks([wire[i:i + 1] for i in range(len(wire))], **kwargs) == whole


@given(st.binary(max_size=400), st.data(),
       st.sampled_from([None, True, False]), st.sampled_from([0, 0x40, 0x70]),
       st.sampled_from([None, 0, 100, 1 << 20]))
@FAST
def test_arbitrary_bytes_raise_only_lablib_errors_whatever_the_chunking(
        garbage, data, mask_required, allowed_rsv, max_size):
    kwargs = dict(mask_required=mask_required, allowed_rsv=allowed_rsv, max_size=max_size)
    whole = feed_chunks([garbage], **kwargs)
    split = feed_chunks(chunks_of(garbage, split_points(data.draw, len(garbage))), **kwargs)
    bytewise = feed_chunks([garbage[i:i + 1] for i in range(len(garbage))], **kwargs)
    assert split == whole
    assert bytewise == whole


def feed_chunks_in_batches(chunks: list[bytes], **kwargs) -> tuple[list[Frame], tuple | None]:
    """Like feed_chunks, through receive_data/receive_frames (the connection's way)."""
    parser = FrameParser(**kwargs)
    result: list[Frame] = []
    try:
        for chunk in chunks:
            result += parser.receive_data(chunk)
            while batch := parser.receive_frames():  # after an invalid frame: raises
                result += batch
    except LablibError as exc:
        assert isinstance(exc, (WebSocketProtocolError, PayloadTooBig))
        return result, (type(exc), exc.close_code, exc.reason)
    return result, None


@given(st.lists(frames(), max_size=6), st.binary(max_size=40), st.data(),
       st.sampled_from([None, 0, 5, 130, 1 << 20]))
@FAST
def test_batches_give_the_same_frames_and_errors_as_step_by_step(frame_list, garbage, data,
                                                                 max_size):
    """receive_frames (many frames per call, small payloads unmasked together) finds exactly
    what next_frame finds one frame at a time: same frames, same error, same place."""
    wire = b"".join(frame.encode() for frame in frame_list) + garbage
    kwargs = dict(mask_required=None, allowed_rsv=0x40, max_size=max_size)
    chunks = chunks_of(wire, split_points(data.draw, len(wire)))
    assert feed_chunks_in_batches(chunks, **kwargs) == feed_chunks(chunks, **kwargs)
    assert feed_chunks_in_batches([wire], **kwargs) == feed_chunks([wire], **kwargs)


@given(st.lists(frames(), min_size=1, max_size=4), st.binary(max_size=40), st.data())
@FAST
def test_valid_frames_then_garbage(frame_list, garbage, data):
    """A stream that starts well and goes bad yields the good frames, then a lablib error."""
    wire = b"".join(frame.encode() for frame in frame_list) + garbage
    kwargs = dict(mask_required=None, allowed_rsv=0x70)
    whole = feed_chunks([wire], **kwargs)
    assert whole[0][:len(frame_list)] == frame_list
    assert feed_chunks(chunks_of(wire, split_points(data.draw, len(wire))), **kwargs) == whole


@given(st.binary(max_size=130))
@FAST
def test_parse_close_payload_raises_only_lablib_errors(payload):
    try:
        code, reason = parse_close_payload(payload)
    except LablibError as exc:
        assert isinstance(exc, WebSocketProtocolError)
        assert exc.close_code in (1002, 1007)
    else:
        assert code == 1005 and payload == b"" or is_valid_close_code(code)
        assert isinstance(reason, str)


@given(st.sampled_from([1000, 1001, 1003, 1011, 3000, 4999]), st.text(max_size=30))
@FAST
def test_close_payload_property_round_trip(code, reason):
    try:
        payload = encode_close_payload(code, reason)
    except ValueError:
        assert len(reason.encode("utf-8")) > 123
        return
    assert parse_close_payload(payload) == (code, reason)


@FAST
@given(st.lists(st.tuples(st.binary(max_size=300), st.binary(min_size=4, max_size=4)),
                min_size=100, max_size=300))
def test_many_small_masked_frames_in_one_chunk(items):
    # Enough small masked frames in one chunk for receive_data to unmask them with one XOR.
    frames = [Frame(Opcode.BINARY, p, masking_key=k) for p, k in items]
    data = b"".join(f.encode() for f in frames)
    assert FrameParser(mask_required=True).receive_data(data) == frames
