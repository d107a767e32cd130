"""TCP stream reassembly: segments in, the byte streams the applications saw out.

A sniffer (or a pcap file) gives us TCP *segments*; a protocol lives in the *byte stream* that
TCP delivers to the application.  Turning one into the other is what a receiving TCP does
(RFC 9293 §3.10.7.4, "SEGMENT ARRIVES"), minus windows, timers and acknowledgements:

* every byte has a 32-bit sequence number; the SYN and the FIN each occupy one number too
  (RFC 9293 §3.4);
* sequence numbers are compared modulo 2**32, so a stream may wrap from 0xFFFFFFFF to 0
  (RFC 9293 §3.4, "all arithmetic dealing with sequence numbers must be performed modulo 2**32");
* a segment that repeats bytes already delivered (a retransmission, or one that overlaps) only
  contributes the bytes that are new;
* a segment that starts beyond the next expected byte waits until the gap is filled
  (out-of-order arrival).

The result is the same :class:`~lablib.capture.records.Capture` the relay produces: one
:class:`~lablib.capture.records.Conversation` per connection, one
:class:`~lablib.capture.records.Chunk` per segment that delivered new bytes, timestamped when
the bytes became readable in order (for a segment that filled a gap, that is the filling
segment's time).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable

from .records import Capture, Chunk, Conversation, Direction

__all__ = ["TCPFlags", "Segment", "Reassembler", "reassemble", "seq_diff", "SEQ_MOD"]

Endpoint = tuple[str, int]

SEQ_MOD = 2**32  #: sequence numbers live in the ring Z / 2**32 (RFC 9293 §3.4)


class TCPFlags(enum.IntFlag):
    """The control bits of the TCP header (RFC 9293 §3.1; ECE/CWR from RFC 3168)."""

    FIN = 0x01  #: no more data from sender
    SYN = 0x02  #: synchronize sequence numbers
    RST = 0x04  #: reset the connection
    PSH = 0x08  #: push function
    ACK = 0x10  #: acknowledgment field is significant
    URG = 0x20  #: urgent pointer field is significant
    ECE = 0x40  #: ECN-Echo
    CWR = 0x80  #: congestion window reduced


@dataclass(frozen=True, slots=True)
class Segment:
    """The parts of one TCP segment that reassembly needs."""

    time: float      #: capture-relative seconds
    src: Endpoint    #: (address, port) of the sender
    dst: Endpoint    #: (address, port) of the receiver
    seq: int         #: sequence number of the first octet (of the SYN, if SYN is set)
    ack: int         #: acknowledgment number (unused by reassembly, kept for display)
    flags: TCPFlags
    payload: bytes = b""
    window: int = 0  #: the receive window field, unscaled (kept for display: zero windows...)


def seq_diff(a: int, b: int) -> int:
    """``a - b`` for sequence numbers, as a signed distance in [-2**31, 2**31).

    ``seq_diff(5, 0xFFFFFFFE) == 7``: five comes seven numbers *after* 0xFFFFFFFE once the
    counter wraps.  This is the "modulo 2**32" comparison of RFC 9293 §3.4.
    """
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


@dataclass
class _HalfStream:
    """One direction of a connection, as its receiver reassembles it."""

    next_seq: int | None = None  #: RCV.NXT: the next sequence number expected
    #: segments that arrived ahead of a gap: seq -> (data, carries FIN)
    pending: dict[int, tuple[bytes, bool]] = field(default_factory=dict)
    fin_done: bool = False       #: the FIN was reached in order: the stream is complete
    rst: bool = False            #: this side sent a RST

    def receive(self, seq: int, data: bytes, fin: bool) -> tuple[bytes, bool]:
        """Take one segment's data; return (bytes now deliverable in order, FIN reached now)."""
        if self.fin_done:
            return b"", False        # nothing is delivered after the FIN (RFC 9293 §3.10.7.4)
        if self.next_seq is None:
            self.next_seq = seq       # joined mid-stream: the first byte we see is byte one
        if data or fin:
            old = self.pending.get(seq)
            if old is None or len(data) > len(old[0]) or (fin and not old[1]):
                self.pending[seq] = (data, fin)
        return self._deliver()

    def _deliver(self) -> tuple[bytes, bool]:
        out = bytearray()
        progress = True
        while progress and not self.fin_done:
            progress = False
            for seq in list(self.pending):
                data, fin = self.pending[seq]
                old = seq_diff(self.next_seq, seq)   # bytes of this segment already delivered
                if old < 0:
                    continue                          # starts beyond a gap: keep waiting
                del self.pending[seq]
                progress = True
                if old > len(data):
                    continue                          # entirely old (including its FIN)
                new = data[old:]
                out += new
                self.next_seq = (self.next_seq + len(new)) % SEQ_MOD
                if fin:                               # the FIN sits right after the data
                    self.next_seq = (self.next_seq + 1) % SEQ_MOD
                    self.fin_done = True
                    self.pending.clear()
                    return bytes(out), True
        return bytes(out), False


@dataclass
class _Flow:
    """A connection being reassembled: its record plus one half-stream per direction."""

    conversation: Conversation
    client_isn: int | None  #: ISN of the client's SYN, to tell a retransmitted SYN from a new one
    halves: dict[str, _HalfStream] = field(
        default_factory=lambda: {"c2s": _HalfStream(), "s2c": _HalfStream()})
    fin_seen: bool = False

    def direction(self, src: Endpoint) -> Direction:
        return "c2s" if src == self.conversation.client else "s2c"


class Reassembler:
    """Feed segments in capture order; read ``capture`` at any time.

    Connections are told apart by their 4-tuple (RFC 9293 §3.2: a connection is identified by
    the pair of sockets).  The client is the sender of the SYN, or the first sender seen if the
    capture began mid-connection.  A new SYN on a 4-tuple whose connection is over starts a new
    conversation (port reuse).  A capture that begins mid-connection, with segments out of
    order, loses the bytes before the first segment seen: without the SYN the start of the
    stream is unknown.
    """

    def __init__(self, source: str = "") -> None:
        self.capture = Capture(source=source)
        self._flows: dict[tuple[Endpoint, Endpoint], _Flow] = {}

    def feed(self, seg: Segment) -> Chunk | None:
        """Take one segment; return the chunk of new in-order bytes it produced, if any."""
        flow = self._flow_for(seg)
        conv = flow.conversation
        direction = flow.direction(seg.src)
        half = flow.halves[direction]
        if seg.flags & TCPFlags.RST:
            self._on_reset(flow, half, direction, seg.time)
            return None
        seq = seg.seq
        if seg.flags & TCPFlags.SYN:
            seq = (seq + 1) % SEQ_MOD              # the SYN occupies one sequence number
            if half.next_seq is None:
                half.next_seq = seq
        data, fin = half.receive(seq, seg.payload, bool(seg.flags & TCPFlags.FIN))
        chunk = None
        if data:
            chunk = Chunk(seg.time, direction, data)
            conv.chunks.append(chunk)
        if fin:
            self._on_fin(flow, direction, seg.time)
        return chunk

    def _flow_for(self, seg: Segment) -> _Flow:
        key = (min(seg.src, seg.dst), max(seg.src, seg.dst))
        flow = self._flows.get(key)
        opening = seg.flags & (TCPFlags.SYN | TCPFlags.ACK) == TCPFlags.SYN
        if flow is not None and not (opening and seg.seq != flow.client_isn):
            return flow
        # a new connection: the first segment seen, or a fresh SYN reusing the 4-tuple
        if seg.flags & TCPFlags.SYN and seg.flags & TCPFlags.ACK:
            client, server = seg.dst, seg.src       # we missed the SYN; this is the answer
        else:
            client, server = seg.src, seg.dst
        conv = Conversation(id=len(self.capture.conversations), client=client, server=server,
                            start=seg.time)
        self.capture.conversations.append(conv)
        flow = _Flow(conv, client_isn=seg.seq if opening else None)
        self._flows[key] = flow
        return flow

    @staticmethod
    def _on_fin(flow: _Flow, direction: Direction, time: float) -> None:
        conv = flow.conversation
        if conv.closed_by is None and not flow.fin_seen and conv.end is None:
            conv.closed_by = direction
        flow.fin_seen = True
        if all(h.fin_done for h in flow.halves.values()) and conv.end is None:
            conv.end = time                           # both directions finished: closed

    @staticmethod
    def _on_reset(flow: _Flow, half: _HalfStream, direction: Direction, time: float) -> None:
        conv = flow.conversation
        other = flow.halves["s2c" if direction == "c2s" else "c2s"]
        if conv.end is None:
            conv.end, conv.reset = time, True
            if conv.closed_by is None:
                conv.closed_by = direction
        elif conv.reset and other.rst and not half.rst and not flow.fin_seen:
            conv.closed_by = None      # RSTs both ways, no FIN: the path was cut in the middle
        half.rst = True


def reassemble(segments: Iterable[Segment], source: str = "") -> Capture:
    """Reassemble a whole sequence of segments (in capture order) into a Capture."""
    r = Reassembler(source)
    for seg in segments:
        r.feed(seg)
    return r.capture
