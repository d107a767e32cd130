"""lablib.capture.pcap: synthesized pcap files, and reading pcap/pcapng in every common shape."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.capture import pcap
from lablib.capture.pcap import (EPOCH, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
                                 LINKTYPE_NULL, LINKTYPE_RAW, MSS, dump_frames, dumps_pcap,
                                 internet_checksum, read_frames, read_pcap, read_segments)
from lablib.capture.records import Capture, CaptureError, Chunk, Conversation
from lablib.errors import LablibError
from lablib.capture.tcp import TCPFlags

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed "
                                  "(apt-get install -y --no-install-recommends tshark)")


def sample_capture() -> Capture:
    return Capture([
        Conversation(0, ("127.0.0.1", 50000), ("127.0.0.1", 8765), [
            Chunk(0.25, "c2s", b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"),
            Chunk(0.5, "s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
            Chunk(0.75, "c2s", b"more"),
        ], start=0.125, end=1.0, closed_by="s2c"),
        Conversation(1, ("::1", 50001), ("::1", 8765), [Chunk(0.3, "c2s", b"v6")],
                     start=0.2, end=1.5, reset=True, closed_by=None),
        Conversation(2, ("127.0.0.1", 50002), ("127.0.0.1", 8765), [], start=0.4),
    ], source="relay")


def assert_same(a: Capture, b: Capture) -> None:
    """Same conversations, chunks and close details; times equal to the microsecond."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.id, x.client, x.server) == (y.id, y.client, y.server)
        assert (x.closed_by, x.reset, x.end is None) == (y.closed_by, y.reset, y.end is None)
        assert x.start == pytest.approx(y.start, abs=1e-6)
        if x.end is not None:
            assert x.end == pytest.approx(y.end, abs=1e-6)
        assert [(c.direction, c.data) for c in x.chunks] == [(c.direction, c.data) for c in y.chunks]
        assert [c.time for c in x.chunks] == pytest.approx([c.time for c in y.chunks], abs=1e-6)


# --- headers ---------------------------------------------------------------------------------

def test_internet_checksum_rfc1071_example():
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with end-around carry)
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000      # the sum is "negative zero" 0xFFFF
    assert internet_checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length: padded with a zero


def test_synthesized_packets_have_the_checksums_scapy_computes():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    frames = [f for conv in sample_capture() for _, f in pcap.synthesize(conv)]
    assert len(frames) == 3 + 2 * 3 + 3 + (3 + 2 + 2) + 3
    for frame in frames:
        p = Ether(frame)
        ours = p[TCP].chksum, p[IP].chksum if IP in p else None
        del p[TCP].chksum
        if IP in p:
            del p[IP].chksum
        again = Ether(bytes(p))
        assert (again[TCP].chksum, again[IP].chksum if IP in again else None) == ours
        assert (IP in p) or (IPv6 in p)


def test_synthesized_frames_exact_bytes():
    """The frames scapy builds, byte for byte (the same bytes the hand-packed writer made)."""
    conv = Conversation(0, ("127.0.0.1", 50000), ("127.0.0.1", 8080), [Chunk(0.5, "c2s", b"hi")],
                        start=0.25)
    frames = pcap.synthesize(conv)
    eth = "000000000000" "000000000000" "0800"           # loopback MACs, IPv4
    assert frames[0] == (0.25, bytes.fromhex(
        eth + "4500 0030 0000 4000 4006 3cc6 7f000001 7f000001"      # DF, TTL 64, TCP
        "c350 1f90 10000000 00000000 7002 ffff 9911 0000"            # SYN, 28 header bytes
        "0204ffd7 01 030307"))                                       # MSS 65495, NOP, WS 7
    assert frames[3] == (0.5, bytes.fromhex(
        eth + "4500 002a 0002 4000 4006 3cca 7f000001 7f000001"
        "c350 1f90 10000001 80000001 5018 ffff d67b 0000" "6869"))   # PSH|ACK "hi"
    v6 = Conversation(1, ("::1", 50001), ("::1", 8080), [Chunk(0.5, "s2c", b"v6")], start=0.25)
    assert pcap.synthesize(v6)[3] == (0.5, bytes.fromhex(
        "000000000000" "000000000000" "86dd"
        "6000 0000 0016 06 40" + "00" * 15 + "01" + "00" * 15 + "01"   # hop limit 64
        "1f90 c351 80010001 10010001 5018 ffff c6ac 0000" "7636"))


def test_handshake_data_and_close_sequence_numbers():
    conv = sample_capture().conversations[0]
    segs = read_segments(dump_frames(pcap.synthesize(conv, isn=(1000, 2000))))
    F = TCPFlags
    summary = [(s.src[1], s.flags, s.seq, s.ack, len(s.payload)) for s in segs]
    assert summary[:3] == [(50000, F.SYN, 1000, 0, 0), (8765, F.SYN | F.ACK, 2000, 1001, 0),
                           (50000, F.ACK, 1001, 2001, 0)]
    assert summary[3:5] == [(50000, F.PSH | F.ACK, 1001, 2001, 31), (8765, F.ACK, 2001, 1032, 0)]
    # client sent 31 + 4 bytes, server 40; the server closes first: FIN, FIN, ACK — each FIN
    # takes one sequence number
    assert summary[-3:] == [(8765, F.FIN | F.ACK, 2041, 1036, 0), (50000, F.FIN | F.ACK, 1036, 2042, 0),
                            (8765, F.ACK, 2042, 1037, 0)]


def test_output_is_deterministic():
    assert dumps_pcap(sample_capture()) == dumps_pcap(sample_capture())
    assert dumps_pcap(sample_capture())[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0,
                                                            262144, LINKTYPE_ETHERNET)


def test_first_packet_time_is_epoch_plus_start():
    first = next(iter(read_frames(dumps_pcap(sample_capture()))))
    assert (first.seconds, first.fraction, first.resolution) == (EPOCH, 125000, 10**6)


# --- round trip ---------------------------------------------------------------------------------

def test_round_trip_sample(tmp_path):
    path = tmp_path / "sample.pcap"
    pcap.write_pcap(sample_capture(), path)
    back = read_pcap(path, t0=EPOCH)
    assert back.source == "pcap:sample.pcap"
    assert_same(sample_capture(), back)
    # without t0, times count from the first packet, like Wireshark's default view
    assert read_pcap(path).conversations[0].start == 0.0


def test_round_trip_nanosecond_pcap_keeps_nanoseconds():
    cap = Capture([Conversation(0, ("10.1.1.1", 1), ("10.1.1.2", 2),
                                [Chunk(1.000000001, "c2s", b"x")], start=1e-9)])
    back = read_pcap(dumps_pcap(cap, nanosecond=True), t0=EPOCH)
    assert back.conversations[0].chunks[0].time == pytest.approx(1.000000001, abs=1e-12)


def test_big_chunk_is_split_at_the_mss_and_wraps_sequence_numbers():
    data = bytes(range(256)) * 600                         # 153600 bytes: 3 segments
    cap = Capture([Conversation(0, ("127.0.0.1", 1234), ("127.0.0.1", 80),
                                [Chunk(1.0, "s2c", data)], start=0.0, end=2.0, closed_by="c2s")])
    raw = dumps_pcap(cap, isn=(2**32 - 10, 2**32 - 70000))
    lengths = [len(s.payload) for s in read_segments(raw) if s.payload]
    assert lengths == [MSS, MSS, len(data) - 2 * MSS]
    back = read_pcap(raw, t0=EPOCH).conversations[0]
    assert back.data("s2c") == data
    assert (back.end, back.closed_by) == (2.0, "c2s")


addresses = st.one_of(st.just(("127.0.0.1", "127.0.0.1")), st.just(("::1", "::1")),
                      st.tuples(st.ip_addresses(v=4).map(str), st.ip_addresses(v=4).map(str)))


@st.composite
def captures(draw):
    conversations, t = [], 0.0
    ports = draw(st.lists(st.integers(1024, 65535), min_size=0, max_size=4, unique=True))
    for i, port in enumerate(ports):
        t += draw(st.integers(0, 10**6)) / 1e6
        start, chunks = t, []
        for _ in range(draw(st.integers(0, 6))):
            t += draw(st.integers(0, 10**6)) / 1e6
            chunks.append(Chunk(t, draw(st.sampled_from(["c2s", "s2c"])),
                                draw(st.binary(min_size=1, max_size=300))))
        client_ip, server_ip = draw(addresses)
        # Two different endpoints: in a connection from one endpoint to itself, no segment
        # says which way it went, so its FIN cannot be told apart from the peer's.
        server_port = draw(st.integers(1, 65535).filter(
            lambda p, client=(client_ip, port), ip=server_ip: (ip, p) != client))
        conv = Conversation(i, (client_ip, port), (server_ip, server_port), chunks, start=start)
        if draw(st.booleans()):
            conv.end = t + draw(st.integers(0, 10**6)) / 1e6
            conv.reset = draw(st.booleans())
            conv.closed_by = draw(st.sampled_from(["c2s", "s2c", None] if conv.reset else ["c2s", "s2c"]))
        conversations.append(conv)
    return Capture(conversations, source="relay")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(captures(), st.booleans(), st.one_of(st.none(), st.tuples(st.integers(0, 2**32 - 1),
                                                                  st.integers(0, 2**32 - 1))))
def test_round_trip_random_captures(cap, acks, isn):
    assert_same(cap, read_pcap(dumps_pcap(cap, acks=acks, isn=isn), t0=EPOCH))


# --- reading other formats ----------------------------------------------------------------------

def _relink(frame: bytes, linktype: int) -> bytes:
    """Re-wrap one of our Ethernet frames in another link layer."""
    ethertype, ip = frame[12:14], frame[14:]
    if linktype == LINKTYPE_RAW:
        return ip
    if linktype == LINKTYPE_NULL:
        family = 2 if ethertype == b"\x08\x00" else 30
        return struct.pack("<I", family) + ip            # host byte order of the writer
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8s", 0, 772, 6, bytes(8)) + ethertype + ip
    if linktype == LINKTYPE_LINUX_SLL2:
        return ethertype + struct.pack("!HIHBB8s", 0, 1, 772, 0, 6, bytes(8)) + ip
    return frame


def _classic(frames, linktype, order="<", nanosecond=False) -> bytes:
    resolution = 10**9 if nanosecond else 10**6
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for t, frame in frames:
        frame = _relink(frame, linktype)
        units = EPOCH * resolution + round(t * resolution)
        out.append(struct.pack(order + "IIII", units // resolution, units % resolution,
                               len(frame), len(frame)) + frame)
    return b"".join(out)


def _pcapng(frames, linktype, order="<", tsresol=6) -> bytes:
    def block(kind, body):
        body += b"\x00" * (-len(body) % 4)
        return struct.pack(order + "II", kind, len(body) + 12) + body + struct.pack(order + "I", len(body) + 12)

    def option(code, value):
        return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)

    shb = block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack(order + "HHI", linktype, 0, 0) + option(9, bytes([tsresol]))
                + option(0, b""))
    out = [shb, block(0xBAD, b"unknown blocks are skipped"), idb]
    for t, frame in frames:
        frame = _relink(frame, linktype)
        units = EPOCH * 10**tsresol + round(t * 10**tsresol)
        out.append(block(6, struct.pack(order + "IIIII", 0, units >> 32, units & 0xFFFFFFFF,
                                        len(frame), len(frame)) + frame))
    return b"".join(out)


def _frames_of(cap):
    import heapq
    return list(heapq.merge(*(pcap.synthesize(c) for c in cap), key=lambda f: f[0]))


@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_NULL, LINKTYPE_RAW,
                                      LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2])
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("container", ["pcap-us", "pcap-ns", "pcapng"])
def test_reads_every_link_type_byte_order_and_container(linktype, order, container):
    frames = _frames_of(sample_capture())
    if container == "pcapng":
        data = _pcapng(frames, linktype, order, tsresol=9)
    else:
        data = _classic(frames, linktype, order, nanosecond=container == "pcap-ns")
    assert_same(sample_capture(), read_pcap(io.BytesIO(data), t0=EPOCH))


@pytest.mark.parametrize("inet6", [24, 28, 30])         # AF_INET6 of NetBSD, FreeBSD, macOS
@pytest.mark.parametrize("order", ["<", ">"])            # the writer's byte order
def test_null_link_type_any_inet6_value_in_either_byte_order(inet6, order):
    frames = [(t, struct.pack(order + "I", 2 if f[12:14] == b"\x08\x00" else inet6) + f[14:])
              for t, f in _frames_of(sample_capture())]
    raw = _classic(frames, 147)                          # 147: _relink leaves the frames alone
    raw = raw[:20] + struct.pack("<I", LINKTYPE_NULL) + raw[24:]
    assert_same(sample_capture(), read_pcap(raw, t0=EPOCH))


def test_vlan_tagged_ethernet():
    tags = bytes.fromhex("88a8 0064 8100 00c8")          # 802.1ad outer tag, 802.1Q inner tag
    frames = [(t, f[:12] + tags + f[12:]) for t, f in _frames_of(sample_capture())]
    assert_same(sample_capture(), read_pcap(_classic(frames, LINKTYPE_ETHERNET), t0=EPOCH))


def test_gzip_compressed_capture():
    data = _pcapng(_frames_of(sample_capture()), LINKTYPE_ETHERNET)
    assert_same(sample_capture(), read_pcap(gzip.compress(data), t0=EPOCH))
    with pytest.raises(CaptureError, match="gzip"):
        read_pcap(gzip.compress(data)[:-20])


@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_a_file_cut_short_is_an_error_not_a_shorter_capture(container):
    frames = _frames_of(sample_capture())
    data = _classic(frames, LINKTYPE_ETHERNET) if container == "pcap" else \
        _pcapng(frames, LINKTYPE_ETHERNET)
    last = len(frames[-1][1])
    for cut in (1, 8, last // 2, last + 8):              # inside the last record / block
        with pytest.raises(CaptureError, match="ends inside"):
            read_pcap(data[:-cut])
    assert len(list(read_frames(data))) == len(frames)


def test_non_tcp_packets_are_skipped():
    frames = _frames_of(sample_capture())
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    udp = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c000040004011") + bytes(18)
    data = _classic([(0.0, arp), (0.0, udp)] + frames, LINKTYPE_ETHERNET)
    assert_same(sample_capture(), read_pcap(data, t0=EPOCH))


def test_truncated_packet_is_reported_with_the_cure():
    frames = _frames_of(sample_capture())
    data = bytearray(_classic(frames, LINKTYPE_ETHERNET))
    # shrink the 4th record (the first data segment) to 60 captured bytes, keep its wire length
    offset = 24
    for _ in range(3):
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
    captured = struct.unpack_from("<I", data, offset + 8)[0]
    struct.pack_into("<I", data, offset + 8, 60)
    del data[offset + 16 + 60:offset + 16 + captured]
    with pytest.raises(CaptureError, match="snapshot length"):
        read_pcap(bytes(data))


def test_unsupported_link_type_and_bad_magic():
    with pytest.raises(CaptureError, match="link type 147"):
        read_pcap(_classic(_frames_of(sample_capture()), 147))
    with pytest.raises(CaptureError, match="not a pcap file"):
        read_pcap(b"GIF89a" + bytes(40))
    with pytest.raises(CaptureError):
        read_pcap(b"")


def test_capture_error_is_a_lablib_error():
    assert issubclass(CaptureError, LablibError)


# --- garbage in, CaptureError out ---------------------------------------------------------------

def _read_or_capture_error(data: bytes) -> None:
    try:
        read_pcap(data)
    except CaptureError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_capture_error(data):
    _read_or_capture_error(data)
    _read_or_capture_error(bytes.fromhex("d4c3b2a1") + data)          # pcap magic, then noise
    _read_or_capture_error(bytes.fromhex("0a0d0d0a") + data)          # pcapng magic, then noise


VALID = {"pcap": _classic(_frames_of(sample_capture())[:9], LINKTYPE_ETHERNET),
         "pcap-be-sll": _classic(_frames_of(sample_capture())[:9], LINKTYPE_LINUX_SLL, ">"),
         "pcapng": _pcapng(_frames_of(sample_capture())[:9], LINKTYPE_RAW)}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.data())
def test_corrupted_captures_raise_only_capture_error(kind, data):
    raw = bytearray(VALID[kind])
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _read_or_capture_error(bytes(raw[:cut] if data.draw(st.booleans()) else raw))


# --- Wireshark agrees ----------------------------------------------------------------------------

def tshark_fields(path, *fields, extra=()):
    out = subprocess.run([TSHARK, "-r", str(path), *extra, "-T", "fields",
                          *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()]


@needs_tshark
def test_tshark_reads_streams_lengths_and_good_checksums(tmp_path):
    path = tmp_path / "sample.pcap"
    pcap.write_pcap(sample_capture(), path)
    rows = tshark_fields(path, "tcp.stream", "tcp.len", "tcp.checksum.status", "ip.checksum.status",
                         "tcp.analysis.flags",
                         extra=("-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"))
    data = [(int(s), int(n)) for s, n, *_ in rows if int(n)]
    assert data == [(0, 31), (1, 2), (0, 40), (0, 4)]
    assert {r[2] for r in rows} == {"1"}                # 1 = good
    assert {r[3] for r in rows} <= {"1", ""}            # IPv6 has no header checksum
    assert {r[4] for r in rows} == {""}                 # no retransmission/out-of-order/... flags
    streams = {int(r[0]) for r in rows}
    assert streams == {c.id for c in sample_capture()}  # conversation id == tcp.stream


@needs_tshark
def test_our_reader_agrees_with_editcap_pcapng(tmp_path):
    src, ng = tmp_path / "a.pcap", tmp_path / "a.pcapng"
    pcap.write_pcap(sample_capture(), src)
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap is not installed")
    subprocess.run([editcap, "-F", "pcapng", str(src), str(ng)], check=True, timeout=60)
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert_same(sample_capture(), read_pcap(ng, t0=EPOCH))
