"""The sans-I/O Connection (RFC 6455 §5-§8): messages, fragments, control frames, closing, errors."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.errors import (HandshakeError, InvalidUTF8, LocalProtocolError, PayloadTooBig,
                           RemoteProtocolError, WebSocketProtocolError)
from lablib.websocket import (Accepted, BinaryReceived, CloseReceived, Connection,
                                         WebSocketClosed, FrameReceived, PingReceived, PongReceived, Rejected,
                                         RequestReceived, Role, WebSocketState, TextReceived)
from lablib.websocket.frames import Frame, FrameParser, Opcode, apply_mask, encode_frame
from lablib.websocket.handshake import ClientHandshake, ServerHandshake

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY = bytes.fromhex("37fa213d")
SEED0_KEYS = [bytes.fromhex("cd072cd8"), bytes.fromhex("be6f9f62")]  # random.Random(0).randbytes(4) x2


def server(**kwargs) -> Connection:
    return Connection(Role.SERVER, **kwargs)


def client(seed: int = 0, **kwargs) -> Connection:
    return Connection(Role.CLIENT, rng=random.Random(seed), **kwargs)


def from_client(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A frame as a client sends it: masked."""
    return encode_frame(opcode, payload, fin=fin, masking_key=KEY)


def from_server(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A frame as a server sends it: unmasked."""
    return encode_frame(opcode, payload, fin=fin)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def sent_frames(data: bytes, masked: bool) -> list[Frame]:
    return FrameParser(mask_required=masked).receive_data(data)


def assert_failed(conn: Connection, events: list, code: int, error_type=WebSocketProtocolError) -> None:
    """The connection failed with ``code``: event, state, and the close frame on the wire."""
    closed = events[-1]
    assert isinstance(closed, WebSocketClosed)
    assert closed.code == code
    assert isinstance(closed.error, error_type)
    assert closed.error.close_code == code
    assert not closed.clean
    assert conn.state is WebSocketState.CLOSED
    (frame,) = sent_frames(conn.data_to_send(), masked=conn.role is Role.CLIENT)
    assert frame.opcode is Opcode.CLOSE
    assert frame.payload[:2] == struct.pack("!H", code)
    assert frame.payload[2:].decode("utf-8") == closed.reason
    assert conn.close_sent == (code, closed.reason)
    # after CLOSED everything is ignored and nothing more is sent
    assert conn.receive_data(from_client(Opcode.TEXT, b"late")) == []
    assert conn.receive_data(from_server(Opcode.PING, b"late")) == []
    assert conn.receive_eof() == []
    assert conn.data_to_send() == b""


# --- messages ----------------------------------------------------------------------------------

def test_server_receives_text_binary_and_empty_messages():
    conn = server()
    assert conn.state is WebSocketState.OPEN
    data = (bytes.fromhex("818537fa213d7f9f4d5158")  # RFC §5.7 masked "Hello"
            + from_client(Opcode.BINARY, b"\x00\xff")
            + from_client(Opcode.TEXT) + from_client(Opcode.BINARY))
    assert conn.receive_data(data) == [TextReceived("Hello"), BinaryReceived(b"\x00\xff"),
                                       TextReceived(""), BinaryReceived(b"")]
    assert conn.data_to_send() == b""


def test_client_receives_text_binary_and_empty_messages():
    conn = client()
    data = b"\x81\x05Hello" + b"\x82\x02\x00\xff" + b"\x81\x00" + b"\x82\x00"
    assert conn.receive_data(data) == [TextReceived("Hello"), BinaryReceived(b"\x00\xff"),
                                       TextReceived(""), BinaryReceived(b"")]


def test_server_sends_unmasked_frames():
    conn = server()
    assert conn.send_text("Hello") == b"\x81\x05Hello"
    assert conn.send_text("é") == b"\x81\x02\xc3\xa9"
    assert conn.send_binary(b"\x00\xff") == b"\x82\x02\x00\xff"
    assert conn.send_text("") == b"\x81\x00"
    assert conn.send_binary(b"") == b"\x82\x00"
    assert conn.send_ping(b"hi") == b"\x89\x02hi"
    assert conn.send_pong() == b"\x8a\x00"


def test_client_masks_with_the_seeded_rng():
    conn = client(seed=0)
    assert conn.send_text("Hello") == b"\x81\x85" + SEED0_KEYS[0] + apply_mask(b"Hello", SEED0_KEYS[0])
    assert conn.send_text("Hello") == (b"\x81\x85\xbe\x6f\x9f\x62"
                                       + bytes(a ^ b for a, b in zip(b"Hello", b"\xbe\x6f\x9f\x62\xbe")))
    # the same seed gives the same bytes
    assert client(seed=0).send_text("Hello") == bytes.fromhex("8185cd072cd8") + bytes.fromhex("856240b4a2")


def test_client_masks_every_frame_kind():
    conn = client(seed=5)
    for data in (conn.send_text("a"), conn.send_binary(b"b"), conn.send_ping(b"c"),
                 conn.send_pong(b"d"), conn.send_close(1000)):
        (frame,) = sent_frames(data, masked=True)
        assert frame.mask


def test_send_accepts_bytes_for_text_and_bytearray_for_binary():
    conn = server()
    assert conn.send_text(b"raw") == b"\x81\x03raw"
    assert conn.send_binary(bytearray(b"xy")) == b"\x82\x02xy"


def test_trace_frames_reports_each_frame_before_its_meaning():
    conn = server(trace_frames=True)
    events = conn.receive_data(from_client(Opcode.TEXT, b"Hel", fin=False) + from_client(Opcode.CONT, b"lo"))
    assert events == [FrameReceived(Frame(Opcode.TEXT, b"Hel", fin=False, masking_key=KEY)),
                      FrameReceived(Frame(Opcode.CONT, b"lo", masking_key=KEY)),
                      TextReceived("Hello")]


def test_message_arriving_byte_by_byte():
    conn = server()
    data = from_client(Opcode.TEXT, "héllo wörld".encode())
    events = []
    for i in range(len(data)):
        events += conn.receive_data(data[i:i + 1])
    assert events == [TextReceived("héllo wörld")]


# --- fragmentation (§5.4) ----------------------------------------------------------------------

def test_fragmented_receive_rfc_example():
    conn = client()
    assert conn.receive_data(bytes.fromhex("010348656c")) == []
    assert conn.receive_data(bytes.fromhex("80026c6f")) == [TextReceived("Hello")]


def test_many_fragments_with_control_frames_between_them():
    conn = server()
    events = conn.receive_data(from_client(Opcode.BINARY, b"\x00", fin=False))
    for i in range(1, 200):
        events += conn.receive_data(from_client(Opcode.CONT, bytes([i % 256]), fin=False))
        if i % 50 == 0:
            events += conn.receive_data(from_client(Opcode.PING, b"p%d" % i))
            events += conn.receive_data(from_client(Opcode.PONG, b"q%d" % i))
    events += conn.receive_data(from_client(Opcode.CONT, b"end"))
    expected_controls = []
    for i in (50, 100, 150):
        expected_controls += [PingReceived(b"p%d" % i), PongReceived(b"q%d" % i)]
    assert events == expected_controls + [BinaryReceived(bytes(i % 256 for i in range(200)) + b"end")]
    # each ping was answered at once, in order, while the message was still incomplete
    assert conn.data_to_send() == b"".join(from_server(Opcode.PONG, b"p%d" % i) for i in (50, 100, 150))


def test_fragmented_text_with_empty_fragments():
    conn = server()
    data = (from_client(Opcode.TEXT, b"", fin=False) + from_client(Opcode.CONT, b"", fin=False)
            + from_client(Opcode.CONT, b"ok", fin=False) + from_client(Opcode.CONT, b""))
    assert conn.receive_data(data) == [TextReceived("ok")]


def test_messages_after_a_fragmented_one_start_fresh():
    conn = server()
    data = (from_client(Opcode.TEXT, b"a\xc3", fin=False) + from_client(Opcode.CONT, b"\xa9")
            + from_client(Opcode.BINARY, b"\xc3") + from_client(Opcode.TEXT, b"b"))
    assert conn.receive_data(data) == [TextReceived("aé"), BinaryReceived(b"\xc3"), TextReceived("b")]


def test_fragmented_send():
    conn = server()
    assert conn.send_text("Hel", fin=False) == bytes.fromhex("010348656c")
    assert conn.send_ping(b"between") == b"\x89\x07between"  # control frames may interleave
    assert conn.send_continuation("l", fin=False) == b"\x00\x01l"
    assert conn.send_continuation(b"o", fin=True) == bytes.fromhex("80016f")
    assert conn.send_binary(b"\x01", fin=False) == b"\x02\x01\x01"
    assert conn.send_continuation(b"\x02", fin=True) == b"\x80\x01\x02"


def test_fragmented_send_is_received_whole():
    sender, receiver = client(seed=9), server()
    data = (sender.send_text("a", fin=False) + sender.send_ping(b"!")
            + sender.send_continuation("bc", fin=False) + sender.send_continuation("", fin=True))
    assert receiver.receive_data(data) == [PingReceived(b"!"), TextReceived("abc")]


def test_fragmented_send_misuse():
    conn = server()
    with pytest.raises(LocalProtocolError):
        conn.send_continuation(b"x", fin=True)  # nothing to continue
    conn.send_text("a", fin=False)
    with pytest.raises(LocalProtocolError):
        conn.send_text("b")  # a new message before the first ended
    with pytest.raises(LocalProtocolError):
        conn.send_binary(b"b")
    conn.send_continuation("z", fin=True)
    with pytest.raises(LocalProtocolError):
        conn.send_continuation(b"x", fin=True)


# --- ping / pong (§5.5.2, §5.5.3) --------------------------------------------------------------

def test_automatic_pong_from_the_server():
    conn = server()
    assert conn.receive_data(bytes.fromhex("898537fa213d7f9f4d5158")) == [PingReceived(b"Hello")]
    assert conn.data_to_send() == b"\x8a\x05Hello"
    assert conn.data_to_send() == b""


def test_automatic_pong_from_the_client_is_masked():
    conn = client(seed=0)
    assert conn.receive_data(b"\x89\x05Hello") == [PingReceived(b"Hello")]
    assert conn.data_to_send() == b"\x8a\x85" + SEED0_KEYS[0] + apply_mask(b"Hello", SEED0_KEYS[0])


def test_empty_and_125_byte_pings_are_answered():
    conn = server()
    assert conn.receive_data(from_client(Opcode.PING) + from_client(Opcode.PING, b"x" * 125)) == \
        [PingReceived(b""), PingReceived(b"x" * 125)]
    assert conn.data_to_send() == b"\x8a\x00" + b"\x8a\x7d" + b"x" * 125


def test_pong_is_an_event_without_answer():
    conn = server()
    assert conn.receive_data(from_client(Opcode.PONG, b"beat")) == [PongReceived(b"beat")]
    assert conn.data_to_send() == b""


def test_ping_too_long_to_send():
    with pytest.raises(LocalProtocolError):
        server().send_ping(b"x" * 126)
    with pytest.raises(LocalProtocolError):
        server().send_pong(b"x" * 126)
    assert server().send_ping(b"x" * 125) == b"\x89\x7d" + b"x" * 125


# --- the closing handshake (§7) ----------------------------------------------------------------

def test_client_initiated_close():
    c, s = client(seed=0), server()
    wire = c.send_close(1000, "bye")
    assert wire == b"\x88\x85" + SEED0_KEYS[0] + apply_mask(b"\x03\xe8bye", SEED0_KEYS[0])
    assert c.state is WebSocketState.CLOSING
    assert c.close_sent == (1000, "bye")
    assert s.receive_data(wire) == [CloseReceived(1000, "bye"), WebSocketClosed(1000, "bye")]
    assert s.state is WebSocketState.CLOSED
    assert s.close_received == (1000, "bye")
    echo = s.data_to_send()
    assert echo == b"\x88\x02\x03\xe8"  # §5.5.1: the code is echoed
    assert s.close_sent == (1000, "")
    events = c.receive_data(echo)
    assert events == [CloseReceived(1000, ""), WebSocketClosed(1000, "")]
    assert events[1].clean and events[1].error is None
    assert c.state is WebSocketState.CLOSED
    assert c.data_to_send() == b""  # nothing more: the handshake is complete


def test_server_initiated_close():
    s, c = server(), client(seed=0)
    wire = s.send_close(1001, "going")
    assert wire == b"\x88\x07\x03\xe9going"
    assert s.state is WebSocketState.CLOSING
    assert c.receive_data(wire) == [CloseReceived(1001, "going"), WebSocketClosed(1001, "going")]
    assert c.state is WebSocketState.CLOSED
    echo = c.data_to_send()
    assert echo == b"\x88\x82" + SEED0_KEYS[0] + apply_mask(b"\x03\xe9", SEED0_KEYS[0])
    assert s.receive_data(echo) == [CloseReceived(1001, ""), WebSocketClosed(1001, "")]
    assert s.state is WebSocketState.CLOSED
    assert s.data_to_send() == b""


def test_close_without_code_is_1005_and_echoed_empty():
    s = server()
    events = s.receive_data(from_client(Opcode.CLOSE))
    assert events == [CloseReceived(1005, ""), WebSocketClosed(1005, "")]
    assert s.data_to_send() == b"\x88\x00"


def test_send_close_without_code():
    s = server()
    assert s.send_close(None) == b"\x88\x00"
    assert s.close_sent == (1005, "")
    assert s.receive_data(from_client(Opcode.CLOSE)) == [CloseReceived(1005, ""), WebSocketClosed(1005, "")]


def test_messages_still_arrive_while_closing():
    s = server()
    s.send_close(1000)
    events = s.receive_data(from_client(Opcode.TEXT, b"last words") + from_client(Opcode.PING, b"p")
                            + from_client(Opcode.CLOSE, close_payload(1000)))
    assert events == [TextReceived("last words"), PingReceived(b"p"), CloseReceived(1000, ""),
                      WebSocketClosed(1000, "")]
    assert s.data_to_send() == b""  # no pong and no second close after our close frame


def test_data_after_the_close_frame_is_ignored():
    s = server()
    events = s.receive_data(from_client(Opcode.CLOSE, close_payload(1000)) + from_client(Opcode.TEXT, b"x")
                            + b"\xff\xff garbage")
    assert events == [CloseReceived(1000, ""), WebSocketClosed(1000, "")]
    assert s.data_to_send() == b"\x88\x02\x03\xe8"
    assert s.receive_data(from_client(Opcode.TEXT, b"more")) == []


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_code_on_the_wire_is_1002(code):
    s = server()
    events = s.receive_data(from_client(Opcode.CLOSE, close_payload(code)))
    assert len(events) == 1
    assert_failed(s, events, 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                                  1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes_on_the_wire(code):
    s = server()
    events = s.receive_data(from_client(Opcode.CLOSE, close_payload(code, b"why")))
    assert events == [CloseReceived(code, "why"), WebSocketClosed(code, "why")]
    assert s.data_to_send() == b"\x88\x02" + struct.pack("!H", code)


def test_one_byte_close_payload_is_1002():
    s = server()
    assert_failed(s, s.receive_data(from_client(Opcode.CLOSE, b"\x03")), 1002)


def test_close_reason_not_utf8_is_1007():
    s = server()
    assert_failed(s, s.receive_data(from_client(Opcode.CLOSE, close_payload(1000, b"\xff"))), 1007, InvalidUTF8)


def test_close_too_long_is_1002():
    s = server()
    too_long = bytes([0x88, 0xFE, 0x00, 0x7E]) + KEY + bytes(126)  # a 126-byte close payload
    assert_failed(s, s.receive_data(too_long), 1002)


def test_receive_eof_is_1006():
    s = server()
    events = s.receive_eof()
    assert events == [WebSocketClosed(1006, "")]
    assert not events[0].clean
    assert s.state is WebSocketState.CLOSED
    assert s.data_to_send() == b""
    assert s.receive_eof() == []
    assert s.receive_data(from_client(Opcode.TEXT, b"x")) == []


def test_receive_eof_while_closing_is_1006():
    s = server()
    s.send_close(1000)
    assert s.receive_eof() == [WebSocketClosed(1006, "")]


def test_receive_eof_in_the_middle_of_a_frame():
    c = client()
    assert c.receive_data(b"\x81\x05Hel") == []
    assert c.receive_eof() == [WebSocketClosed(1006, "")]


# --- protocol violations: each gets its close code --------------------------------------------

def test_unmasked_frame_to_a_server_is_1002():
    s = server()
    assert_failed(s, s.receive_data(b"\x81\x05Hello"), 1002)


def test_masked_frame_to_a_client_is_1002():
    c = client()
    assert_failed(c, c.receive_data(bytes.fromhex("818537fa213d7f9f4d5158")), 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_reserved_opcode_is_1002(opcode):
    c = client()
    assert_failed(c, c.receive_data(bytes([0x80 | opcode, 0x00])), 1002)


def test_rsv_bit_is_1002():
    c = client()
    assert_failed(c, c.receive_data(b"\xc1\x00"), 1002)


def test_fragmented_ping_is_1002():
    c = client()
    assert_failed(c, c.receive_data(b"\x09\x00"), 1002)


def test_continuation_without_a_start_is_1002():
    s = server()
    assert_failed(s, s.receive_data(from_client(Opcode.CONT, b"x")), 1002)


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_new_message_during_fragmentation_is_1002(opcode):
    s = server()
    assert s.receive_data(from_client(Opcode.TEXT, b"a", fin=False)) == []
    assert_failed(s, s.receive_data(from_client(opcode, b"b")), 1002)


def test_messages_before_the_error_are_delivered():
    s = server()
    events = s.receive_data(from_client(Opcode.TEXT, b"ok") + from_client(Opcode.PING, b"p") + b"\x83\x80")
    assert events[:2] == [TextReceived("ok"), PingReceived(b"p")]
    closed = events[2]
    assert closed.code == 1002
    frames = sent_frames(s.data_to_send(), masked=False)
    assert [f.opcode for f in frames] == [Opcode.PONG, Opcode.CLOSE]


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
@pytest.mark.parametrize("violation", [
    pytest.param((0xC1, 0x00), id="rsv1"),
    pytest.param((0x83, 0x00), id="reserved opcode 3"),
    pytest.param((0x8B, 0x00), id="reserved opcode 0xB"),
    pytest.param((0x80, 0x00), id="continuation of nothing"),
])
def test_every_message_complete_before_a_violation_is_delivered(role, violation):
    """One read: a one-frame message, a two-frame message, then a frame that breaks §5.2 or
    §5.4.  Both messages are delivered, then the connection fails with 1002."""
    conn = server() if role is Role.SERVER else client()
    if role is Role.SERVER:  # client frames are masked, here with the key 00 00 00 00
        data = (b"\x81\x83\x00\x00\x00\x00one" + b"\x02\x82\x00\x00\x00\x00tw"
                + b"\x80\x81\x00\x00\x00\x00o" + bytes([violation[0], 0x80]) + b"\x00" * 4)
    else:
        data = b"\x81\x03one" + b"\x02\x02tw" + b"\x80\x01o" + bytes(violation)
    events = conn.receive_data(data)
    assert events[:2] == [TextReceived("one"), BinaryReceived(b"two")]
    assert_failed(conn, events[2:], 1002)


def test_error_while_closing_sends_no_second_close():
    s = server()
    s.send_close(1000)
    events = s.receive_data(b"\x81\x00")  # unmasked: a violation
    assert events[-1].code == 1002 and isinstance(events[-1].error, WebSocketProtocolError)
    assert s.state is WebSocketState.CLOSED
    assert s.data_to_send() == b""


def test_client_fail_close_frame_is_masked_with_the_rng():
    c = client(seed=0)
    events = c.receive_data(b"\x83\x00")
    reason = events[0].reason.encode()
    assert c.data_to_send() == (b"\x88" + bytes([0x80 | (2 + len(reason))]) + SEED0_KEYS[0]
                                + apply_mask(b"\x03\xea" + reason, SEED0_KEYS[0]))


# --- UTF-8 (§8.1): validated incrementally, failing fast --------------------------------------

def test_invalid_utf8_single_frame_is_1007():
    s = server()
    assert_failed(s, s.receive_data(from_client(Opcode.TEXT, b"\xff")), 1007, InvalidUTF8)


def test_invalid_utf8_fails_in_the_first_fragment():
    s = server()
    events = s.receive_data(from_client(Opcode.TEXT, b"ok \xf4\x90\x80\x80", fin=False))  # > U+10FFFF
    assert_failed(s, events, 1007, InvalidUTF8)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xe0\x80", b"\xf4\x90", b"\xf5"])
def test_invalid_utf8_fails_before_the_message_ends(bad):
    s = server()
    events = s.receive_data(from_client(Opcode.TEXT, b"start", fin=False)
                            + from_client(Opcode.CONT, b"x" + bad, fin=False))
    assert_failed(s, events, 1007, InvalidUTF8)


def feed_byte_by_byte(conn: Connection, data: bytes) -> list[list]:
    """The events of each single byte of ``data`` fed on its own."""
    return [conn.receive_data(data[i:i + 1]) for i in range(len(data))]


# A text frame whose payload goes wrong at its 4th byte: "ok" then F4 90, which would be a code
# point above U+10FFFF (§8.1, RFC 3629).  The 6 valid bytes after it are never needed.
BAD_AT_4 = b"ok\xf4\x90" + b"abcdef"


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_invalid_utf8_fails_at_the_offending_byte_inside_a_frame(role):
    """§8.1 allows failing as soon as the offending bytes arrive: a text frame whose first
    half is invalid closes with 1007 before its second half is even sent."""
    conn = server() if role is Role.SERVER else client()
    frame = (from_client if role is Role.SERVER else from_server)(Opcode.TEXT, BAD_AT_4)
    header = 6 if role is Role.SERVER else 2  # a client's frame carries a masking key
    per_byte = feed_byte_by_byte(conn, frame[:header + 4])
    assert per_byte[:-1] == [[]] * (header + 3)  # nothing until the offending byte...
    assert_failed(conn, per_byte[-1], 1007, InvalidUTF8)  # ...which fails the connection


def test_invalid_utf8_fails_at_the_offending_byte_of_a_continuation():
    """The check goes on across fragments: E2 82 ends fragment 1, so fragment 2 must start
    with a continuation byte; its "(" fails at once."""
    s = server()
    assert s.receive_data(from_client(Opcode.TEXT, b"a\xe2\x82", fin=False)) == []
    per_byte = feed_byte_by_byte(s, from_client(Opcode.CONT, b"(" + b"z" * 20)[:7])
    assert per_byte[:-1] == [[]] * 6
    assert_failed(s, per_byte[-1], 1007, InvalidUTF8)


def test_valid_text_byte_by_byte_is_not_failed_early():
    """A character split anywhere is waited for, not failed: 4-byte characters, byte by byte,
    then the message whole (and the bytes a binary frame carries are never checked)."""
    s = server()
    text = "a€😀" * 3
    events = sum(feed_byte_by_byte(s, from_client(Opcode.TEXT, text.encode()[:5], fin=False)
                                   + from_client(Opcode.CONT, text.encode()[5:])), [])
    assert events == [TextReceived(text)]
    binary = bytes(range(256))
    assert sum(feed_byte_by_byte(s, from_client(Opcode.BINARY, binary)), []) \
        == [BinaryReceived(binary)]


@given(st.binary(min_size=1, max_size=40), st.lists(st.integers(1, 46), max_size=6))
@FAST
def test_utf8_fails_in_the_chunk_that_brings_the_offending_byte(payload, cuts):
    """For any payload and any chunking: the connection fails (1007) in exactly the chunk
    that makes the received prefix impossible to complete as UTF-8 (what an incremental
    decoder says), and a valid payload arrives whole."""
    import codecs

    frame = from_client(Opcode.TEXT, payload)
    bounds = sorted({0, len(frame), *(min(c, len(frame)) for c in cuts)})
    s = server()
    decoder = codecs.getincrementaldecoder("utf-8")()
    for a, b in zip(bounds, bounds[1:]):
        events = s.receive_data(frame[a:b])
        start, end = max(a, 6) - 6, max(b, 6) - 6  # the payload bytes in this chunk
        try:
            decoder.decode(payload[start:end], final=b == len(frame))
        except UnicodeDecodeError:
            assert_failed(s, events, 1007, InvalidUTF8)
            return
        assert all(not isinstance(e, WebSocketClosed) for e in events)
    assert events == [TextReceived(payload.decode())]


def test_multibyte_character_split_across_fragments():
    s = server()
    euro = "€".encode()  # e2 82 ac
    data = (from_client(Opcode.TEXT, b"a" + euro[:1], fin=False)
            + from_client(Opcode.CONT, euro[1:2], fin=False)
            + from_client(Opcode.CONT, euro[2:] + "😀".encode()[:3], fin=False)
            + from_client(Opcode.CONT, "😀".encode()[3:]))
    assert s.receive_data(data) == [TextReceived("a€😀")]


def test_truncated_sequence_at_fin_is_1007():
    s = server()
    assert s.receive_data(from_client(Opcode.TEXT, b"a\xe2\x82", fin=False)) == []
    assert_failed(s, s.receive_data(from_client(Opcode.CONT, b"")), 1007, InvalidUTF8)


def test_binary_messages_are_not_utf8_checked():
    s = server()
    data = from_client(Opcode.BINARY, b"\xff", fin=False) + from_client(Opcode.CONT, b"\xfe")
    assert s.receive_data(data) == [BinaryReceived(b"\xff\xfe")]


# --- max message size (1009), across fragments ------------------------------------------------

def test_single_frame_over_the_limit_is_1009_at_header_time():
    s = server(max_message_size=200)
    header = from_client(Opcode.BINARY, bytes(201))[:4]  # 201 announced; no key, no payload yet
    assert header == b"\x82\xfe\x00\xc9"
    events = s.receive_data(header)
    assert_failed(s, events, 1009, PayloadTooBig)


def test_message_size_limit_across_fragments():
    s = server(max_message_size=10)
    assert s.receive_data(from_client(Opcode.TEXT, b"123456", fin=False)) == []
    assert s.receive_data(from_client(Opcode.CONT, b"7890", fin=False)) == []  # exactly 10 so far
    events = s.receive_data(from_client(Opcode.CONT, b"1")[:2])  # header only: 1 more byte
    assert_failed(s, events, 1009, PayloadTooBig)


def test_endless_empty_fragments_hold_no_memory():
    """Empty CONT frames carry no payload, so the size limit never stops them: they must not
    add anything to the message being assembled, or memory would grow without bound."""
    s = server(max_message_size=1024)
    assert s.receive_data(from_client(Opcode.TEXT, b"x", fin=False)) == []
    assert s.receive_data(from_client(Opcode.CONT, b"", fin=False) * 100_000) == []
    assert len(s._messages._parts) == 1   # the MessageAssembler (lablib.websocket.messages)
    assert s.receive_data(from_client(Opcode.CONT, b"y")) == [TextReceived("xy")]


def test_message_exactly_at_the_limit_across_fragments():
    s = server(max_message_size=10)
    data = from_client(Opcode.BINARY, bytes(6), fin=False) + from_client(Opcode.CONT, bytes(4))
    assert s.receive_data(data) == [BinaryReceived(bytes(10))]
    # the budget is per message: the next one starts from zero
    assert s.receive_data(from_client(Opcode.BINARY, bytes(10))) == [BinaryReceived(bytes(10))]


def test_control_frames_do_not_count_towards_the_limit():
    s = server(max_message_size=3)
    data = (from_client(Opcode.TEXT, b"ab", fin=False) + from_client(Opcode.PING, b"x" * 100)
            + from_client(Opcode.CONT, b"c"))
    assert s.receive_data(data) == [PingReceived(b"x" * 100), TextReceived("abc")]


def test_no_limit():
    s = server(max_message_size=None)
    big = bytes(2_000_000)
    assert s.receive_data(from_client(Opcode.BINARY, big)) == [BinaryReceived(big)]


# --- our own misuse: LocalProtocolError -------------------------------------------------------

def test_send_after_close():
    s = server()
    s.send_close(1000)
    for call in (lambda: s.send_text("x"), lambda: s.send_binary(b"x"), lambda: s.send_ping(),
                 lambda: s.send_pong(), lambda: s.send_close(1000), lambda: s.send_continuation(b"", True)):
        with pytest.raises(LocalProtocolError):
            call()
    s.receive_data(from_client(Opcode.CLOSE, close_payload(1000)))
    assert s.state is WebSocketState.CLOSED
    with pytest.raises(LocalProtocolError):
        s.send_text("x")


def test_send_after_the_connection_failed():
    c = client()
    c.receive_data(b"\x83\x00")
    with pytest.raises(LocalProtocolError):
        c.send_text("x")
    with pytest.raises(LocalProtocolError):
        c.send_close()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_invalid_close_code_to_send(code):
    s = server()
    with pytest.raises(LocalProtocolError):
        s.send_close(code)
    assert s.state is WebSocketState.OPEN  # nothing happened


def test_close_reason_too_long_to_send():
    s = server()
    with pytest.raises(LocalProtocolError):
        s.send_close(1000, "x" * 124)
    assert s.state is WebSocketState.OPEN
    assert s.send_close(1000, "x" * 123) == b"\x88\x7d\x03\xe8" + b"x" * 123


def test_accept_or_reject_without_a_handshake():
    with pytest.raises(LocalProtocolError):
        server().accept()
    with pytest.raises(LocalProtocolError):
        server().reject(400, "no")
    conn = Connection(Role.SERVER, handshake=ServerHandshake())
    with pytest.raises(LocalProtocolError):
        conn.accept()  # no request yet


# --- the opening handshake through the Connection ---------------------------------------------

def handshake_pair(seed: int = 0, **server_kwargs):
    c = Connection(Role.CLIENT, handshake=ClientHandshake(host="example.com", path="/chat",
                                                          subprotocols=["chat"], rng=random.Random(seed)),
                   rng=random.Random(seed + 1))
    s = Connection(Role.SERVER, handshake=ServerHandshake(subprotocols=["chat"], **server_kwargs))
    return c, s


def test_full_handshake_on_both_sides():
    c, s = handshake_pair()
    assert c.state is WebSocketState.CONNECTING and s.state is WebSocketState.CONNECTING
    request = c.handshake.request_bytes()
    (received,) = s.receive_data(request)
    assert isinstance(received, RequestReceived)
    assert received.request.path == "/chat" and received.subprotocol == "chat"
    assert s.state is WebSocketState.CONNECTING
    response = s.accept()
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert s.state is WebSocketState.OPEN and s.subprotocol == "chat"
    (accepted,) = c.receive_data(response)
    assert isinstance(accepted, Accepted)
    assert accepted.response.status == 101 and accepted.subprotocol == "chat"
    assert c.state is WebSocketState.OPEN and c.subprotocol == "chat"
    # and then messages flow both ways
    assert s.receive_data(c.send_text("hi")) == [TextReceived("hi")]
    assert c.receive_data(s.send_binary(b"yo")) == [BinaryReceived(b"yo")]


def test_handshake_byte_by_byte():
    c, s = handshake_pair()
    request = c.handshake.request_bytes()
    events = []
    for i in range(len(request)):
        events += s.receive_data(request[i:i + 1])
    assert [type(e) for e in events] == [RequestReceived]
    response = s.accept()
    events = []
    for i in range(len(response)):
        events += c.receive_data(response[i:i + 1])
    assert [type(e) for e in events] == [Accepted]


def test_handshake_in_two_pieces_emits_one_event_each():
    """A request or response split over two TCP segments is one event, not two."""
    c, s = handshake_pair()
    request = c.handshake.request_bytes()
    assert s.receive_data(request[:10]) == []
    assert s.state is WebSocketState.CONNECTING and s.handshake.request is None
    assert [type(e) for e in s.receive_data(request[10:])] == [RequestReceived]
    response = s.accept()
    assert c.receive_data(response[:20]) == []
    assert c.state is WebSocketState.CONNECTING
    assert [type(e) for e in c.receive_data(response[20:])] == [Accepted]
    assert c.state is WebSocketState.OPEN


def test_one_need_data_sentinel():
    from lablib import http
    from lablib.websocket import connection, frames, handshake
    assert frames.NEED_DATA is handshake.NEED_DATA is http.NEED_DATA
    assert repr(frames.NEED_DATA) == "NEED_DATA"
    assert connection.NEED_DATA is http.NEED_DATA


def test_frames_in_the_same_chunk_as_the_request():
    c, s = handshake_pair()
    request = c.handshake.request_bytes()
    # the client does not wait for the 101 (allowed by §4.1 only after it; a server still copes)
    early = from_client(Opcode.TEXT, b"early") + from_client(Opcode.PING, b"p")
    events = s.receive_data(request + early[:5])
    assert [type(e) for e in events] == [RequestReceived]
    assert s.receive_data(early[5:]) == []  # kept until accept()
    s.accept()
    assert s.receive_data(b"") == [TextReceived("early"), PingReceived(b"p")]
    assert s.data_to_send() == b"\x8a\x01p"


def test_frames_in_the_same_chunk_as_the_response():
    c, s = handshake_pair()
    s.receive_data(c.handshake.request_bytes())
    response = s.accept() + s.send_text("welcome") + s.send_ping(b"p")
    events = c.receive_data(response)
    assert [type(e) for e in events] == [Accepted]
    assert c.receive_data(b"") == [TextReceived("welcome"), PingReceived(b"p")]
    (pong,) = sent_frames(c.data_to_send(), masked=True)
    assert pong.opcode is Opcode.PONG and pong.payload == b"p"


def test_server_accept_can_override_the_subprotocol():
    c, s = handshake_pair()
    s.receive_data(c.handshake.request_bytes())
    response = s.accept(subprotocol="chat")
    assert b"Sec-WebSocket-Protocol: chat\r\n" in response


def test_server_cannot_pick_a_subprotocol_the_client_did_not_offer():
    """§4.2.2 step 5.5: the server's choice must be one of the client's offers (a client that
    gets another one fails the handshake, §4.1)."""
    c, s = handshake_pair()  # the client offers "chat" only
    s.receive_data(c.handshake.request_bytes())
    with pytest.raises(LocalProtocolError, match="'superchat' was not offered"):
        s.accept(subprotocol="superchat")
    assert s.state is WebSocketState.CONNECTING  # nothing was sent; the server may still accept or reject
    assert b"Sec-WebSocket-Protocol: chat\r\n" in s.accept(subprotocol="chat")


def test_server_rejects_a_bad_request_through_the_connection():
    s = Connection(Role.SERVER, handshake=ServerHandshake())
    (event,) = s.receive_data(b"POST /chat HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(event, Rejected)
    assert event.error.status == 405
    assert s.state is WebSocketState.CLOSED
    answer = s.data_to_send()
    assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n")
    assert answer.endswith(b"\r\n\r\nmethod POST not allowed: the handshake is a GET\n")
    assert s.receive_data(b"more") == []


def test_server_rejects_a_forbidden_origin_through_the_connection():
    client_hs = ClientHandshake(host="x", origin="http://evil.example", rng=random.Random(0))
    s = Connection(Role.SERVER, handshake=ServerHandshake(origins=["http://good.example"]))
    (event,) = s.receive_data(client_hs.request_bytes())
    assert isinstance(event, Rejected) and event.error.status == 403
    assert s.data_to_send().startswith(b"HTTP/1.1 403 Forbidden\r\n")
    c = Connection(Role.CLIENT, handshake=client_hs)
    (refused,) = c.receive_data(ServerHandshake.reject(event.error))
    assert isinstance(refused, Rejected) and refused.error.status == 403
    assert c.state is WebSocketState.CLOSED


def test_server_application_rejects_after_the_request():
    c, s = handshake_pair()
    s.receive_data(c.handshake.request_bytes())
    answer = s.reject(401, "who are you?", [("WWW-Authenticate", "Basic")])
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n")
    assert s.state is WebSocketState.CLOSED
    (refused,) = c.receive_data(answer)
    assert isinstance(refused, Rejected)
    assert refused.error.status == 401 and "who are you?" in refused.error.reason


def test_client_rejects_a_bad_101():
    c, _ = handshake_pair()
    (event,) = c.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n")
    assert isinstance(event, Rejected)
    assert event.error.status == 101
    assert c.state is WebSocketState.CLOSED
    assert c.data_to_send() == b""


def test_client_rejects_malformed_http():
    c, _ = handshake_pair()
    (event,) = c.receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert isinstance(event, Rejected)
    assert event.error.status == 0


def test_server_rejects_oversize_headers_with_431():
    s = Connection(Role.SERVER, handshake=ServerHandshake())
    events = s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
    assert isinstance(events[0], Rejected) and events[0].error.status == 431
    assert s.data_to_send().startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_eof_during_the_handshake():
    c, s = handshake_pair()
    (event,) = c.receive_eof()
    assert isinstance(event, Rejected)
    assert c.state is WebSocketState.CLOSED
    (event,) = s.receive_eof()
    assert isinstance(event, Rejected)


def test_bad_frame_behind_the_101_fails_the_client():
    c, s = handshake_pair()
    s.receive_data(c.handshake.request_bytes())
    assert [type(e) for e in c.receive_data(s.accept() + b"\x83\x00")] == [Accepted]
    assert_failed(c, c.receive_data(b""), 1002)


# --- hypothesis: a client's messages reach the server unchanged, whatever the chunking --------

message = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=200), st.lists(st.integers(0, 800), max_size=4)),
    st.tuples(st.just("binary"), st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=4)),
    st.tuples(st.just("ping"), st.binary(max_size=125), st.just([])),
)


def send(conn: Connection, kind: str, data, cuts: list[int]) -> tuple[bytes, object]:
    """Send one message, fragmented at byte offsets ``cuts``; return (wire, expected event)."""
    if kind == "ping":
        return conn.send_ping(data), PingReceived(data)
    raw = data.encode("utf-8") if kind == "text" else data
    bounds = [0] + sorted({min(c, len(raw)) for c in cuts}) + [len(raw)]
    pieces = [raw[a:b] for a, b in zip(bounds, bounds[1:])]
    start = conn.send_text if kind == "text" else conn.send_binary
    wire = start(pieces[0], fin=len(pieces) == 1)
    for i, piece in enumerate(pieces[1:], 2):
        wire += conn.send_continuation(piece, fin=i == len(pieces))
    return wire, TextReceived(data) if kind == "text" else BinaryReceived(data)


def feed_in_chunks(conn: Connection, data: bytes, cuts: list[int]) -> list:
    bounds = [0] + sorted({min(c, len(data)) for c in cuts}) + [len(data)]
    events = []
    for a, b in zip(bounds, bounds[1:]):
        events += conn.receive_data(data[a:b])
    return events


@given(st.lists(message, max_size=8), st.lists(st.integers(0, 5000), max_size=20),
       st.lists(st.integers(0, 5000), max_size=20), st.integers(0, 2**32))
@FAST
def test_random_message_sequences_arrive_identical(messages, cuts_in, cuts_back, seed):
    c, s = client(seed=seed), server()
    wire, expected = b"", []
    for kind, data, cuts in messages:
        frame_bytes, event = send(c, kind, data, cuts)
        wire += frame_bytes
        expected.append(event)
    close = c.send_close(1000, "done")
    events = feed_in_chunks(s, wire + close, cuts_in)
    assert events == expected + [CloseReceived(1000, "done"), WebSocketClosed(1000, "done")]
    assert s.state is WebSocketState.CLOSED
    # the server's automatic answers (pongs, then the close echo) reach the client intact
    pings = [e.payload for e in expected if isinstance(e, PingReceived)]
    back = feed_in_chunks(c, s.data_to_send(), cuts_back)
    assert back == [PongReceived(p) for p in pings] + [CloseReceived(1000, ""), WebSocketClosed(1000, "")]
    assert c.state is WebSocketState.CLOSED


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10),
       st.sampled_from([Role.CLIENT, Role.SERVER]), st.sampled_from([None, 0, 50]))
@FAST
def test_garbage_never_raises_out_of_the_connection(garbage, cuts, role, max_size):
    conn = Connection(role, rng=random.Random(0), max_message_size=max_size)
    events = feed_in_chunks(conn, garbage, cuts)  # a peer's mistakes never raise
    for event in events[:-1]:
        assert not isinstance(event, WebSocketClosed)
    if conn.state is WebSocketState.CLOSED:
        closed = events[-1]
        assert isinstance(closed, WebSocketClosed)
        if closed.error is not None:
            assert closed.code in (1002, 1007, 1009)
            frame = sent_frames(conn.data_to_send(), masked=role is Role.CLIENT)[-1]
            assert frame.opcode is Opcode.CLOSE
            assert frame.payload[:2] == struct.pack("!H", closed.code)


@given(st.lists(st.text(max_size=50), max_size=4), st.lists(st.integers(0, 600), max_size=10),
       st.lists(st.integers(0, 600), max_size=10), st.integers(0, 2**32))
@FAST
def test_handshake_and_early_frames_in_random_chunks(texts, cuts_request, cuts_response, seed):
    c, s = handshake_pair(seed)
    request = c.handshake.request_bytes()
    early_from_client = b""
    # a client may only send frames after the 101; fake the "eager" client with our own masking
    for text in texts:
        early_from_client += from_client(Opcode.TEXT, text.encode())
    events = feed_in_chunks(s, request + early_from_client, cuts_request)
    assert [type(e) for e in events] == [RequestReceived]
    response = s.accept()
    assert s.receive_data(b"") == [TextReceived(t) for t in texts]
    for text in texts:
        response += s.send_text(text)
    events = feed_in_chunks(c, response, cuts_response) + c.receive_data(b"")
    assert events[0] == Accepted(events[0].response, "chat")
    assert events[1:] == [TextReceived(t) for t in texts]


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=10),
       st.sampled_from([Role.CLIENT, Role.SERVER]))
@FAST
def test_garbage_during_the_handshake_is_a_rejection_not_a_crash(garbage, cuts, role):
    handshake = ServerHandshake() if role is Role.SERVER else ClientHandshake(host="x", rng=random.Random(0))
    conn = Connection(role, handshake=handshake, rng=random.Random(0))
    events = feed_in_chunks(conn, garbage, cuts)
    assert len(events) <= 1  # at most one verdict, however the bytes were split
    if events:
        assert isinstance(events[0], Rejected)
        assert conn.state is WebSocketState.CLOSED
    else:
        assert conn.state is WebSocketState.CONNECTING


def test_empty_data_during_the_handshake_is_not_eof():
    """receive_data(b"") means "nothing new" in every state; only receive_eof() is EOF."""
    c, s = handshake_pair()
    assert s.receive_data(b"") == [] and s.state is WebSocketState.CONNECTING
    assert c.receive_data(b"") == [] and c.state is WebSocketState.CONNECTING
    s.receive_data(c.handshake.request_bytes())
    assert [type(e) for e in c.receive_data(s.accept())] == [Accepted]


# --- a handshake request parsed elsewhere (Engine.IO's server) ---------------------------------

def test_receive_request_gives_the_events_and_answers_receive_data_would():
    from lablib.http import RequestParser
    data = (b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    for raw in (data, data.replace(b"Version: 13", b"Version: 8")):
        by_bytes = Connection(Role.SERVER, handshake=ServerHandshake())
        by_request = Connection(Role.SERVER, handshake=ServerHandshake())
        [expected] = by_bytes.receive_data(raw)
        [event] = by_request.receive_request(RequestParser().receive_data(raw))
        assert type(event) is type(expected) and by_request.state is by_bytes.state
        assert by_request.data_to_send() == by_bytes.data_to_send()   # the 426 answer, or nothing
    # accepted: 101 with the caller's extra header fields; frames then flow
    assert by_request.state is WebSocketState.CLOSED
    conn = Connection(Role.SERVER, handshake=ServerHandshake())
    conn.receive_request(RequestParser().receive_data(data))
    assert conn.accept(extra_headers=[("Set-Cookie", "io=1")]).endswith(b"\r\nSet-Cookie: io=1\r\n\r\n")
    assert conn.send_text("hi") == b"\x81\x02hi"
    with pytest.raises(LocalProtocolError):
        conn.receive_request(RequestParser().receive_data(data))   # only once, while CONNECTING
