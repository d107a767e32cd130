"""Capture real packets on the loopback interface with scapy (needs root or CAP_NET_RAW).

Where the relay sees byte streams, a sniffer sees *segments*: the handshake, every ACK, the
FINs, segment sizes chosen by the kernel.  We reassemble them (:mod:`.tcp`) into the same
:class:`~lablib.capture.records.Capture` the relay produces, and can write the packets as they
were to a pcap file.

How we use scapy, and why (measured with scapy 2.8 on Linux):

* ``conf.L2socket(iface="lo")`` — a PF_PACKET socket (packet(7)), no libpcap needed.  On
  loopback every packet passes the interface twice, once "outgoing" and once "incoming"; a plain
  ``sniff(iface="lo")`` shows both copies, while L2socket's ``recv_raw`` drops the outgoing one.
* The socket is opened *before* the traffic and only read *after* it: the kernel queues the
  packets meanwhile.  (Stopping an ``AsyncSniffer`` loses the packets still queued.)  The queue
  must hold the whole exchange, so we raise the socket's receive buffer with SO_RCVBUFFORCE
  (root may exceed ``net.core.rmem_max``); the kernel's drop counter (PACKET_STATISTICS) tells
  us if it still overflowed.
* We read raw bytes (``recv_raw``) with a buffer larger than scapy's default of 65535: a
  loopback frame can be 14 + 65535 bytes, and a short buffer silently truncates it.
* Filtering by port happens in Python, on the headers scapy decodes (like
  ``sniff(lfilter=...)``): a kernel BPF ``filter=`` would need libpcap to compile it.  Decoding
  costs ~150 µs a packet and the loopback carries everyone's traffic, so a byte search for the
  port sieves the frames first, and decoding waits until the reading is done.
* Draining runs in a worker thread (``asyncio.to_thread``) so the event loop keeps serving the
  connections — a closing handshake still in flight — while we read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import struct
import time
import warnings
from typing import AsyncIterator, BinaryIO

from . import pcap
from .records import Capture, CaptureError
from .relay import Relay
from .tcp import Reassembler, Segment

__all__ = ["can_sniff", "Sniffer", "capture"]

CAP_NET_RAW = 13           # capability number, linux/capability.h
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SOL_PACKET = 263           # linux/socket.h
PACKET_STATISTICS = 6      # linux/if_packet.h: struct tpacket_stats {tp_packets, tp_drops}
FRAME_BUFFER = 65535 + 1024  # larger than any loopback frame (14 + 65535 bytes)
#: A TCP port, if a frame carries it, lies within its first bytes: link layer (≤ 22 bytes with
#: two VLAN tags), IPv4 header with options (≤ 60) or IPv6 (40), then the two ports.
HEADERS = 128

HOW_TO_RELAY = ("use the relay instead: async with lablib.capture.relay.Relay(host, port) as "
                "relay: ... and connect the client to relay.port")


def _scapy_conf():
    """scapy's ``conf``, with the OS's L2socket and the Ethernet/IP/TCP layers loaded.

    ``from scapy.config import conf`` alone leaves ``conf.L2socket`` None: the socket classes
    are registered by ``scapy.arch``.  Importing these few modules is ~4x faster than scapy.all.
    """
    import scapy.arch  # noqa: F401  (registers conf.L2socket)
    import scapy.layers.inet  # noqa: F401  (IP, TCP, and Ether via scapy.layers.l2)
    import scapy.layers.inet6  # noqa: F401
    from scapy.config import conf
    return conf


def _privilege() -> str | None:
    """'root' or 'CAP_NET_RAW' if this process may open packet sockets, else None."""
    if os.geteuid() == 0:
        return "root"
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:") and int(line.split()[1], 16) >> CAP_NET_RAW & 1:
                    return "CAP_NET_RAW"
    return None


def can_sniff(iface: str = "lo") -> tuple[bool, str]:
    """Whether :class:`Sniffer` can work here, and why (or why not)."""
    who = _privilege()
    if who is None:
        return False, f"sniffing needs root or CAP_NET_RAW (running as uid {os.geteuid()})"
    try:
        sock = _scapy_conf().L2socket(iface=iface)
    except ImportError:
        return False, "scapy is not installed"
    except (OSError, ValueError) as exc:
        return False, f"cannot open a packet socket on {iface!r}: {exc}"
    sock.close()
    return True, f"running as {who}"


class Sniffer:
    """Capture the TCP traffic to or from ``port`` on ``iface``.

    ::

        async with Sniffer(8765) as sniffer:
            ...traffic to 127.0.0.1:8765...
        sniffer.capture            # Capture(source="sniff"), filled when the block ends
        sniffer.write_pcap("out.pcap")

    ``rcvbuf`` is the kernel queue size requested; ``idle`` how long the drain waits for more
    packets once the queue is empty.  Times are seconds since the sniffer opened.
    """

    def __init__(self, port: int, iface: str = "lo", *, host: str = "127.0.0.1",
                 rcvbuf: int = 64 << 20, idle: float = 0.05) -> None:
        self.port = port
        self.host = host          #: where clients connect (same attribute as the relay's)
        self.iface = iface
        self.rcvbuf = rcvbuf
        self.idle = idle
        self.frames: list[tuple[float, bytes]] = []  #: (Unix time, raw frame) of our packets
        self.segments: list[Segment] = []            #: the TCP segments, capture-relative
        self.capture = Capture(source="sniff")
        self.dropped = 0          #: packets the kernel dropped (queue full)
        self.linktype = pcap.LINKTYPE_ETHERNET
        self._sock = None
        self._t0 = 0.0

    def open(self) -> None:
        """Open the packet socket: from now on the kernel queues every packet for us."""
        ok, reason = can_sniff(self.iface)
        if not ok:
            raise CaptureError(f"{reason}; {HOW_TO_RELAY}")
        conf = _scapy_conf()
        self._sock = conf.L2socket(iface=self.iface)
        with contextlib.suppress(OSError):           # SO_RCVBUFFORCE needs CAP_NET_ADMIN
            self._sock.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
        self.linktype = conf.l2types.layer2num.get(self._sock.LL, pcap.LINKTYPE_ETHERNET)
        if self.iface == "lo":
            self._wait_for_timestamps()
        self._statistics()                            # reading the counters resets them
        self._t0 = time.time()

    def _wait_for_timestamps(self, attempts: int = 200) -> None:
        """Wait until the kernel really timestamps packets as they pass.

        Asking for timestamps (SO_TIMESTAMPNS, which scapy does) switches on the kernel's
        packet timestamping, but only *later*, from a work queue (``net_enable_timestamp()``).
        Packets queued before that carry no time, and ``recvmsg`` then reports the time of the
        read instead: the handshake of a connection opened right away would appear after its
        data.  So we send ourselves UDP probes until one carries a time from before we read it.
        """
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", 0))
            marker = b"lablib timestamp probe %d" % os.getpid()
            for _ in range(attempts):
                probe.sendto(marker, probe.getsockname())
                sent = time.time()
                while select.select([self._sock.ins], [], [], 1.0)[0]:
                    _, raw, stamp = self._sock.recv_raw(FRAME_BUFFER)
                    if raw is not None and raw.endswith(marker):
                        break
                else:
                    break                                # the probe never came back: give up
                if stamp is not None and stamp <= sent:
                    return                               # stamped on the way, not on reading
                time.sleep(0.001)
            warnings.warn("the kernel does not timestamp captured packets: times are read times",
                          RuntimeWarning, stacklevel=3)
        finally:
            probe.close()

    def drain(self) -> Capture:
        """Read every queued packet (until ``idle`` seconds pass without one), then reassemble."""
        sock = self._sock
        if sock is None:
            raise CaptureError("the sniffer is not open")
        # The socket sees *all* loopback traffic; on a busy machine it may never be quiet for
        # ``idle`` seconds.  Packets stamped after the drain began (plus ``idle`` for our own
        # last ACKs) are not part of this capture, so reaching one ends the drain; a hard
        # deadline bounds it in any case.
        started = time.time()
        deadline = time.monotonic() + max(1.0, 20 * self.idle)
        port = self.port.to_bytes(2, "big")
        queued: list[tuple[float, bytes]] = []
        while time.monotonic() < deadline and select.select([sock.ins], [], [], self.idle)[0]:
            _, raw, stamp = sock.recv_raw(FRAME_BUFFER)
            if raw is None:                           # the outgoing copy of a loopback packet
                continue
            stamp = time.time() if stamp is None else stamp
            if stamp > started + self.idle:
                break
            if port in raw[:HEADERS]:                 # a cheap sieve; decoding decides below
                queued.append((stamp, raw))
        # Decoded after reading, not while: scapy takes ~150 µs a packet, and the deadline
        # above must bound the reading only.
        for stamp, raw in queued:
            try:
                seg = pcap.decode_frame(self.linktype, raw, stamp - self._t0)
            except CaptureError:   # not a well-formed TCP/IP packet: not one of ours either
                continue
            if seg is not None and self.port in (seg.src[1], seg.dst[1]):
                self.frames.append((stamp, raw))
                self.segments.append(seg)
        self.dropped += self._statistics()[1]
        if self.dropped:
            warnings.warn(f"the kernel dropped {self.dropped} packets: the capture has gaps "
                          "(use a larger rcvbuf)", RuntimeWarning, stacklevel=2)
        reassembler = Reassembler(source="sniff")
        for seg in self.segments:
            reassembler.feed(seg)
        self.capture = reassembler.capture
        return self.capture

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _statistics(self) -> tuple[int, int]:
        """(packets, drops) since the last call (packet(7), PACKET_STATISTICS)."""
        with contextlib.suppress(OSError):
            return struct.unpack("II", self._sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return 0, 0

    async def __aenter__(self) -> Sniffer:
        self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await asyncio.to_thread(self.drain)
        finally:
            self.close()

    def pcap_bytes(self) -> bytes:
        """The captured packets, unchanged, as a pcap file."""
        return pcap.dump_frames(self.frames, self.linktype, nanosecond=True)

    def write_pcap(self, dest: str | os.PathLike | BinaryIO) -> None:
        """Write :meth:`pcap_bytes` to a path or a binary file object."""
        pcap.write_bytes(self.pcap_bytes(), dest)

    def packets(self):
        """The packets as scapy objects (``scapy.plist.PacketList``), to ``.show()`` in a notebook."""
        from scapy.plist import PacketList
        conf = _scapy_conf()
        layer = conf.l2types.num2layer[self.linktype]
        out = []
        for stamp, raw in self.frames:
            p = layer(raw)
            p.time = stamp
            out.append(p)
        return PacketList(out, name="sniff")


@contextlib.asynccontextmanager
async def capture(host: str, port: int, *, method: str = "auto", iface: str = "lo",
                  clock=None) -> AsyncIterator[Sniffer | Relay]:
    """Record the traffic to ``host:port`` by sniffing if allowed, else through a relay.

    Either way the object yielded has ``.host`` and ``.port`` (where clients must connect: the
    server itself when sniffing, the relay otherwise), ``.capture`` (complete when the block
    ends) and ``.write_pcap(path)``.  ``method`` is "auto", "sniff" or "relay".
    """
    if method not in ("auto", "sniff", "relay"):
        raise ValueError(f"method must be 'auto', 'sniff' or 'relay', not {method!r}")
    if method == "auto":
        method = "sniff" if can_sniff(iface)[0] else "relay"
    if method == "sniff":
        async with Sniffer(port, iface, host=host) as sniffer:
            yield sniffer
    else:
        async with Relay(host, port, clock=clock) as relay:
            yield relay
