"""lablib.websocket.messages: §5.4 reassembly and §8.1 UTF-8, strict and tolerant; and the
RFC 7692 §7.2.2 inflate of lablib.websocket.deflate that a tolerant assembler may use."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lablib.errors import InvalidUTF8, PayloadTooBig, WebSocketProtocolError
from lablib.websocket.deflate import DeflateParameters, Inflater
from lablib.websocket.frames import Frame, Opcode
from lablib.websocket.messages import MessageAssembler, Reassembled

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


def feed(assembler: MessageAssembler, *frames: Frame) -> list[Reassembled]:
    return [m for f in frames if (m := assembler.receive(f)) is not None]


# --- strict (what the connection uses) -----------------------------------------------------------

def test_whole_and_fragmented_messages():
    a = MessageAssembler()
    assert feed(a, Frame(TEXT, b"Hello")) == [Reassembled(TEXT, b"Hello", "Hello", 1, False, 5)]
    # §5.4's example: "Hel" then "lo"; a character may straddle two fragments
    assert feed(a, Frame(TEXT, b"Hel", fin=False), Frame(CONT, b"lo \xc3", fin=False),
                Frame(CONT, b"\xa9")) == [Reassembled(TEXT, b"Hello \xc3\xa9", "Hello é", 3,
                                                      False, 8)]
    assert feed(a, Frame(BINARY, b"\x00", fin=False), Frame(CONT, b"")) == [
        Reassembled(BINARY, b"\x00", None, 2, False, 1)]


@pytest.mark.parametrize("frames, error, reason", [
    ([Frame(CONT, b"x")], WebSocketProtocolError, "continuation frame without a message to continue"),
    ([Frame(TEXT, b"a", fin=False), Frame(BINARY, b"b")], WebSocketProtocolError,
     "new data frame before the fragmented message ended"),
    ([Frame(TEXT, b"\xff")], InvalidUTF8, "text message is not valid UTF-8"),
    ([Frame(TEXT, b"ok", fin=False), Frame(CONT, b"\xc3(", fin=False)], InvalidUTF8,
     "text message is not valid UTF-8"),   # fails at the bad fragment, before the end
])
def test_strict_raises(frames, error, reason):
    a = MessageAssembler()
    with pytest.raises(error) as caught:
        feed(a, *frames)
    assert caught.value.reason == reason


# --- tolerant (what the dissector uses) ----------------------------------------------------------

def test_tolerant_reports_and_goes_on():
    a = MessageAssembler(tolerant=True)
    assert feed(a, Frame(CONT, b"x")) == [Reassembled(
        CONT, None, None, 1, False, 1, "continuation frame without a message to continue (§5.4)")]
    # the unfinished message is dropped; the new one carries the report
    assert feed(a, Frame(TEXT, b"a", fin=False), Frame(TEXT, b"b", fin=False),
                Frame(CONT, b"c")) == [Reassembled(
                    TEXT, b"bc", "bc", 2, False, 2,
                    "new TEXT frame before the previous message ended (§5.4)")]
    assert feed(a, Frame(TEXT, b"\xff")) == [Reassembled(
        TEXT, b"\xff", None, 1, False, 1, "text message is not valid UTF-8 (§8.1)")]
    assert feed(a, Frame(TEXT, b"\xc3", fin=False), Frame(CONT, b"(")) == [Reassembled(
        TEXT, b"\xc3(", None, 2, False, 2, "text message is not valid UTF-8 (§8.1)")]
    assert feed(a, Frame(TEXT, b"fine")) == [Reassembled(TEXT, b"fine", "fine", 1, False, 4)]


@given(st.text(max_size=40), st.lists(st.integers(0, 60), max_size=5), st.booleans())
def test_any_fragmentation_gives_the_same_message(text, cuts, tolerant):
    data = text.encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = [data[i:j] for i, j in zip(bounds, bounds[1:])] or [b""]
    frames = [Frame(TEXT if i == 0 else CONT, p, fin=i == len(pieces) - 1)
              for i, p in enumerate(pieces)]
    [message] = feed(MessageAssembler(tolerant=tolerant), *frames)
    assert (message.text, message.data, message.frames, message.violation) == (
        text, data, len(pieces), None)


# --- permessage-deflate (RFC 7692) --------------------------------------------------------------

def deflated(*messages: bytes, takeover: bool = True) -> list[bytes]:
    """Each message compressed as §7.2.1 says: DEFLATE, sync flush, minus 00 00 ff ff."""
    z = zlib.compressobj(wbits=-15)
    out = []
    for m in messages:
        if not takeover:
            z = zlib.compressobj(wbits=-15)
        data = z.compress(m) + z.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


def test_the_example_of_rfc7692_section_7_2_3_1():
    """RFC 7692 §7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00."""
    wire = bytes.fromhex("f248cdc9c90700")
    assert Inflater().inflate(wire, fin=True) == b"Hello"
    # the same message in two fragments (§7.2.3.1's second example)
    inflater = Inflater()
    assert inflater.inflate(bytes.fromhex("f248cd"), fin=False) \
        + inflater.inflate(bytes.fromhex("c9c90700"), fin=True) == b"Hello"


@pytest.mark.parametrize("takeover", [True, False])
def test_tolerant_assembler_inflates_fragment_by_fragment(takeover):
    texts = [b"repeat after me " * 4] * 3
    wire = deflated(*texts, takeover=takeover)
    a = MessageAssembler(tolerant=True, inflater=Inflater(no_context_takeover=not takeover))
    first = wire[0]
    got = feed(a, Frame(TEXT, first[:5], fin=False, rsv1=True), Frame(CONT, first[5:]),
               *(Frame(TEXT, w, rsv1=True) for w in wire[1:]))
    assert [(m.data, m.text, m.compressed) for m in got] == [(t, t.decode(), True) for t in texts]
    assert [m.frames for m in got] == [2, 1, 1] and got[1].wire_length == len(wire[1])


def test_data_that_is_not_deflate_is_reported_and_the_message_lost():
    a = MessageAssembler(tolerant=True, inflater=Inflater())
    [lost] = feed(a, Frame(TEXT, b"\xff\xff\xff", rsv1=True))
    assert lost.data is None and lost.violation.startswith("permessage-deflate: cannot inflate")
    with pytest.raises(WebSocketProtocolError):
        MessageAssembler(inflater=Inflater()).receive(Frame(TEXT, b"\xff\xff\xff", rsv1=True))


def test_inflating_is_bounded():
    [wire] = deflated(b"\x00" * 100_000)
    with pytest.raises(PayloadTooBig):
        Inflater(max_size=1000).inflate(wire, fin=True)
    assert len(Inflater(max_size=100_000).inflate(wire, fin=True)) == 100_000


@pytest.mark.parametrize("header, expected", [
    (["permessage-deflate"], DeflateParameters(False, False)),
    (["x-other, permessage-deflate; server_no_context_takeover"], DeflateParameters(False, True)),
    (["permessage-deflate; client_no_context_takeover; server_max_window_bits=15"],
     DeflateParameters(True, False)),
    (["x-other"], None), ([], None),
])
def test_deflate_parameters_from_the_answer(header, expected):
    assert DeflateParameters.from_headers(header) == expected
