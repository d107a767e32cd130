"""RFC 7692 permessage-deflate: the header grammar, negotiation (§5, §7.1), the payload (§6, §7.2)
and the Connection with compression agreed (RSV1, fragments, context takeover, limits, errors)."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.errors import HandshakeError, InvalidUTF8, PayloadTooBig, WebSocketProtocolError
from lablib.websocket import (Accepted, BinaryReceived, WebSocketClosed, PingReceived,
                                         RequestReceived, Role, WebSocketState, TextReceived, Connection)
from lablib.websocket.deflate import (DeflateOptions, DeflateParameters, Deflater, Inflater,
                                      compression_options, parse_extensions)
from lablib.websocket.frames import FrameParser, Opcode, encode_frame
from lablib.websocket.handshake import ClientHandshake, ServerHandshake

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = bytes.fromhex("37fa213d")


# --- Sec-WebSocket-Extensions (RFC 6455 §9.1) ---------------------------------------------------

@pytest.mark.parametrize("values, expected", [
    (["permessage-deflate"], [("permessage-deflate", [])]),
    (["permessage-deflate; client_max_window_bits"],
     [("permessage-deflate", [("client_max_window_bits", None)])]),
    (["Permessage-Deflate ;Server_Max_Window_Bits = 10"],
     [("permessage-deflate", [("server_max_window_bits", "10")])]),
    (['permessage-deflate; server_max_window_bits="10", x-webkit-deflate-frame'],
     [("permessage-deflate", [("server_max_window_bits", "10")]), ("x-webkit-deflate-frame", [])]),
    (["a; x", "b"], [("a", [("x", None)]), ("b", [])]),      # two fields: one list
    (["permessage-deflate, "], [("permessage-deflate", [])]),  # a trailing comma
    ([], []),
])
def test_parse_extensions(values, expected):
    assert parse_extensions(values) == expected


@pytest.mark.parametrize("value", ["permessage-deflate; x=a b", "; x", 'a; b="1 2"', "a; b=", "a b"])
def test_parse_extensions_rejects_what_the_grammar_does_not_allow(value):
    with pytest.raises(ValueError):
        parse_extensions([value])


# --- the client's offer and its check of the answer ---------------------------------------------

@pytest.mark.parametrize("options, offer", [
    (DeflateOptions.for_client(), "permessage-deflate; client_max_window_bits"),
    (DeflateOptions(), "permessage-deflate"),
    (DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True,
                    server_max_window_bits=10, client_max_window_bits=11),
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10; client_max_window_bits=11"),
])
def test_client_offer(options, offer):
    assert options.offer() == offer
    assert ClientHandshake(host="x", compression=options).request_headers()[-1] == \
        ("Sec-WebSocket-Extensions", offer)


def test_no_offer_without_compression():
    assert "Sec-WebSocket-Extensions" not in dict(ClientHandshake(host="x").request_headers())


P = DeflateParameters


@pytest.mark.parametrize("options, answer, agreed", [
    # websockets' server answer to websockets' (and our default) offer
    (DeflateOptions.for_client(), "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
     P(server_max_window_bits=12, client_max_window_bits=12)),
    (DeflateOptions.for_client(), "permessage-deflate", P()),
    (DeflateOptions(), "permessage-deflate; server_no_context_takeover",
     P(server_no_context_takeover=True)),
    # the server may make us reset even if we did not offer to
    (DeflateOptions(), "permessage-deflate; client_no_context_takeover",
     P(client_no_context_takeover=True)),
    # we offered to reset: we do, whatever the answer says
    (DeflateOptions(client_no_context_takeover=True), "permessage-deflate",
     P(client_no_context_takeover=True)),
    (DeflateOptions(server_max_window_bits=10), "permessage-deflate; server_max_window_bits=9",
     P(server_max_window_bits=9)),
    # our promise of 11 holds when the answer is silent; a smaller answer wins
    (DeflateOptions(client_max_window_bits=11), "permessage-deflate", P(client_max_window_bits=11)),
    (DeflateOptions(client_max_window_bits=11), "permessage-deflate; client_max_window_bits=10",
     P(client_max_window_bits=10)),
    (DeflateOptions(), 'permessage-deflate; server_max_window_bits="8"', P(server_max_window_bits=8)),
])
def test_client_accepts_a_valid_answer(options, answer, agreed):
    assert options.accept_response([answer]) == agreed


def test_client_accepts_a_declined_offer():
    assert DeflateOptions.for_client().accept_response([]) is None


@pytest.mark.parametrize("options, answer, why", [
    (DeflateOptions(), "x-foo", "did not offer"),
    (DeflateOptions(), "permessage-deflate, permessage-deflate", "did not offer"),
    (DeflateOptions(), "permessage-deflate; foo", "unknown parameter"),
    (DeflateOptions(), "permessage-deflate; server_no_context_takeover=1", "takes no value"),
    (DeflateOptions(), "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
     "twice"),
    (DeflateOptions(), "permessage-deflate; server_max_window_bits=16", "8 to 15"),
    (DeflateOptions(), "permessage-deflate; server_max_window_bits=09", "8 to 15"),
    (DeflateOptions(), "permessage-deflate; server_max_window_bits", "8 to 15"),
    (DeflateOptions.for_client(), "permessage-deflate; client_max_window_bits", "8 to 15"),
    (DeflateOptions(server_no_context_takeover=True), "permessage-deflate", "§7.1.1.1"),
    (DeflateOptions(server_max_window_bits=10), "permessage-deflate", "§7.1.2.1"),
    (DeflateOptions(server_max_window_bits=10), "permessage-deflate; server_max_window_bits=11",
     "§7.1.2.1"),
    (DeflateOptions(), "permessage-deflate; client_max_window_bits=10", "not in the offer"),
    (DeflateOptions(client_max_window_bits=10), "permessage-deflate; client_max_window_bits=11",
     "exceeds"),
    (DeflateOptions.for_client(), "permessage-deflate; client_max_window_bits=8", "zlib"),
    (DeflateOptions(), "permessage-deflate; a=\"", "unreadable"),
])
def test_client_fails_the_connection_on_a_bad_answer(options, answer, why):
    with pytest.raises(HandshakeError, match=why) as info:
        options.accept_response([answer])
    assert info.value.reason.startswith("permessage-deflate: ")


# --- the server's answer ----------------------------------------------------------------------

SERVER = DeflateOptions.for_server()  # 2**12 windows, websockets' server default


@pytest.mark.parametrize("options, offers, answer, agreed", [
    (SERVER, ["permessage-deflate; client_max_window_bits"],
     "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
     P(server_max_window_bits=12, client_max_window_bits=12)),
    # no client_max_window_bits in the offer: none in the answer (§7.1.2.2)
    (SERVER, ["permessage-deflate"], "permessage-deflate; server_max_window_bits=12",
     P(server_max_window_bits=12)),
    (SERVER, ["permessage-deflate; server_max_window_bits=10; client_max_window_bits=14"],
     "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
     P(server_max_window_bits=10, client_max_window_bits=12)),
    (DeflateOptions(), ["permessage-deflate"], "permessage-deflate", P()),
    (DeflateOptions(), ["permessage-deflate; client_max_window_bits"], "permessage-deflate", P()),
    (DeflateOptions(), ["permessage-deflate; client_max_window_bits=10"],
     "permessage-deflate; client_max_window_bits=10", P(client_max_window_bits=10)),
    (DeflateOptions(), ["permessage-deflate; server_max_window_bits=15"],
     "permessage-deflate; server_max_window_bits=15", P()),
    (DeflateOptions(), ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     P(client_no_context_takeover=True, server_no_context_takeover=True)),
    (DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
     ["permessage-deflate"],
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     P(client_no_context_takeover=True, server_no_context_takeover=True)),
    # the server may cap the client's window only if the client said it can (client_max_window_bits)
    (DeflateOptions(client_max_window_bits=9), ["permessage-deflate; client_max_window_bits"],
     "permessage-deflate; client_max_window_bits=9", P(client_max_window_bits=9)),
    (DeflateOptions(client_max_window_bits=8), ["permessage-deflate; client_max_window_bits"],
     "permessage-deflate; client_max_window_bits=8", P(client_max_window_bits=8)),
    # offers in order of preference: the first acceptable wins (§5)
    (DeflateOptions(), ["permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                        "client_no_context_takeover", "permessage-deflate"],
     "permessage-deflate; client_no_context_takeover", P(client_no_context_takeover=True)),
    (DeflateOptions(), ["x-webkit-deflate-frame, permessage-deflate; bogus, permessage-deflate"],
     "permessage-deflate", P()),
])
def test_server_answers(options, offers, answer, agreed):
    assert options.accept_offer(offers) == (answer, agreed)


@pytest.mark.parametrize("offer", [
    "x-webkit-deflate-frame", "permessage-deflate; foo", "permessage-deflate; server_max_window_bits",
    "permessage-deflate; client_max_window_bits=7", "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; client_no_context_takeover=true",
    "permessage-deflate; client_max_window_bits; client_max_window_bits", "permessage-deflate; =",
])
def test_server_declines_offers_it_cannot_accept(offer):
    """§7.1: decline, never an error: the connection goes on without compression."""
    assert DeflateOptions().accept_offer([offer]) is None


def test_options_are_checked():
    for bad in (dict(server_max_window_bits=16), dict(client_max_window_bits=7),
                dict(client_max_window_bits=False)):
        with pytest.raises(ValueError):
            DeflateOptions(**bad)
    with pytest.raises(ValueError):
        DeflateOptions(client_max_window_bits=8).offer()
    with pytest.raises(ValueError):
        compression_options("gzip", client=True)
    assert compression_options("deflate", client=True) == DeflateOptions.for_client()
    assert compression_options("deflate", client=False) == DeflateOptions.for_server()
    assert compression_options(None, client=False) is None


# --- the payload (§7.2) -------------------------------------------------------------------------

def test_the_examples_of_rfc7692_section_7_2_3():
    d = Deflater()
    assert d.deflate(b"Hello", fin=True) == bytes.fromhex("f248cdc9c90700")     # §7.2.3.1
    assert d.deflate(b"Hello", fin=True) == bytes.fromhex("f200110000")         # §7.2.3.2
    fresh = Deflater(no_context_takeover=True)
    assert [fresh.deflate(b"Hello", fin=True) for _ in "ab"] == [bytes.fromhex("f248cdc9c90700")] * 2
    inflater = Inflater()
    assert inflater.inflate(bytes.fromhex("f248cdc9c90700"), fin=True) == b"Hello"
    assert inflater.inflate(bytes.fromhex("f200110000"), fin=True) == b"Hello"
    # §7.2.3.3: a stored (uncompressed) block; §7.2.3.5: two blocks in one message
    assert Inflater().inflate(bytes.fromhex("0005 00faff 48656c6c6f 00"), fin=True) == b"Hello"
    assert Inflater().inflate(bytes.fromhex("f2480500 0000ffff cac9c90700"), fin=True) == b"Hello"


def test_a_bfinal_block_ends_the_stream_and_the_next_message_starts_a_new_one():
    """§7.2.3.4: "Hello" in a block with BFINAL=1; the 00 00 ff ff appended after it is unused."""
    inflater = Inflater()
    assert inflater.inflate(bytes.fromhex("f348cdc9c90700 00"), fin=True) == b"Hello"
    assert inflater.inflate(bytes.fromhex("f248cdc9c90700"), fin=True) == b"Hello"


def test_fragments_are_flushed_one_by_one():
    d = Deflater()
    first, last = d.deflate(b"Hel", fin=False), d.deflate(b"lo", fin=True)
    assert first.endswith(b"\x00\x00\xff\xff") and not last.endswith(b"\x00\x00\xff\xff")
    inflater = Inflater()
    assert inflater.inflate(first, fin=False) == b"Hel" and inflater.inflate(last, fin=True) == b"lo"


def test_an_empty_message_is_one_byte():
    assert Deflater().deflate(b"", fin=True) == b"\x00"
    assert Inflater().inflate(b"\x00", fin=True) == b""


def test_window_8_cannot_compress():
    with pytest.raises(ValueError):
        Deflater(window_bits=8)
    # ... but is read: zlib writes "8" with a 2**9 window, which is what the inflater uses
    z = zlib.compressobj(wbits=-9)
    data = z.compress(b"abc" * 300) + z.flush(zlib.Z_SYNC_FLUSH)
    assert Inflater(window_bits=8).inflate(data[:-4], fin=True) == b"abc" * 300


def test_inflating_stops_at_max_size_exactly():
    data = Deflater().deflate(b"a" * 1000, fin=True)
    assert len(Inflater(max_size=1000).inflate(data, fin=True)) == 1000
    with pytest.raises(PayloadTooBig):
        Inflater(max_size=999).inflate(data, fin=True)
    # across fragments: the limit is the whole message's
    d, inflater = Deflater(), Inflater(max_size=1500)
    inflater.inflate(d.deflate(b"a" * 1000, fin=False), fin=False)
    with pytest.raises(PayloadTooBig):
        inflater.inflate(d.deflate(b"a" * 501, fin=True), fin=True)


def test_data_that_is_not_deflate_is_1007():
    with pytest.raises(WebSocketProtocolError) as info:
        Inflater().inflate(b"\xff\xff\xff", fin=True)
    assert info.value.close_code == 1007


@FAST
@given(messages=st.lists(st.tuples(st.binary(max_size=3000), st.integers(1, 4)), max_size=6),
       window_bits=st.integers(9, 15), takeover=st.booleans(), level=st.sampled_from([-1, 0, 1, 9]))
def test_deflate_inflate_round_trip(messages, window_bits, takeover, level):
    d = Deflater(window_bits=window_bits, no_context_takeover=not takeover, level=level)
    i = Inflater(window_bits=window_bits, no_context_takeover=not takeover, max_size=3000)
    for data, parts in messages:
        cuts = [len(data) * k // parts for k in range(parts + 1)]
        pieces = [data[a:b] for a, b in zip(cuts, cuts[1:])]
        out = b"".join(i.inflate(d.deflate(p, fin=n == parts - 1), fin=n == parts - 1)
                       for n, p in enumerate(pieces))
        assert out == data


# --- the Connection with permessage-deflate ---------------------------------------------------

def pair(params: DeflateParameters = DeflateParameters(), seed: int = 0):
    c = Connection(Role.CLIENT, rng=random.Random(seed), deflate=params)
    s = Connection(Role.SERVER, deflate=params)
    return c, s


def test_server_sends_rfc_hello_with_rsv1():
    """RSV1 (0x40) on the first byte: 0xc1 = FIN | RSV1 | TEXT (§6.1, §7.2.3.1)."""
    _, s = pair()
    assert s.send_text("Hello") == b"\xc1\x07" + bytes.fromhex("f248cdc9c90700")
    assert s.send_text("Hello") == b"\xc1\x05" + bytes.fromhex("f200110000")   # context takeover
    _, s = pair(DeflateParameters(server_no_context_takeover=True))
    assert s.send_text("Hello") == s.send_text("Hello") == b"\xc1\x07" + bytes.fromhex("f248cdc9c90700")


def test_client_frames_are_compressed_then_masked():
    c, s = pair()
    wire = c.send_binary(b"Hello")
    [frame] = FrameParser(mask_required=True, allowed_rsv=0x40).receive_data(wire)
    assert frame.rsv1 and frame.opcode is Opcode.BINARY and frame.payload == bytes.fromhex("f248cdc9c90700")
    assert s.receive_data(wire) == [BinaryReceived(b"Hello")]


def test_fragmented_message_has_rsv1_on_its_first_frame_only():
    c, s = pair()
    wire = [c.send_text("Hel", fin=False), c.send_continuation("lo", fin=True)]
    frames = FrameParser(mask_required=True, allowed_rsv=0x40).receive_data(b"".join(wire))
    assert [(f.opcode, f.rsv1, f.fin) for f in frames] == [(Opcode.TEXT, True, False),
                                                             (Opcode.CONT, False, True)]
    assert s.receive_data(wire[0]) == []
    assert s.receive_data(wire[1]) == [TextReceived("Hello")]


def test_control_frames_are_never_compressed():
    c, s = pair()
    assert s.send_ping(b"hi") == b"\x89\x02hi"
    assert s.send_close(1000) == b"\x88\x02\x03\xe8"
    events = c.receive_data(b"\x89\x02hi")
    assert events == [PingReceived(b"hi")] and c.data_to_send()[0] == 0x8A  # the pong: no RSV1


def test_an_uncompressed_message_is_accepted():
    """RSV1=0: this message was not compressed (the sender may choose per message, §6)."""
    c, _ = pair()
    assert c.receive_data(encode_frame(Opcode.TEXT, b"plain")) == [TextReceived("plain")]


def assert_failed(conn: Connection, events, code: int) -> None:
    closed = events[-1]
    assert isinstance(closed, WebSocketClosed) and closed.code == code
    assert conn.state is WebSocketState.CLOSED
    [close] = FrameParser().receive_data(conn.data_to_send())
    assert close.opcode is Opcode.CLOSE and not close.rsv1 and close.payload[:2] == code.to_bytes(2, "big")


@pytest.mark.parametrize("frame, why", [
    (encode_frame(Opcode.PING, b"", rsv1=True), "control frame"),
    (encode_frame(Opcode.TEXT, b"\xf2\x48", fin=False, rsv1=True)
     + encode_frame(Opcode.CONT, b"\xcd\xc9\xc9\x07\x00", rsv1=True), "continuation frame"),
])
def test_rsv1_where_rfc7692_forbids_it_is_1002(frame, why):
    c, _ = pair()
    events = c.receive_data(frame)
    assert_failed(c, events, 1002)
    assert why in events[-1].reason


def test_rsv1_without_the_extension_is_still_1002():
    c = Connection(Role.CLIENT, rng=random.Random(0))
    assert_failed(c, c.receive_data(b"\xc1\x07" + bytes.fromhex("f248cdc9c90700")), 1002)


def test_data_that_does_not_inflate_closes_with_1007():
    c, _ = pair()
    assert_failed(c, c.receive_data(encode_frame(Opcode.BINARY, b"\xff\xff\xff", rsv1=True)), 1007)


def test_inflated_text_that_is_not_utf8_closes_with_1007():
    c, _ = pair()
    bad = Deflater().deflate(b"caf\xe9", fin=True)
    events = c.receive_data(encode_frame(Opcode.TEXT, bad, rsv1=True))
    assert_failed(c, events, 1007)
    assert isinstance(events[-1].error, InvalidUTF8)


def test_decompression_bomb_is_1009_before_it_inflates():
    """A 1 KiB frame that would inflate to 1 MiB, against a 64 KiB limit."""
    bomb = Deflater().deflate(b"\x00" * (1 << 20), fin=True)
    assert len(bomb) < 2048
    s = Connection(Role.SERVER, deflate=DeflateParameters(), max_message_size=64 * 1024)
    events = s.receive_data(encode_frame(Opcode.BINARY, bomb, rsv1=True, masking_key=KEY))
    assert_failed(s, events, 1009)
    assert isinstance(events[-1].error, PayloadTooBig)


def test_compressed_text_is_not_checked_as_utf8_before_it_is_inflated():
    """§8.1 fail-fast looks at a text frame's bytes as they arrive; compressed bytes are not
    text (these are not valid UTF-8), so only the inflated message is checked."""
    text = "é" * 40 + "a fairly compressible sentence, " * 10
    c, s = pair()
    wire = c.send_text(text)
    payload = FrameParser(mask_required=True, allowed_rsv=0x40).receive_data(wire)[0].payload
    with pytest.raises(UnicodeDecodeError):
        payload.decode("utf-8")
    events = [e for i in range(len(wire)) for e in s.receive_data(wire[i:i + 1])]
    assert events == [TextReceived(text)]


def test_inflated_size_limit_follows_max_message_size():
    c, s = pair()
    s.max_message_size = 100
    assert_failed(s, s.receive_data(c.send_binary(b"\x00" * 101)), 1009)


# --- the handshake negotiates, the Connection applies it ---------------------------------------

def handshake(client_options, server_options):
    c = Connection(Role.CLIENT, rng=random.Random(1),
                   handshake=ClientHandshake(host="x", rng=random.Random(0), compression=client_options))
    s = Connection(Role.SERVER, handshake=ServerHandshake(compression=server_options))
    [received] = s.receive_data(c.handshake.request_bytes())
    assert isinstance(received, RequestReceived)
    response = s.accept()
    [accepted] = c.receive_data(response)
    assert isinstance(accepted, Accepted)
    return c, s, response


def test_handshake_agrees_websockets_defaults_and_both_sides_compress():
    c, s, response = handshake(DeflateOptions.for_client(), DeflateOptions.for_server())
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12; " \
           b"client_max_window_bits=12\r\n" in response
    assert c.deflate == s.deflate == P(server_max_window_bits=12, client_max_window_bits=12)
    for text in ["Hello", "Hello again", "Hello"]:
        wire = c.send_text(text)
        assert wire[0] == 0xC1 and s.receive_data(wire) == [TextReceived(text)]
        wire = s.send_text(text)
        assert wire[0] == 0xC1 and c.receive_data(wire) == [TextReceived(text)]


def test_a_server_without_compression_ignores_the_offer():
    c, s, response = handshake(DeflateOptions.for_client(), None)
    assert b"Sec-WebSocket-Extensions" not in response
    assert c.deflate is None and s.deflate is None
    assert s.send_text("Hello") == b"\x81\x05Hello"


def test_a_client_without_compression_gets_none():
    c, s, response = handshake(None, DeflateOptions.for_server())
    assert b"Sec-WebSocket-Extensions" not in response and c.deflate is s.deflate is None


def test_deflate_argument_is_for_connections_without_handshake():
    with pytest.raises(ValueError):
        Connection(Role.SERVER, handshake=ServerHandshake(), deflate=DeflateParameters())


@FAST
@given(messages=st.lists(st.tuples(st.one_of(st.text(max_size=500), st.binary(max_size=2000)),
                                   st.integers(1, 3)), min_size=1, max_size=5),
       client_bits=st.integers(9, 15), server_bits=st.integers(9, 15),
       client_reset=st.booleans(), server_reset=st.booleans(), chunk=st.integers(1, 700))
def test_connections_round_trip_under_any_settings(messages, client_bits, server_bits,
                                                   client_reset, server_reset, chunk):
    options = DeflateOptions(server_no_context_takeover=server_reset,
                             client_no_context_takeover=client_reset,
                             server_max_window_bits=server_bits, client_max_window_bits=client_bits)
    c, s, _ = handshake(options, DeflateOptions())
    assert (c.deflate.client_max_window_bits, c.deflate.server_max_window_bits) == (client_bits, server_bits)
    for sender, receiver in ((c, s), (s, c)):
        wire = b""
        for data, parts in messages:
            cuts = [len(data) * k // parts for k in range(parts + 1)]
            pieces = [data[a:b] for a, b in zip(cuts, cuts[1:])]
            first = sender.send_text if isinstance(data, str) else sender.send_binary
            wire += first(pieces[0], fin=parts == 1)
            for n, piece in enumerate(pieces[1:], start=2):
                wire += sender.send_continuation(piece, fin=n == parts)
        events = [e for i in range(0, len(wire), chunk) for e in receiver.receive_data(wire[i:i + chunk])]
        assert [e.data for e in events] == [data for data, _ in messages]
