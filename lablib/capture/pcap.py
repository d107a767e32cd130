"""pcap files: write a Capture with synthesized Ethernet/IP/TCP headers, read pcap and pcapng.

The relay records *byte streams*, not packets.  To open such a recording in Wireshark we invent
the packets a real TCP connection would have carried: a three-way handshake, one segment per
recorded chunk (each acknowledged by the peer), and the FIN exchange (or a RST) at the end.
Sequence numbers, lengths and checksums are all correct, so Wireshark's TCP analysis and its
WebSocket dissector work on the result.  Timestamps are the capture-relative times plus a fixed
base (:data:`EPOCH`), so the same Capture always gives the same file, byte for byte.

Every header is packed by hand with :mod:`struct`; each ``*_header`` function documents its
layout.  References:

* pcap: the libpcap file format, ``pcap-savefile(5)`` of libpcap / tcpdump.org, and
  draft-ietf-opsawg-pcap; link types from tcpdump.org's "LINK-LAYER HEADER TYPES";
* pcapng: draft-ietf-opsawg-pcapng (read only);
* Ethernet II (IEEE 802.3 type field), IPv4 (RFC 791), IPv6 (RFC 8200), TCP (RFC 9293),
  the Internet checksum (RFC 1071).

Reading goes the other way: pcap records -> link layer -> IP -> TCP
:class:`~lablib.capture.tcp.Segment` -> :class:`~lablib.capture.tcp.Reassembler`.  Anything
malformed raises :class:`~lablib.capture.records.CaptureError`, never another exception.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

from .records import Capture, CaptureError, Conversation, Direction
from .tcp import SEQ_MOD, Reassembler, Segment, TCPFlags

__all__ = [
    "EPOCH", "MSS", "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "LINKTYPE_LOOP",
    "LINKTYPE_LINUX_SLL", "LINKTYPE_LINUX_SLL2",
    "dumps_pcap", "write_pcap", "dump_frames", "synthesize", "internet_checksum",
    "read_pcap", "read_segments", "read_frames", "decode_frame", "Frame",
]

#: The fixed wall-clock base of synthesized captures (2023-11-14 22:13:20 UTC): time 0.0 of a
#: Capture is written as this Unix time, so files are deterministic.
EPOCH = 1_700_000_000

#: Largest TCP payload per synthesized segment: the IPv4 total length is a 16-bit field, so
#: 65535 - 20 (IPv4 header) - 20 (TCP header) = 65495 bytes (also the loopback MSS on Linux).
MSS = 65495

# Link-layer header types (tcpdump.org "LINK-LAYER HEADER TYPES")
LINKTYPE_NULL = 0          #: BSD loopback: 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET = 1      #: Ethernet II
LINKTYPE_RAW = 101         #: no link layer: the packet starts with the IPv4/IPv6 header
LINKTYPE_LOOP = 108        #: OpenBSD loopback: like NULL, family in network byte order
LINKTYPE_LINUX_SLL = 113   #: Linux "cooked" capture v1 (tcpdump -i any)
LINKTYPE_LINUX_SLL2 = 276  #: Linux "cooked" capture v2

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = (0x8100, 0x88A8)  # 802.1Q / 802.1ad tags: 4 more bytes before the type
IPPROTO_TCP = 6

PCAP_MAGIC_USEC = 0xA1B2C3D4   #: classic pcap, microsecond timestamps
PCAP_MAGIC_NSEC = 0xA1B23C4D   #: classic pcap, nanosecond timestamps
PCAPNG_SHB = 0x0A0D0D0A        #: pcapng Section Header Block type (also the file's magic)
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D

SNAPLEN = 262144               #: the snapshot length we write (tcpdump's default)
WINDOW = 65535                 #: the (unscaled) window field of synthesized segments
WINDOW_SCALE = 7               #: announced in the SYNs: the real window is 65535 << 7 ≈ 8 MiB


# ============================================================================================
# Building headers
# ============================================================================================

def internet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum of 16-bit words.

    The ones' complement sum of big-endian 16-bit words equals the whole buffer, read as one big
    integer, modulo 0xFFFF (because 2**16 ≡ 1 mod 0xFFFF — this is RFC 1071's "deferred carries"
    taken to the limit), except that a non-zero sum is written 0xFFFF rather than 0.
    """
    if len(data) % 2:
        data += b"\x00"                      # an odd byte is padded with a zero (RFC 1071 §1)
    n = int.from_bytes(data, "big")
    total = n % 0xFFFF
    if total == 0 and n != 0:
        total = 0xFFFF                       # ones' complement "negative zero"
    return ~total & 0xFFFF


def ethernet_header(ethertype: int, dst: bytes = bytes(6), src: bytes = bytes(6)) -> bytes:
    """Ethernet II header, 14 bytes: destination MAC (6), source MAC (6), EtherType (2).

    The loopback interface uses all-zero MAC addresses, so that is the default.
    """
    return struct.pack("!6s6sH", dst, src, ethertype)


def ipv4_header(src: bytes, dst: bytes, payload_len: int, ident: int, ttl: int = 64) -> bytes:
    """IPv4 header without options, 20 bytes (RFC 791 §3.1)::

        version(4) IHL(4) | DSCP/ECN(8) | total length(16)
        identification(16) | flags(3) fragment offset(13)
        TTL(8) | protocol(8) | header checksum(16)
        source address(32)
        destination address(32)

    Flags = DF (don't fragment, 0x4000), protocol = 6 (TCP).  The checksum covers the header only.
    """
    fields = [0x45, 0, 20 + payload_len, ident & 0xFFFF, 0x4000, ttl, IPPROTO_TCP, 0, src, dst]
    fields[7] = internet_checksum(struct.pack("!BBHHHBBH4s4s", *fields))
    return struct.pack("!BBHHHBBH4s4s", *fields)


def ipv6_header(src: bytes, dst: bytes, payload_len: int, hop_limit: int = 64) -> bytes:
    """IPv6 fixed header, 40 bytes (RFC 8200 §3)::

        version(4) traffic class(8) flow label(20)
        payload length(16) | next header(8) | hop limit(8)
        source address(128)
        destination address(128)

    No checksum: IPv6 leaves that to the upper layer.
    """
    return struct.pack("!IHBB16s16s", 6 << 28, payload_len, IPPROTO_TCP, hop_limit, src, dst)


def tcp_header(src_ip: bytes, dst_ip: bytes, sport: int, dport: int, seq: int, ack: int,
               flags: TCPFlags, payload: bytes = b"", options: bytes = b"",
               window: int = WINDOW) -> bytes:
    """TCP header, 20 bytes + options (RFC 9293 §3.1)::

        source port(16) | destination port(16)
        sequence number(32)
        acknowledgment number(32)
        data offset(4) reserved(4) | control bits(8) | window(16)
        checksum(16) | urgent pointer(16)
        options (padded to a multiple of 4 bytes)

    The checksum covers a *pseudo-header* (addresses, protocol, TCP length: RFC 9293 §3.1 for
    IPv4, RFC 8200 §8.1 for IPv6), the TCP header and the payload.
    """
    options += b"\x00" * (-len(options) % 4)            # pad with End-of-Option-List
    offset = (20 + len(options)) // 4
    ack = ack if flags & TCPFlags.ACK else 0
    header = struct.pack("!HHIIBBHHH", sport, dport, seq % SEQ_MOD, ack % SEQ_MOD,
                         offset << 4, int(flags), window, 0, 0) + options
    length = len(header) + len(payload)
    if len(src_ip) == 4:
        pseudo = struct.pack("!4s4sBBH", src_ip, dst_ip, 0, IPPROTO_TCP, length)
    else:
        pseudo = struct.pack("!16s16sI3xB", src_ip, dst_ip, length, IPPROTO_TCP)
    checksum = internet_checksum(pseudo + header + payload)
    return header[:16] + struct.pack("!H", checksum) + header[18:]


def syn_options(mss: int = MSS, window_scale: int = WINDOW_SCALE) -> bytes:
    """The options of our SYNs: MSS (kind 2, RFC 9293 §3.7.1), NOP, window scale (kind 3, RFC 7323)."""
    return struct.pack("!BBH", 2, 4, mss) + b"\x01" + struct.pack("!BBB", 3, 3, window_scale)


def pcap_global_header(linktype: int = LINKTYPE_ETHERNET, snaplen: int = SNAPLEN,
                       nanosecond: bool = False) -> bytes:
    """The 24-byte pcap file header (pcap-savefile(5)), written little-endian::

        magic number(32)   0xA1B2C3D4 (µs timestamps) or 0xA1B23C4D (ns); a reader seeing
                           the bytes swapped knows the file's byte order
        version major(16)  2
        version minor(16)  4
        thiszone(32)       0 (GMT offset, unused)
        sigfigs(32)        0 (timestamp accuracy, unused)
        snaplen(32)        the largest packet length stored
        network(32)        the link-layer header type (LINKTYPE_*)
    """
    magic = PCAP_MAGIC_NSEC if nanosecond else PCAP_MAGIC_USEC
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record_header(seconds: int, fraction: int, captured: int, original: int) -> bytes:
    """The 16-byte header before each packet: ts seconds, ts µs (or ns), captured and original length."""
    return struct.pack("<IIII", seconds, fraction, captured, original)


# ============================================================================================
# Writing: Capture -> packets -> pcap
# ============================================================================================

@dataclass
class _Endpoint:
    ip: bytes
    port: int
    seq: int           #: SND.NXT: the next sequence number this side sends
    ident: int = 0     #: IPv4 identification counter


class _ConversationWriter:
    """Invents the packets of one conversation, in order."""

    def __init__(self, conv: Conversation, isn: tuple[int, int]) -> None:
        c_ip, s_ip = _ip_bytes(conv.client[0]), _ip_bytes(conv.server[0])
        if len(c_ip) != len(s_ip):
            raise CaptureError(f"conversation {conv.id}: client and server IP versions differ")
        self.conv = conv
        self.ends = {"c2s": _Endpoint(c_ip, conv.client[1], isn[0]),
                     "s2c": _Endpoint(s_ip, conv.server[1], isn[1])}
        self.frames: list[tuple[float, bytes]] = []

    def packet(self, time: float, direction: Direction, flags: TCPFlags, payload: bytes = b"",
               options: bytes = b"") -> None:
        me = self.ends[direction]
        peer = self.ends["s2c" if direction == "c2s" else "c2s"]
        tcp = tcp_header(me.ip, peer.ip, me.port, peer.port, me.seq, peer.seq, flags, payload,
                         options)
        if len(me.ip) == 4:
            ip, ethertype = ipv4_header(me.ip, peer.ip, len(tcp) + len(payload), me.ident), ETHERTYPE_IPV4
        else:
            ip, ethertype = ipv6_header(me.ip, peer.ip, len(tcp) + len(payload)), ETHERTYPE_IPV6
        me.ident += 1
        # SYN and FIN each consume one sequence number (RFC 9293 §3.4)
        me.seq = (me.seq + len(payload) + bool(flags & (TCPFlags.SYN | TCPFlags.FIN))) % SEQ_MOD
        self.frames.append((time, ethernet_header(ethertype) + ip + tcp + payload))

    def build(self, acks: bool) -> list[tuple[float, bytes]]:
        conv, F = self.conv, TCPFlags
        # the three-way handshake (RFC 9293 §3.5), all at the conversation's start
        self.packet(conv.start, "c2s", F.SYN, options=syn_options())
        self.packet(conv.start, "s2c", F.SYN | F.ACK, options=syn_options())
        self.packet(conv.start, "c2s", F.ACK)
        for chunk in conv.chunks:
            for i in range(0, len(chunk.data), MSS):
                self.packet(chunk.time, chunk.direction, F.PSH | F.ACK, chunk.data[i:i + MSS])
                if acks:
                    self.packet(chunk.time, _other(chunk.direction), F.ACK)
        if conv.end is not None:
            self._close(conv.end)
        return self.frames

    def _close(self, time: float) -> None:
        conv, F = self.conv, TCPFlags
        first = conv.closed_by or "s2c"
        if conv.reset:
            self.packet(time, first, F.RST | F.ACK)
            if conv.closed_by is None:          # cut in the middle: both sides got a RST
                self.packet(time, _other(first), F.RST | F.ACK)
            return
        # FIN from the side that closed first, FIN from the other, final ACK (RFC 9293 §3.6)
        self.packet(time, first, F.FIN | F.ACK)
        self.packet(time, _other(first), F.FIN | F.ACK)
        self.packet(time, first, F.ACK)


def _other(direction: Direction) -> Direction:
    return "s2c" if direction == "c2s" else "c2s"


def _ip_bytes(host: str) -> bytes:
    try:
        return ipaddress.ip_address(host).packed
    except ValueError:
        raise CaptureError(f"cannot write {host!r} into an IP header: not an IP address") from None


def _default_isn(conv: Conversation) -> tuple[int, int]:
    # Deterministic initial sequence numbers.  Real stacks pick them unpredictably
    # (RFC 9293 §3.4.1, RFC 6528); a synthesized trace only needs them reproducible.
    return ((0x10000000 + conv.id * 0x10000) % SEQ_MOD, (0x80000000 + conv.id * 0x10000) % SEQ_MOD)


def synthesize(conv: Conversation, *, isn: tuple[int, int] | None = None,
               acks: bool = True) -> list[tuple[float, bytes]]:
    """The Ethernet frames of one conversation as ``(capture-relative time, frame)`` pairs.

    ``isn`` = (client ISN, server ISN) overrides the deterministic default; ``acks=False``
    leaves out the pure ACK that follows each data segment.
    """
    return _ConversationWriter(conv, isn or _default_isn(conv)).build(acks)


def dump_frames(frames: Iterable[tuple[float, bytes]], linktype: int = LINKTYPE_ETHERNET, *,
                epoch: int = 0, nanosecond: bool = False) -> bytes:
    """A pcap file of ready-made frames; each time is in seconds after ``epoch`` (Unix time)."""
    resolution = 10**9 if nanosecond else 10**6
    out = [pcap_global_header(linktype, nanosecond=nanosecond)]
    for time, frame in frames:
        units = epoch * resolution + round(time * resolution)
        seconds, fraction = divmod(units, resolution)
        if not 0 <= seconds < 2**32:
            raise CaptureError(f"timestamp {epoch} + {time} s does not fit a pcap record")
        out.append(pcap_record_header(seconds, fraction, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def dumps_pcap(capture: Capture, *, epoch: int = EPOCH, isn: tuple[int, int] | None = None,
               acks: bool = True, nanosecond: bool = False) -> bytes:
    """The pcap file (as bytes) of a Capture, with synthesized Ethernet/IP/TCP headers.

    Conversations are interleaved by time; within a conversation the packet order is kept.
    """
    per_conv = [synthesize(conv, isn=isn, acks=acks) for conv in capture.conversations]
    merged = heapq.merge(*per_conv, key=lambda frame: frame[0])
    return dump_frames(merged, LINKTYPE_ETHERNET, epoch=epoch, nanosecond=nanosecond)


def write_pcap(capture: Capture, dest: str | os.PathLike | BinaryIO, **options) -> None:
    """Write :func:`dumps_pcap` ``(capture, **options)`` to a path or a binary file object."""
    data = dumps_pcap(capture, **options)
    if hasattr(dest, "write"):
        dest.write(data)
    else:
        with open(dest, "wb") as f:
            f.write(data)


# ============================================================================================
# Reading: pcap / pcapng -> frames -> TCP segments -> Capture
# ============================================================================================

@dataclass(frozen=True, slots=True)
class Frame:
    """One packet record of a capture file."""

    seconds: int      #: timestamp: whole seconds (Unix time)
    fraction: int     #: timestamp: fraction, in units of 1/resolution second
    resolution: int   #: 10**6 for µs, 10**9 for ns, or any pcapng if_tsresol
    linktype: int
    data: bytes       #: the captured bytes
    original_length: int  #: the length on the wire (more than len(data) if truncated)


def _load(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "pcap:<bytes>"
    if hasattr(source, "read"):
        return source.read(), f"pcap:{getattr(source, 'name', '<file>')}"
    with open(source, "rb") as f:
        return f.read(), f"pcap:{os.path.basename(os.fspath(source))}"


def read_frames(source) -> Iterator[Frame]:
    """The packet records of a pcap or pcapng file (path, bytes or binary file object)."""
    data, _ = _load(source)
    return _frames(data)


def _frames(data: bytes) -> Iterator[Frame]:
    if len(data) < 4:
        raise CaptureError("not a capture file: shorter than any pcap header")
    if int.from_bytes(data[:4], "little") == PCAPNG_SHB:
        return _pcapng_frames(data)
    return _pcap_frames(data)


def _pcap_frames(data: bytes) -> Iterator[Frame]:
    for order in "<>":
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
            break
    else:
        raise CaptureError(f"not a pcap file: magic number {data[:4].hex()}")
    if len(data) < 24:
        raise CaptureError("pcap file header truncated")
    resolution = 10**9 if magic == PCAP_MAGIC_NSEC else 10**6
    major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack_from(order + "HHiIII", data, 4)
    if major != 2:
        raise CaptureError(f"pcap version {major} is not supported (only 2.x)")
    linktype = network & 0xFFFF          # the upper bits may hold FCS information
    return _pcap_records(data, order, resolution, linktype)


def _pcap_records(data: bytes, order: str, resolution: int, linktype: int) -> Iterator[Frame]:
    offset, number = 24, 0
    while offset < len(data):
        number += 1
        if offset + 16 > len(data):
            raise CaptureError(f"record {number}: header truncated at byte {offset}")
        seconds, fraction, captured, original = struct.unpack_from(order + "IIII", data, offset)
        offset += 16
        if offset + captured > len(data):
            raise CaptureError(f"record {number}: {captured} bytes announced, file ends first")
        if fraction >= resolution:
            raise CaptureError(f"record {number}: timestamp fraction {fraction} out of range")
        yield Frame(seconds, fraction, resolution, linktype, data[offset:offset + captured], original)
        offset += captured


def _pcapng_frames(data: bytes) -> Iterator[Frame]:
    """pcapng: a sequence of blocks ``type(32) total length(32) body ... total length(32)``.

    We use the Section Header (byte order), Interface Description (link type, timestamp
    resolution), Enhanced Packet and Simple Packet blocks, and skip every other block.
    """
    offset, order = 0, "<"
    interfaces: list[tuple[int, int, int]] = []  # (linktype, snaplen, resolution)
    last_time = (0, 0, 10**6)
    while offset < len(data):
        if offset + 12 > len(data):
            raise CaptureError(f"pcapng block at byte {offset} truncated")
        if int.from_bytes(data[offset:offset + 4], "little") == PCAPNG_SHB:
            magic = data[offset + 8:offset + 12]
            if magic == PCAPNG_BYTE_ORDER_MAGIC.to_bytes(4, "little"):
                order = "<"
            elif magic == PCAPNG_BYTE_ORDER_MAGIC.to_bytes(4, "big"):
                order = ">"
            else:
                raise CaptureError(f"pcapng section header at byte {offset}: bad byte-order magic")
            interfaces = []                       # interface ids are per section
        block_type, length = struct.unpack_from(order + "II", data, offset)
        if length < 12 or length % 4 or offset + length > len(data):
            raise CaptureError(f"pcapng block at byte {offset}: bad length {length}")
        body = data[offset + 8:offset + length - 4]
        offset += length
        if block_type == 1:                          # Interface Description Block
            interfaces.append(_pcapng_interface(body, order))
        elif block_type == 6:                        # Enhanced Packet Block
            frame = _pcapng_enhanced_packet(body, order, interfaces)
            last_time = (frame.seconds, frame.fraction, frame.resolution)
            yield frame
        elif block_type == 3:                        # Simple Packet Block: no timestamp
            if not interfaces or len(body) < 4:
                raise CaptureError("pcapng simple packet block without interface or length")
            linktype, snaplen, _ = interfaces[0]
            original = struct.unpack_from(order + "I", body)[0]
            captured = min(original, snaplen or original, len(body) - 4)
            yield Frame(*last_time[:2], last_time[2], linktype, body[4:4 + captured], original)


def _pcapng_interface(body: bytes, order: str) -> tuple[int, int, int]:
    if len(body) < 8:
        raise CaptureError("pcapng interface description block truncated")
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body)
    resolution = 10**6                              # default: microseconds
    for code, value in _pcapng_options(body[8:], order):
        if code == 9 and len(value) >= 1:           # if_tsresol
            exponent = value[0] & 0x7F
            if exponent > 30:
                raise CaptureError(f"pcapng if_tsresol {value[0]:#x} out of range")
            resolution = 2**exponent if value[0] & 0x80 else 10**exponent
    return linktype, snaplen, resolution


def _pcapng_options(data: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        code, length = struct.unpack_from(order + "HH", data, offset)
        if code == 0:                                # opt_endofopt
            return
        yield code, data[offset + 4:offset + 4 + length]
        offset += 4 + length + (-length % 4)


def _pcapng_enhanced_packet(body: bytes, order: str, interfaces) -> Frame:
    if len(body) < 20:
        raise CaptureError("pcapng enhanced packet block truncated")
    iface, high, low, captured, original = struct.unpack_from(order + "IIIII", body)
    if iface >= len(interfaces):
        raise CaptureError(f"pcapng packet refers to unknown interface {iface}")
    if 20 + captured > len(body):
        raise CaptureError("pcapng packet data longer than its block")
    linktype, _snaplen, resolution = interfaces[iface]
    seconds, fraction = divmod((high << 32) | low, resolution)
    return Frame(seconds, fraction, resolution, linktype, body[20:20 + captured], original)


# --- link layer -> IP -> TCP ----------------------------------------------------------------

def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    """Strip the link-layer header; None if the frame does not carry IPv4/IPv6."""
    if linktype == LINKTYPE_ETHERNET:
        offset = 12
        ethertype = int.from_bytes(frame[offset:offset + 2], "big") if len(frame) >= 14 else None
        while ethertype in ETHERTYPE_VLAN and len(frame) >= offset + 8:
            offset += 4
            ethertype = int.from_bytes(frame[offset:offset + 2], "big")
        if ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            return None
        packet = frame[offset + 2:]
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        packet = frame[4:]            # the family's byte order varies; the IP version tells
    elif linktype == LINKTYPE_RAW:
        packet = frame
    elif linktype == LINKTYPE_LINUX_SLL:
        # packet type(16) ARPHRD(16) address length(16) address(64) protocol(16)
        if len(frame) < 16 or int.from_bytes(frame[14:16], "big") not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            return None
        packet = frame[16:]
    elif linktype == LINKTYPE_LINUX_SLL2:
        # protocol(16) reserved(16) interface index(32) ARPHRD(16) packet type(8) addr len(8) addr(64)
        if len(frame) < 20 or int.from_bytes(frame[0:2], "big") not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            return None
        packet = frame[20:]
    else:
        raise CaptureError(f"link type {linktype} is not supported "
                           "(Ethernet, NULL, LOOP, RAW, Linux SLL and SLL2 are)")
    return packet if packet and packet[0] >> 4 in (4, 6) else None


def _tcp_in_ip(packet: bytes, truncated: bool, number: int) -> tuple[str, str, bytes] | None:
    """(source address, destination address, TCP segment) or None if not a whole TCP segment."""
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            raise CaptureError(f"packet {number}: IPv4 header truncated")
        ihl = (packet[0] & 0x0F) * 4
        total, frag, proto = struct.unpack_from("!H2xHxB", packet, 2)
        if proto != IPPROTO_TCP or frag & 0x3FFF:   # not TCP, or a fragment (MF or offset)
            return None
        src, dst, start = packet[12:16], packet[16:20], ihl
        if ihl < 20 or total < ihl:
            raise CaptureError(f"packet {number}: bad IPv4 header/total length {ihl}/{total}")
    else:
        if len(packet) < 40:
            raise CaptureError(f"packet {number}: IPv6 header truncated")
        payload_len, next_header = struct.unpack_from("!HB", packet, 4)
        if next_header != IPPROTO_TCP:              # extension headers are not followed here
            return None
        src, dst, start, total = packet[8:24], packet[24:40], 40, 40 + payload_len
    if total > len(packet):
        if truncated:
            raise CaptureError(f"packet {number} was cut to the snapshot length: "
                               "capture again with a larger snaplen (tcpdump -s 0)")
        raise CaptureError(f"packet {number}: IP length {total} exceeds the {len(packet)} bytes captured")
    return (str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), packet[start:total])


def _segment(time: float, src: str, dst: str, tcp: bytes, number: int) -> Segment:
    if len(tcp) < 20:
        raise CaptureError(f"packet {number}: TCP header truncated")
    sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", tcp)
    header_len = (offset >> 4) * 4
    if not 20 <= header_len <= len(tcp):
        raise CaptureError(f"packet {number}: bad TCP data offset {header_len}")
    return Segment(time, (src, sport), (dst, dport), seq, ack, TCPFlags(flags), tcp[header_len:],
                   window)


def decode_frame(linktype: int, data: bytes, time: float, *, truncated: bool = False,
                 number: int = 0) -> Segment | None:
    """The TCP segment inside one captured frame, or None if it carries no TCP.

    ``truncated``: the frame was cut to the snapshot length (an error if the cut hits TCP).
    ``number`` is the packet's position, for error messages.
    """
    packet = _ip_packet(linktype, data)
    if packet is None:
        return None
    found = _tcp_in_ip(packet, truncated, number)
    if found is None:
        return None
    return _segment(time, *found, number)


def _segments(frames: Iterable[Frame], t0: float | None) -> Iterator[Segment]:
    base: tuple[int, float] | None = None
    if t0 is not None:
        base = (math.floor(t0), t0 - math.floor(t0))
    for number, frame in enumerate(frames, 1):
        if base is None:
            base = (frame.seconds, frame.fraction / frame.resolution)
        # integer seconds apart first: a float of a Unix time has only ~0.2 µs precision
        time = (frame.seconds - base[0]) + (frame.fraction / frame.resolution - base[1])
        seg = decode_frame(frame.linktype, frame.data, time, number=number,
                           truncated=len(frame.data) < frame.original_length)
        if seg is not None:
            yield seg


def read_segments(source, *, t0: float | None = None) -> list[Segment]:
    """Every TCP segment of a pcap/pcapng file, in file order (no reassembly).

    Times are seconds after ``t0`` (Unix time), by default after the first packet — like
    Wireshark's "seconds since beginning of capture".
    """
    data, _ = _load(source)
    return list(_segments(_frames(data), t0))


def read_pcap(source, *, t0: float | None = None) -> Capture:
    """Read a pcap or pcapng file (path, bytes or binary file) into a reassembled Capture.

    Non-TCP packets are skipped.  ``t0``: see :func:`read_segments`; pass ``t0=EPOCH`` to get
    back the exact times of a Capture written by :func:`dumps_pcap`.
    Raises :class:`CaptureError` if the file is malformed.
    """
    data, name = _load(source)
    reassembler = Reassembler(source=name)
    for seg in _segments(_frames(data), t0):
        reassembler.feed(seg)
    return reassembler.capture
