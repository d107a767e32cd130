"""lablib.capture.sniff: real packets from the loopback interface (root / CAP_NET_RAW only)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys

import pytest

from lablib.capture import sniff
from lablib.capture.pcap import read_pcap, read_segments
from lablib.capture.records import CaptureError
from lablib.capture.relay import Relay
from lablib.capture.sniff import Sniffer, can_sniff, capture
from lablib.capture.tcp import TCPFlags
from tests import aio_support

#: These scenarios get a longer guard than the default (10 s).
asyncio_test = aio_support.asyncio_test(timeout=20.0)
TSHARK = shutil.which("tshark")

# Skipped where a packet socket cannot be opened (the reason says why); also marked ``root``,
# so that ``pytest -m "not root"`` leaves them out.
_SNIFF_OK, _SNIFF_WHY = can_sniff()


def root(test):
    skip = pytest.mark.skipif(not _SNIFF_OK,
                              reason=f"{_SNIFF_WHY}; the relay tests cover the unprivileged path")
    return pytest.mark.root(skip(test))


async def echo(reader, writer):
    while data := await reader.read(1 << 20):
        writer.write(data)
        await writer.drain()
    writer.close()


async def start_echo():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def talk(port, *messages, expect=None):
    """Send each message, read its echo, then close (FIN first from the client)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for m in messages:
        writer.write(m)
        await writer.drain()
        assert await reader.readexactly(len(m)) == m
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    return writer.get_extra_info("sockname")[:2]


# --- unprivileged: a clear error pointing to the relay ---------------------------------------------

def test_without_privileges_it_says_so_and_points_to_the_relay(monkeypatch):
    monkeypatch.setattr(sniff, "_privilege", lambda: None)
    ok, reason = can_sniff()
    assert not ok and "root or CAP_NET_RAW" in reason
    with pytest.raises(CaptureError, match="use the relay instead"):
        Sniffer(8765).open()


@asyncio_test
async def test_capture_helper_falls_back_to_the_relay(monkeypatch):
    monkeypatch.setattr(sniff, "_privilege", lambda: None)
    server, port = await start_echo()
    async with capture("127.0.0.1", port) as cap:
        assert isinstance(cap, Relay) and cap.port != port
        await talk(cap.port, b"via relay")
        await cap.wait_idle()
    assert cap.capture.conversations[0].data("c2s") == b"via relay"
    server.close()


# --- privileged: the real thing ------------------------------------------------------------------------

@root
def test_can_sniff_as_root():
    assert can_sniff() == (True, "running as root")


@root
@asyncio_test
async def test_sniffs_a_conversation_once_and_in_order(tmp_path):
    server, port = await start_echo()
    big = os.urandom(300_000)          # several 64 KiB loopback segments
    async with Sniffer(port) as sniffer:
        client = await talk(port, b"hello", big)
    server.close()
    [conv] = sniffer.capture.conversations
    assert sniffer.capture.source == "sniff" and sniffer.dropped == 0
    assert (conv.client, conv.server) == (client, ("127.0.0.1", port))
    assert conv.data("c2s") == conv.data("s2c") == b"hello" + big
    assert (conv.closed_by, conv.reset) == ("c2s", False)
    times = [conv.start] + [c.time for c in conv.chunks] + [conv.end]
    assert times == sorted(times) and conv.start >= 0        # the handshake is stamped first
    # every packet exactly once: loopback's outgoing copies are dropped (a copy would look
    # like a retransmission: same sender, same sequence number, same length)
    segs = sniffer.segments
    data_segments = [(s.src, s.seq, len(s.payload)) for s in segs if s.payload]
    assert len(set(data_segments)) == len(data_segments)
    F = TCPFlags
    assert [s.flags & (F.SYN | F.ACK) for s in segs[:3]] == [F.SYN, F.SYN | F.ACK, F.ACK]
    assert sum(1 for s in segs if s.flags & F.SYN) == 2

    # the raw packets survive a pcap round trip through our reader
    path = tmp_path / "sniffed.pcap"
    sniffer.write_pcap(path)
    back = read_pcap(path)
    assert back.conversations[0].data("s2c") == conv.data("s2c")
    assert len(read_segments(path)) == len(segs)
    assert len(sniffer.packets()) == len(segs)


@root
@asyncio_test
async def test_only_the_watched_port_is_kept():
    server_a, port_a = await start_echo()
    server_b, port_b = await start_echo()
    async with Sniffer(port_a) as sniffer:
        await talk(port_b, b"other")
        await talk(port_a, b"mine")
    assert [c.data("c2s") for c in sniffer.capture] == [b"mine"]
    server_a.close()
    server_b.close()


@root
@asyncio_test
async def test_capture_helper_sniffs_when_it_can():
    server, port = await start_echo()
    async with capture("127.0.0.1", port) as cap:
        assert isinstance(cap, Sniffer) and cap.port == port
        await talk(cap.port, b"direct")
    assert cap.capture.conversations[0].data("s2c") == b"direct"
    server.close()


@root
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
@asyncio_test
async def test_tshark_reads_the_sniffed_pcap(tmp_path):
    server, port = await start_echo()
    async with Sniffer(port) as sniffer:
        await talk(port, b"abc", b"defgh")
    server.close()
    path = tmp_path / "s.pcap"
    sniffer.write_pcap(path)
    out = await asyncio.to_thread(subprocess.run, [TSHARK, "-r", str(path), "-T", "fields",
                                                   "-e", "tcp.stream", "-e", "tcp.len"],
                                  capture_output=True, text=True, check=True, timeout=60)
    rows = [tuple(map(int, line.split("\t"))) for line in out.stdout.splitlines()]
    assert {s for s, _ in rows} == {0}
    assert [n for _, n in rows if n] == [3, 3, 5, 5]


@root
@asyncio_test
async def test_cli_sniffs_until_sigint(tmp_path):
    server, port = await start_echo()
    out = tmp_path / "cli.pcap"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lablib", "capture", "--sniff", str(port), "-w", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = (await proc.stdout.readline()).decode()
    assert line.startswith(f"sniffing TCP port {port}"), line + (await proc.stderr.read()).decode()
    await talk(port, b"sniffed by the cli")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = await proc.communicate()
    server.close()
    assert proc.returncode == 0, stderr.decode()
    [conv] = read_pcap(out).conversations
    assert conv.data("c2s") == b"sniffed by the cli"
