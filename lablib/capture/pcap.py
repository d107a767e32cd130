"""pcap files: write a Capture as synthesized Ethernet/IP/TCP packets, read pcap and pcapng.

The relay records *byte streams*, not packets.  To open such a recording in Wireshark we invent
the packets a real TCP connection would have carried: a three-way handshake, one segment per
recorded chunk (each acknowledged by the peer), and the FIN exchange (or a RST) at the end.
Sequence numbers, lengths and checksums are all correct, so Wireshark's TCP analysis and its
WebSocket dissector work on the result.  Timestamps are the capture-relative times plus a fixed
base (:data:`EPOCH`), so the same Capture always gives the same file, byte for byte.

scapy does the packet and file work: it builds the headers and computes the checksums
(``Ether() / IP() / TCP()``), writes pcap records (``RawPcapWriter``), reads pcap and pcapng
(``RawPcapReader`` picks the format from the magic number) and decodes the link layers
(Ethernet with 802.1Q/802.1ad VLAN tags, Linux cooked captures v1 and v2, raw IP).  What is
ours: the invented conversation (:class:`_ConversationWriter`), the deterministic timestamps and
sequence numbers, the reassembly (:mod:`.tcp`), and the checks that turn a damaged file into a
:class:`~lablib.capture.records.CaptureError` saying what is wrong — never another exception.

References: pcap: ``pcap-savefile(5)`` and draft-ietf-opsawg-pcap; pcapng:
draft-ietf-opsawg-pcapng; link types: tcpdump.org's "LINK-LAYER HEADER TYPES"; Ethernet II,
IPv4 (RFC 791), IPv6 (RFC 8200), TCP (RFC 9293), the Internet checksum (RFC 1071).
"""

from __future__ import annotations

import gzip
import heapq
import io
import ipaddress
import math
import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

from scapy.error import Scapy_Exception
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv46
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Packet
from scapy.utils import RawPcapNgReader, RawPcapReader, RawPcapWriter, checksum

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

SNAPLEN = 262144               #: the snapshot length we write (tcpdump's default)
WINDOW = 65535                 #: the (unscaled) window field of synthesized segments
WINDOW_SCALE = 7               #: announced in the SYNs: the real window is 65535 << 7 ≈ 8 MiB
LOOPBACK_MAC = "00:00:00:00:00:00"  #: the loopback interface's Ethernet address
TTL = 64                       #: IPv4 TTL / IPv6 hop limit of synthesized packets (Linux default)
TCP_PROTO = 6                  #: the IP protocol number of TCP


def internet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum of 16-bit
    words, an odd last byte padded with a zero.  scapy computes it (``scapy.utils.checksum``)
    for every IP header and TCP segment we build."""
    return checksum(data)


# ============================================================================================
# Writing: Capture -> packets -> pcap
# ============================================================================================

def syn_options(mss: int = MSS, window_scale: int = WINDOW_SCALE) -> list[tuple[str, int | None]]:
    """The options of our SYNs, as scapy names them: MSS (kind 2, RFC 9293 §3.7.1), NOP, window
    scale (kind 3, RFC 7323) — 8 bytes, so no padding."""
    return [("MSS", mss), ("NOP", None), ("WScale", window_scale)]


@dataclass
class _Endpoint:
    ip: str
    port: int
    seq: int           #: SND.NXT: the next sequence number this side sends
    ident: int = 0     #: IPv4 identification counter


class _ConversationWriter:
    """Invents the packets of one conversation, in order."""

    def __init__(self, conv: Conversation, isn: tuple[int, int]) -> None:
        c_ip, s_ip = _ip_address(conv.client[0]), _ip_address(conv.server[0])
        if c_ip.version != s_ip.version:
            raise CaptureError(f"conversation {conv.id}: client and server IP versions differ")
        self.conv = conv
        self.version = c_ip.version
        self.ends = {"c2s": _Endpoint(str(c_ip), conv.client[1], isn[0] % SEQ_MOD),
                     "s2c": _Endpoint(str(s_ip), conv.server[1], isn[1] % SEQ_MOD)}
        self.frames: list[tuple[float, bytes]] = []

    def packet(self, time: float, direction: Direction, flags: TCPFlags, payload: bytes = b"",
               options: list | None = None) -> None:
        """One segment from ``direction``'s sender, acknowledging all the peer has sent."""
        me = self.ends[direction]
        peer = self.ends[_other(direction)]
        if self.version == 4:       # DF set, as Linux does on TCP (no fragmentation)
            ip = IP(src=me.ip, dst=peer.ip, id=me.ident & 0xFFFF, flags="DF", ttl=TTL)
        else:
            ip = IPv6(src=me.ip, dst=peer.ip, hlim=TTL)
        tcp = TCP(sport=me.port, dport=peer.port, seq=me.seq,
                  ack=peer.seq if flags & TCPFlags.ACK else 0,
                  flags=int(flags), window=WINDOW, options=options or [])
        packet = Ether(dst=LOOPBACK_MAC, src=LOOPBACK_MAC) / ip / tcp
        if payload:
            packet /= payload
        me.ident += 1
        # SYN and FIN each consume one sequence number (RFC 9293 §3.4)
        me.seq = (me.seq + len(payload) + bool(flags & (TCPFlags.SYN | TCPFlags.FIN))) % SEQ_MOD
        self.frames.append((time, bytes(packet)))  # bytes(): lengths and checksums filled in

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


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # checked here: scapy would resolve a host name, and we want no DNS in a file writer
    try:
        return ipaddress.ip_address(host)
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
    """A pcap file of ready-made frames; each time is in seconds after ``epoch`` (Unix time).

    Written little-endian, with µs (or ns) timestamps and a snapshot length of 256 KiB.
    """
    resolution = 10**9 if nanosecond else 10**6
    out = io.BytesIO()
    writer = RawPcapWriter(out, endianness="<", nano=nanosecond, snaplen=SNAPLEN)
    writer.linktype = linktype     # set after: scapy reads linktype=0 (NULL) as "not given"
    writer.write_header(None)
    for time, frame in frames:
        # the timestamp in whole units first: a float of a Unix time has only ~0.2 µs precision
        units = epoch * resolution + round(time * resolution)
        seconds, fraction = divmod(units, resolution)
        if not 0 <= seconds < 2**32:
            raise CaptureError(f"timestamp {epoch} + {time} s does not fit a pcap record")
        writer.write_packet(frame, sec=seconds, usec=fraction)
    return out.getvalue()


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
    write_bytes(dumps_pcap(capture, **options), dest)


def write_bytes(data: bytes, dest: str | os.PathLike | BinaryIO) -> None:
    """Write a finished file to a path or a binary file object (the sniffer uses it too)."""
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
        data, name = bytes(source), "pcap:<bytes>"
    elif hasattr(source, "read"):
        data, name = source.read(), f"pcap:{getattr(source, 'name', '<file>')}"
    else:
        with open(source, "rb") as f:
            data, name = f.read(), f"pcap:{os.path.basename(os.fspath(source))}"
    if data[:2] == b"\x1f\x8b":            # gzip magic: a .pcap.gz / .pcapng.gz
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(f"not a capture file: a damaged gzip file ({exc})") from None
    return data, name


class _File(io.BytesIO):
    """The file in memory, noting the first read that came back short: scapy's readers take a
    record or block cut off by the end of the file as the end of the capture, silently."""

    cut_at: int | None = None

    def read(self, size: int | None = -1, /) -> bytes:
        start = self.tell()
        data = super().read(size)
        if self.cut_at is None and size is not None and 0 < len(data) < size:
            self.cut_at = start
        return data


def read_frames(source) -> Iterator[Frame]:
    """The packet records of a pcap or pcapng file (path, bytes or binary file object)."""
    data, _ = _load(source)
    return _frames(data)


def _frames(data: bytes) -> Iterator[Frame]:
    file = _File(data)
    try:
        reader = RawPcapReader(file)       # or a RawPcapNgReader: scapy looks at the magic
    except Scapy_Exception as exc:
        raise CaptureError(f"not a pcap file (nor pcapng), or its header is cut short: "
                           f"magic number {data[:4].hex()} ({exc})") from None
    return _records(reader, file, len(data))


def _records(reader: RawPcapReader, file: _File, size: int) -> Iterator[Frame]:
    number, last_time = 0, (0, 0, 10**6)
    while True:
        try:
            # not `for data, meta in reader`: scapy's iterator cuts every record to 65535
            # bytes (its MTU), and our frames reach 14 + 65535
            data, meta = reader._read_packet(SNAPLEN)
        except EOFError:
            break
        except (Scapy_Exception, struct.error) as exc:
            raise CaptureError(f"record {number + 1}: {exc}") from None
        number += 1
        if file.cut_at is not None:
            break
        frame = _frame(reader, data, meta, last_time, number)
        last_time = frame.seconds, frame.fraction, frame.resolution
        yield frame
    if file.cut_at is not None:
        raise CaptureError(f"the file ends inside a record (at byte {file.cut_at}); "
                           "was it copied while still being written?")
    if file.tell() < size:
        raise CaptureError(f"record {number + 1}: malformed (bad length or byte-order field) "
                           f"at byte {file.tell()}")


def _frame(reader: RawPcapReader, data: bytes, meta, last_time: tuple[int, int, int],
           number: int) -> Frame:
    """A Frame from the record scapy read: the two formats give their timestamps differently."""
    if isinstance(reader, RawPcapNgReader):
        if meta.tshigh is None:                 # a Simple Packet Block has no timestamp
            return Frame(*last_time, meta.linktype, data, meta.wirelen)
        seconds, fraction = divmod((meta.tshigh << 32) | meta.tslow, meta.tsresol)
        return Frame(seconds, fraction, meta.tsresol, meta.linktype, data, meta.wirelen)
    resolution = 10**9 if reader.nano else 10**6
    if meta.usec >= resolution:
        raise CaptureError(f"record {number}: timestamp fraction {meta.usec} out of range")
    linktype = reader.linktype & 0xFFFF        # the upper bits may hold FCS information
    return Frame(meta.sec, meta.usec, resolution, linktype, data, meta.wirelen)


# --- link layer -> IP -> TCP ----------------------------------------------------------------

#: The scapy layer that decodes each link type we read.  NULL and LOOP are absent: their 4-byte
#: address family comes in either byte order with OS-specific values for IPv6 (24, 28, 30...),
#: which scapy's ``Loopback`` only knows for the OS it runs on; like Wireshark we skip the 4
#: bytes and let the IP version tell (scapy's ``IPv46``).
LINK_LAYERS: dict[int, type[Packet]] = {
    LINKTYPE_ETHERNET: Ether,              # 802.1Q / 802.1ad VLAN tags decoded on the way
    LINKTYPE_RAW: IPv46,
    LINKTYPE_LINUX_SLL: CookedLinux,
    LINKTYPE_LINUX_SLL2: CookedLinuxV2,
}


def _ip_layer(linktype: int, frame: bytes) -> IP | IPv6 | None:
    """The first IPv4/IPv6 header of a frame, decoded by scapy; None if there is none."""
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        layer, frame = IPv46, frame[4:]
        if not frame:
            return None
    elif linktype in LINK_LAYERS:
        layer = LINK_LAYERS[linktype]
    else:
        raise CaptureError(f"link type {linktype} is not supported "
                           "(Ethernet, NULL, LOOP, RAW, Linux SLL and SLL2 are)")
    try:
        packet = layer(frame)
    except Exception:          # scapy's own readers do the same: undecodable = not for us
        return None
    while packet and not isinstance(packet, (IP, IPv6)):
        packet = packet.payload
    if not packet or packet.version != (6 if isinstance(packet, IPv6) else 4):
        return None                        # no IP, or an EtherType that lies about it
    return packet


def _tcp_bytes(ip: IP | IPv6, truncated: bool, number: int) -> bytes | None:
    """The TCP segment an IP header carries, checked against the bytes captured; None if it
    carries no whole TCP segment (another protocol, a fragment, an IPv6 extension header)."""
    captured = len(ip.original)
    if isinstance(ip, IPv6):
        if captured < 40:
            raise CaptureError(f"packet {number}: IPv6 header truncated")
        if ip.nh != TCP_PROTO:             # extension headers are not followed here
            return None
        start, total = 40, 40 + ip.plen
    else:
        if captured < 20:
            raise CaptureError(f"packet {number}: IPv4 header truncated")
        if ip.proto != TCP_PROTO or ip.flags.MF or ip.frag:
            return None
        start, total = ip.ihl * 4, ip.len
        if start < 20 or total < start:
            raise CaptureError(f"packet {number}: bad IPv4 header/total length {start}/{total}")
    if total > captured:
        if truncated:
            raise CaptureError(f"packet {number} was cut to the snapshot length: "
                               "capture again with a larger snaplen (tcpdump -s 0)")
        raise CaptureError(f"packet {number}: IP length {total} exceeds the {captured} bytes captured")
    return ip.original[start:total]


def decode_frame(linktype: int, data: bytes, time: float, *, truncated: bool = False,
                 number: int = 0) -> Segment | None:
    """The TCP segment inside one captured frame, or None if it carries no TCP.

    ``truncated``: the frame was cut to the snapshot length (an error if the cut hits TCP).
    ``number`` is the packet's position, for error messages.
    """
    ip = _ip_layer(linktype, data)
    if ip is None:
        return None
    segment = _tcp_bytes(ip, truncated, number)
    if segment is None:
        return None
    if len(segment) < 20:
        raise CaptureError(f"packet {number}: TCP header truncated")
    tcp = ip.payload
    if not isinstance(tcp, TCP):
        raise CaptureError(f"packet {number}: the TCP header does not decode")
    header_len = tcp.dataofs * 4
    if not 20 <= header_len <= len(segment):
        raise CaptureError(f"packet {number}: bad TCP data offset {header_len}")
    return Segment(time, (ip.src, tcp.sport), (ip.dst, tcp.dport), tcp.seq, tcp.ack,
                   TCPFlags(int(tcp.flags)), segment[header_len:], tcp.window)


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
