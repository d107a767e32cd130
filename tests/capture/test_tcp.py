"""lablib.capture.tcp: TCP segments -> byte streams (reassembly, RFC 9293 §3.4, §3.10.7.4)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lablib.capture.tcp import SEQ_MOD, Reassembler, Segment, TCPFlags, reassemble, seq_diff

F = TCPFlags
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)


def seg(time, direction, seq, flags=F.ACK, payload=b""):
    src, dst = (CLIENT, SERVER) if direction == "c2s" else (SERVER, CLIENT)
    return Segment(time, src, dst, seq % SEQ_MOD, 0, flags, payload)


def handshake(isn_c, isn_s, time=0.0):
    return [seg(time, "c2s", isn_c, F.SYN), seg(time, "s2c", isn_s, F.SYN | F.ACK),
            seg(time, "c2s", isn_c + 1, F.ACK)]


# --- sequence arithmetic ----------------------------------------------------------------------

def test_seq_diff_is_signed_and_wraps():
    assert seq_diff(10, 3) == 7
    assert seq_diff(3, 10) == -7
    assert seq_diff(5, 0xFFFFFFFE) == 7           # 5 comes 7 after 0xFFFFFFFE
    assert seq_diff(0xFFFFFFFE, 5) == -7
    assert seq_diff(2**31, 0) == -(2**31)          # the ambiguous half-way point


# --- in order, out of order, duplicates ----------------------------------------------------

def test_in_order_stream_with_handshake_and_fin():
    segs = handshake(1000, 5000) + [
        seg(1.0, "c2s", 1001, F.PSH | F.ACK, b"GET /"),
        seg(1.1, "s2c", 5001, F.PSH | F.ACK, b"200 OK"),
        seg(2.0, "s2c", 5007, F.FIN | F.ACK),
        seg(2.1, "c2s", 1006, F.FIN | F.ACK),
        seg(2.2, "s2c", 5008, F.ACK),
    ]
    cap = reassemble(segs, source="test")
    assert cap.source == "test"
    [conv] = cap.conversations
    assert (conv.id, conv.client, conv.server, conv.start) == (0, CLIENT, SERVER, 0.0)
    assert [(c.time, c.direction, c.data) for c in conv.chunks] == [
        (1.0, "c2s", b"GET /"), (1.1, "s2c", b"200 OK")]
    assert (conv.end, conv.closed_by, conv.reset) == (2.1, "s2c", False)


def test_out_of_order_segment_waits_for_the_gap():
    r = Reassembler()
    for s in handshake(0, 0):
        r.feed(s)
    assert r.feed(seg(1.0, "c2s", 4, payload=b"defg")) is None     # ahead of a gap: held back
    chunk = r.feed(seg(1.5, "c2s", 1, payload=b"abc"))              # fills it
    assert (chunk.time, chunk.data) == (1.5, b"abcdefg")            # readable when the gap filled
    assert r.capture.conversations[0].data("c2s") == b"abcdefg"


def test_retransmission_and_overlap_deliver_only_new_bytes():
    segs = handshake(100, 200) + [
        seg(1, "c2s", 101, payload=b"hello"),
        seg(2, "c2s", 101, payload=b"hello"),           # retransmission: nothing new
        seg(3, "c2s", 103, payload=b"llo wor"),         # overlaps: only " wor" is new
        seg(4, "c2s", 106, payload=b" w"),              # entirely old
        seg(5, "c2s", 109, payload=b"rld"),             # overlaps by one byte ("r")
    ]
    conv = reassemble(segs).conversations[0]
    assert [(c.time, c.data) for c in conv.chunks] == [(1, b"hello"), (3, b" wor"), (5, b"ld")]


def test_sequence_numbers_wrap_around():
    isn = SEQ_MOD - 3                                   # the SYN takes 0xFFFFFFFD
    segs = handshake(isn, 7) + [
        seg(1, "c2s", isn + 1, payload=b"ab"),          # 0xFFFFFFFE, 0xFFFFFFFF
        seg(2, "c2s", isn + 5, payload=b"ef"),          # 2, 3 — out of order, after the wrap
        seg(3, "c2s", isn + 3, payload=b"cd"),          # 0, 1
    ]
    assert segs[-1].seq == 0
    conv = reassemble(segs).conversations[0]
    assert conv.data("c2s") == b"abcdef"
    assert [c.data for c in conv.chunks] == [b"ab", b"cdef"]


def test_fin_ahead_of_data_closes_only_when_the_data_is_in():
    r = Reassembler()
    for s in handshake(0, 0):
        r.feed(s)
    r.feed(seg(1, "c2s", 4, F.FIN | F.ACK, b"end"))     # data + FIN, but bytes 1..3 missing
    r.feed(seg(2, "s2c", 1, F.FIN | F.ACK))
    conv = r.capture.conversations[0]
    assert conv.end is None and conv.closed_by == "s2c"
    r.feed(seg(3, "c2s", 1, payload=b"the"))
    assert conv.data("c2s") == b"theend"
    assert conv.end == 3
    r.feed(seg(4, "c2s", 1, payload=b"late retransmission after the FIN"))
    assert conv.data("c2s") == b"theend"


def test_client_is_the_syn_sender_even_if_the_syn_ack_is_seen_first():
    conv = reassemble([seg(0, "s2c", 50, F.SYN | F.ACK), seg(1, "s2c", 51, payload=b"hi")]).conversations[0]
    assert (conv.client, conv.server) == (CLIENT, SERVER)
    assert conv.chunks[0].direction == "s2c"


def test_mid_stream_capture_starts_with_the_first_byte_seen():
    conv = reassemble([seg(5, "s2c", 12345, payload=b"xyz"),
                       seg(6, "c2s", 999, payload=b"ok")]).conversations[0]
    assert conv.client == SERVER            # without a SYN, the first sender counts as client
    assert conv.data("c2s") == b"xyz" and conv.data("s2c") == b"ok"


def test_port_reuse_after_close_starts_a_new_conversation():
    first = handshake(1, 1) + [seg(1, "c2s", 2, F.FIN | F.ACK), seg(1, "s2c", 2, F.FIN | F.ACK)]
    second = handshake(9000, 9000, time=5) + [seg(6, "c2s", 9001, payload=b"again")]
    first_retransmitted_syn = [seg(0.5, "c2s", 1, F.SYN)]
    cap = reassemble(first[:3] + first_retransmitted_syn + first[3:] + second)
    assert [c.id for c in cap] == [0, 1]
    assert cap.conversations[0].end == 1 and cap.conversations[1].data("c2s") == b"again"
    assert cap.conversations[1].start == 5


def test_reset_from_one_side_and_a_cut_in_the_middle():
    one = reassemble(handshake(0, 0) + [seg(3, "s2c", 1, F.RST | F.ACK)]).conversations[0]
    assert (one.end, one.reset, one.closed_by) == (3, True, "s2c")
    both = reassemble(handshake(0, 0) + [seg(3, "s2c", 1, F.RST | F.ACK),
                                         seg(3, "c2s", 1, F.RST | F.ACK)]).conversations[0]
    assert (both.end, both.reset, both.closed_by) == (3, True, None)


def test_refused_connection_is_a_conversation_ended_by_reset():
    conv = reassemble([seg(0, "c2s", 77, F.SYN), seg(0, "s2c", 0, F.RST | F.ACK)]).conversations[0]
    assert (conv.client, conv.chunks, conv.reset, conv.closed_by) == (CLIENT, [], True, "s2c")


# --- property: any arrival order, duplicates and overlaps give the same stream --------------

@st.composite
def mangled_connection(draw):
    """Two byte streams cut into segments, then shuffled, duplicated and overlapped."""
    streams = {d: draw(st.binary(min_size=0, max_size=300)) for d in ("c2s", "s2c")}
    isns = {d: draw(st.one_of(st.integers(0, SEQ_MOD - 1), st.integers(SEQ_MOD - 400, SEQ_MOD - 1)))
            for d in ("c2s", "s2c")}
    segments = []
    for d, data in streams.items():
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=8)))
        bounds = [0] + [c for c in cuts if c < len(data)] + [len(data)]
        pieces = [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
        # duplicates and arbitrary overlapping ranges, as retransmissions with re-packetization
        extra = draw(st.lists(st.tuples(st.integers(0, len(data)), st.integers(0, 40)), max_size=6))
        pieces += [(a, min(len(data), a + n)) for a, n in extra if n and a < len(data)]
        pieces += draw(st.lists(st.sampled_from(pieces), max_size=4)) if pieces else []
        isn = isns[d]
        segments += [(d, isn + 1 + a, F.ACK | F.PSH, data[a:b]) for a, b in pieces]
        segments.append((d, isn + 1 + len(data), F.FIN | F.ACK, b""))
    order = draw(st.permutations(segments))
    syn = [("c2s", isns["c2s"], F.SYN, b""), ("s2c", isns["s2c"], F.SYN | F.ACK, b"")]
    return streams, syn + list(order)


@settings(max_examples=300, deadline=None)
@given(mangled_connection())
def test_reassembly_is_independent_of_arrival_order(case):
    streams, segments = case
    cap = reassemble(seg(i, d, s, fl, p) for i, (d, s, fl, p) in enumerate(segments))
    [conv] = cap.conversations
    assert conv.data("c2s") == streams["c2s"]
    assert conv.data("s2c") == streams["s2c"]
    assert all(c.data for c in conv.chunks)          # a chunk always carries new bytes
    assert conv.end is not None and not conv.reset   # both FINs reached in order
    times = [c.time for c in conv.chunks]
    assert times == sorted(times)
