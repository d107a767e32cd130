"""lablib.capture.relay: recording, half-close, and the fault injection (cut, stall, delay, refuse).

No assertion measures wall time: every scenario waits for *events* (a chunk recorded, a byte
received) and asserts order and content.  Timeouts only guard against hangs.  The one "nothing
arrives" check (a stalled or delayed direction) waits a little and cannot pass by accident:
a relay that wrongly forwarded would be caught by it on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import os
import shutil
import signal
import subprocess
import sys

import pytest

from lablib.capture.pcap import EPOCH, dumps_pcap, read_pcap
from lablib.capture.relay import Relay
from tests.aio_support import asyncio_test
from tests.wire import read_answer

NOTHING_ARRIVES = 0.1   #: how long "no data arrives" is watched for (a negative check)
TSHARK = shutil.which("tshark")


class Server:
    """A TCP server on 127.0.0.1 with a handler; remembers what happened to its connections."""

    def __init__(self, handler):
        self.handler = handler
        self.accepted = 0
        self.errors: list[BaseException] = []
        self.done = asyncio.Event()

    async def _handle(self, reader, writer):
        self.accepted += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, OSError) as exc:
            self.errors.append(exc)
        finally:
            writer.close()
            self.done.set()

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def sink(reader, writer):
    while await reader.read(1 << 20):
        pass


async def connect(port):
    return await asyncio.open_connection("127.0.0.1", port)


async def nothing_arrives(reader) -> bool:
    try:
        await asyncio.wait_for(reader.read(1), NOTHING_ARRIVES)
    except TimeoutError:
        return True
    return False


# --- recording ---------------------------------------------------------------------------------

@asyncio_test
async def test_records_both_directions_of_an_echo():
    ticks = itertools.count()
    async with Server(echo) as server, Relay("127.0.0.1", server.port,
                                             clock=lambda: float(next(ticks))) as relay:
        reader, writer = await connect(relay.port)
        for word in (b"hello", b"relay"):
            writer.write(word)
            await writer.drain()
            assert await reader.readexactly(5) == word
        writer.write_eof()
        assert await reader.read() == b""            # the server's FIN, forwarded
        writer.close()
        await relay.wait_idle()
    [conv] = relay.capture.conversations
    assert relay.capture.source == "relay"
    assert conv.id == 0
    assert conv.client == writer.get_extra_info("sockname")[:2]
    assert conv.server == ("127.0.0.1", server.port)
    assert [(c.direction, c.data) for c in conv.chunks] == [
        ("c2s", b"hello"), ("s2c", b"hello"), ("c2s", b"relay"), ("s2c", b"relay")]
    # the injected clock ticks once per reading: start at 0, so every time is a whole number
    times = [conv.start] + [c.time for c in conv.chunks] + [conv.end]
    assert times == sorted(times) and all(t == int(t) for t in times) and conv.start >= 1
    assert (conv.closed_by, conv.reset) == ("c2s", False)


@asyncio_test
async def test_conversations_in_connection_order_and_wait_for():
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        clients = []
        for i in range(3):
            clients.append(await connect(relay.port))
            await relay.wait_for(lambda cap, n=i + 1: len(cap) == n)
        for i, (reader, writer) in enumerate(reversed(clients)):
            writer.write(b"#%d" % i)
            await writer.drain()
            await reader.readexactly(2)
        await relay.wait_for(lambda cap: all(c.bytes_s2c == 2 for c in cap))
        for _, writer in clients:
            writer.close()
        await relay.wait_idle()
    assert [c.id for c in relay.capture] == [0, 1, 2]
    assert [c.data("c2s") for c in relay.capture] == [b"#2", b"#1", b"#0"]
    assert all(c.end is not None for c in relay.capture)


@asyncio_test
async def test_half_close_is_forwarded_and_the_other_direction_keeps_flowing():
    async def late_talker(reader, writer):
        request = await reader.read()                # until the client's FIN
        writer.write(b"you said " + request)
        await writer.drain()
        writer.write_eof()

    async with Server(late_talker) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)
        writer.write(b"bye")
        writer.write_eof()
        assert await reader.read() == b"you said bye"
        writer.close()
        await relay.wait_idle()
    conv = relay.capture.conversations[0]
    assert conv.data("s2c") == b"you said bye"
    assert (conv.closed_by, conv.reset) == ("c2s", False) and conv.end is not None


@asyncio_test
async def test_large_transfer_is_recorded_exactly():
    payload = os.urandom(3 << 20)
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)

        async def send():
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        assert await reader.read() == payload
        await sender
        writer.close()
        await relay.wait_idle()
    conv = relay.capture.conversations[0]
    assert conv.data("c2s") == payload == conv.data("s2c")
    assert max(len(c.data) for c in conv.chunks) <= relay.chunk_size


@asyncio_test
async def test_recording_writes_a_pcap_that_reads_back_the_same():
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)
        writer.write(b"ping")
        await reader.readexactly(4)
        writer.close()
        await relay.wait_idle()
    back = read_pcap(relay.pcap_bytes(), t0=EPOCH)
    assert relay.pcap_bytes() == dumps_pcap(relay.capture)
    [a], [b] = relay.capture.conversations, back.conversations
    assert (a.client, a.server, a.closed_by) == (b.client, b.server, b.closed_by)
    assert [(c.direction, c.data) for c in a.chunks] == [(c.direction, c.data) for c in b.chunks]


# --- fault injection -----------------------------------------------------------------------------

@asyncio_test
async def test_cut_resets_both_sides_and_later_connections_still_work():
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)
        writer.write(b"x")
        await reader.readexactly(1)
        relay.cut()
        with pytest.raises(ConnectionResetError):
            await reader.read(1)                     # a RST, not an orderly EOF
        await server.done.wait()
        assert len(server.errors) == 1 and isinstance(server.errors[0], ConnectionResetError)
        writer.close()
        reader2, writer2 = await connect(relay.port)
        writer2.write(b"y")
        assert await reader2.readexactly(1) == b"y"
        writer2.close()
        await relay.wait_idle()
    cut, fine = relay.capture.conversations
    assert (cut.reset, cut.closed_by, cut.end is not None) == (True, None, True)
    assert (fine.reset, fine.closed_by) == (False, "c2s")


@asyncio_test
async def test_stall_holds_one_direction_until_resume():
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)
        relay.stall("s2c")
        assert relay.stalled("s2c") and not relay.stalled("c2s")
        writer.write(b"ping")
        # the request went through and the echo came back to the relay: recorded, not forwarded
        await relay.wait_for(lambda cap: cap.conversations[0].bytes_s2c == 4)
        assert await nothing_arrives(reader)
        writer.write(b"pong")
        await relay.wait_for(lambda cap: cap.conversations[0].bytes_s2c == 8)
        relay.resume("s2c")
        assert await reader.readexactly(8) == b"pingpong"   # order kept
        writer.close()
        await relay.wait_idle()


@asyncio_test
async def test_stall_pushes_back_on_the_sender_instead_of_buffering_everything():
    total = 64 << 20   # far more than socket buffers (tcp_wmem/rmem max) + the relay's buffer
    received = 0

    async def counting_sink(reader, writer):
        nonlocal received
        while data := await reader.read(1 << 20):
            received += len(data)

    async with Server(counting_sink) as server, Relay("127.0.0.1", server.port,
                                                      max_buffered=4) as relay:
        relay.stall("c2s")
        _, writer = await connect(relay.port)
        block = bytes(1 << 20)

        async def send_all():
            for _ in range(total // len(block)):
                writer.write(block)
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send_all())
        await asyncio.sleep(NOTHING_ARRIVES)
        bound = (relay.max_buffered + 2) * relay.chunk_size   # queue + one held by the reader
        assert not sender.done()                              # drain() is blocking the sender
        assert relay.capture.conversations[0].bytes_c2s <= bound
        assert received == 0
        relay.resume()
        await sender
        await relay.wait_idle()
    assert received == total == relay.capture.conversations[0].bytes_c2s


@asyncio_test
async def test_delay_holds_chunks_and_lowering_it_releases_them():
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)
        relay.delay_c2s = 3600.0
        assert relay.delay == 3600.0 and relay.delay_s2c == 0.0
        writer.write(b"slow")
        await relay.wait_for(lambda cap: cap.conversations[0].bytes_c2s == 4)
        assert await nothing_arrives(reader)
        assert server.accepted == 1 and relay.capture.conversations[0].bytes_s2c == 0
        relay.delay = 0
        assert await reader.readexactly(4) == b"slow"
        writer.close()
        await relay.wait_idle()


@asyncio_test
async def test_delay_adds_at_least_the_latency_and_keeps_order():
    loop = asyncio.get_running_loop()
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)
        relay.delay = 0.05
        sent = loop.time()
        for piece in (b"a", b"b", b"c"):
            writer.write(piece)
            await writer.drain()
        got = await reader.readexactly(3)
        elapsed = loop.time() - sent
        writer.close()
        await relay.wait_idle()
    assert got == b"abc"
    # a lower bound only: a round trip crosses the relay twice, each adding >= 50 ms
    assert elapsed >= 2 * 0.05 - 0.002


@asyncio_test
async def test_refuse_closes_new_connections_without_contacting_the_target():
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        relay.refuse = True
        reader, writer = await connect(relay.port)
        assert await reader.read() == b""
        writer.close()
        relay.refuse = False
        reader, writer = await connect(relay.port)
        writer.write(b"ok")
        assert await reader.readexactly(2) == b"ok"
        writer.close()
        await relay.wait_idle()
    refused, accepted = relay.capture.conversations
    assert server.accepted == 1
    assert (refused.chunks, refused.closed_by, refused.end is not None) == ([], "s2c", True)
    assert accepted.data("c2s") == b"ok"


@asyncio_test
async def test_unreachable_target_resets_the_client():
    async with Server(echo) as server:
        port = server.port
    async with Relay("127.0.0.1", port) as relay:      # nothing listens there any more
        reader, writer = await connect(relay.port)
        with pytest.raises(ConnectionResetError):
            await reader.read(1)
        writer.close()
        await relay.wait_idle()
    conv = relay.capture.conversations[0]
    assert (conv.reset, conv.closed_by) == (True, "s2c")


@asyncio_test
async def test_client_reset_is_passed_on_to_the_server():
    import socket
    import struct
    async with Server(echo) as server, Relay("127.0.0.1", server.port) as relay:
        reader, writer = await connect(relay.port)
        writer.write(b"x")
        await reader.readexactly(1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()                        # the client resets
        await server.done.wait()
        await relay.wait_idle()
    conv = relay.capture.conversations[0]
    assert (conv.reset, conv.closed_by) == (True, "c2s")
    assert server.errors and isinstance(server.errors[0], ConnectionResetError)


def test_bad_direction_is_rejected():
    relay = Relay("127.0.0.1", 9)
    with pytest.raises(ValueError):
        relay.stall("up")


# --- the websocket wire, as Wireshark sees it ------------------------------------------------------

@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed "
                    "(apt-get install -y --no-install-recommends tshark)")
@asyncio_test
async def test_tshark_dissects_a_relayed_websocket_conversation(tmp_path):
    import websockets

    async def handler(ws):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with Relay("127.0.0.1", port) as relay:
            async with websockets.connect(f"ws://127.0.0.1:{relay.port}/", compression=None) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00" * 300)
                assert await ws.recv() == b"\x00" * 300
            await relay.wait_idle()
    path = tmp_path / "ws.pcap"
    relay.write_pcap(path)
    out = await asyncio.to_thread(
        subprocess.run, [TSHARK, "-r", str(path), "-Y", "websocket", "-T", "fields",
                         "-e", "tcp.srcport", "-e", "websocket.opcode", "-e", "websocket.mask",
                         "-e", "websocket.payload_length", "-e", "websocket.payload_length_ext_16"],
        capture_output=True, text=True, check=True, timeout=60)
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    conv = relay.capture.conversations[0]
    c, s = str(conv.client[1]), str(conv.server[1])
    # client frames are masked (RFC 6455 §5.3), server frames are not; 300 needs the 16-bit length
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (c, "1", "1", "5", ""), (s, "1", "0", "5", ""),
        (c, "2", "1", "126", "300"), (s, "2", "0", "126", "300"),
        (c, "8", "1", "2", ""), (s, "8", "0", "2", "")]


# --- the command line -------------------------------------------------------------------------------

@asyncio_test
async def test_cli_relays_until_sigint_and_writes_the_pcap(tmp_path):
    out = tmp_path / "cli.pcap"
    async with Server(echo) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lablib", "capture", "--target", f"127.0.0.1:{server.port}",
            "-w", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        line = (await proc.stdout.readline()).decode()
        assert line.startswith("relaying 127.0.0.1:"), line + (await proc.stderr.read()).decode()
        port = int(line.split()[1].rsplit(":", 1)[1].rstrip(";"))
        reader, writer = await connect(port)
        writer.write(b"through the cli")
        assert await reader.readexactly(15) == b"through the cli"
        writer.close()
        await writer.wait_closed()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert b"1 conversation(s)" in stdout and b"wrote" in stdout
    [conv] = read_pcap(out).conversations
    assert conv.data("c2s") == conv.data("s2c") == b"through the cli"


def test_cli_needs_a_target_or_sniff(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lablib", "capture", "-w", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--target" in result.stderr


@asyncio_test
async def test_refuse_next_refuses_exactly_that_many_connections():
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server, Relay("127.0.0.1", server.sockets[0].getsockname()[1]) as relay:
        relay.refuse_next(2)
        answers = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            try:
                writer.write(b"hi")
                await writer.drain()
                answers.append(await reader.read(100))
            except ConnectionResetError:  # a refused connection may be reset, or just closed
                answers.append(b"")
            writer.close()
        assert answers == [b"", b"", b"hi"]
        assert relay.refusals_left == 0


# --- balancing: the routing decision, sans-I/O ------------------------------------------------

from lablib.capture.balancing import Router  # noqa: E402
from lablib.capture.relay import Balancer  # noqa: E402
from lablib.http import Headers, Request, RequestParser, Response, format_response  # noqa: E402

OPEN_BODY = b'0{"sid":"AbC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'


def get(target, *fields):
    return Request("GET", target, Headers([("Host", "lb"), *fields]))


def polling(sid=None):
    return get("/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "") + "&t=x")


def websocket_request(sid):
    return get(f"/socket.io/?EIO=4&transport=websocket&sid={sid}",
               ("Upgrade", "websocket"), ("Connection", "Upgrade"))


def test_round_robin_cycles_over_the_backends_whatever_the_request():
    router = Router(3, "round-robin")
    choices = [router.choose(polling("AbC" if i else None), "127.0.0.1") for i in range(7)]
    assert [c.backend for c in choices] == [0, 1, 2, 0, 1, 2, 0]
    assert {c.reason for c in choices} == {"round-robin"}


def test_sid_policy_learns_the_sid_from_the_open_packet_and_sticks_to_it():
    router = Router(3, "sid")
    handshake = polling()
    first = router.choose(handshake, "127.0.0.1")
    router.choose(polling(), "127.0.0.1")                    # someone else's handshake: 1
    assert router.learn(handshake, first, Response(200, Headers(), body=OPEN_BODY)) == []
    assert router.sessions == {"AbC": first.backend}
    for request in (polling("AbC"), websocket_request("AbC"), polling("AbC")):
        assert router.choose(request, "10.0.0.9") == (first.backend, "sid") != (2, "sid")
    # an unknown sid (say, the balancer restarted) is not an error of the balancer: round-robin
    assert router.choose(polling("Zzz"), "127.0.0.1").reason == "round-robin"
    # an answer that is not an open packet teaches nothing
    router.learn(polling(), first, Response(400, Headers(), body=b'{"code":3}'))
    assert list(router.sessions) == ["AbC"]


def test_sid_table_is_bounded():
    router = Router(2, "sid", max_sessions=2)
    for sid in ("a", "b", "c"):
        request = polling()
        router.learn(request, router.choose(request, "h"),
                     Response(200, Headers(), body=OPEN_BODY.replace(b"AbC", sid.encode())))
    assert list(router.sessions) == ["b", "c"]


def test_cookie_policy_sets_a_cookie_naming_the_backend_then_follows_it():
    router = Router(3, "cookie")
    first = router.choose(polling(), "127.0.0.1")
    assert router.learn(polling(), first, Response(200, Headers(), body=OPEN_BODY)) == [
        ("Set-Cookie", f"SERVERID=s{first.backend}; Path=/; HttpOnly; SameSite=Lax")]
    with_cookie = get("/socket.io/?EIO=4&transport=polling&sid=AbC",
                      ("Cookie", f"theme=dark; SERVERID=s{first.backend}"))
    for _ in range(4):
        assert router.choose(with_cookie, "127.0.0.1") == (first.backend, "cookie")
    assert router.learn(with_cookie, router.choose(with_cookie, "h"), Response(200, Headers())) == []
    # a cookie naming no backend, or a malformed one, is ignored
    for header in ("SERVERID=s9", "SERVERID=\"unterminated"):
        assert router.choose(get("/", ("Cookie", header)), "h").reason == "round-robin"


def test_ip_hash_maps_one_address_to_one_backend():
    router = Router(3, "ip-hash")
    backends = {router.choose(polling(), "192.0.2.7").backend for _ in range(5)}
    assert len(backends) == 1
    spread = {router.choose(polling(), f"192.0.2.{i}").backend for i in range(30)}
    assert spread == {0, 1, 2}


def test_upgrade_policy_routes_websocket_requests_differently():
    router = Router(2, "sid", upgrade_policy="round-robin")
    handshake = polling()
    choice = router.choose(handshake, "h")                    # round-robin: 0
    router.learn(handshake, choice, Response(200, Headers(), body=OPEN_BODY))
    assert router.choose(polling("AbC"), "h") == (0, "sid")
    assert router.choose(websocket_request("AbC"), "h") == (1, "round-robin")


def test_bad_policies_are_rejected():
    with pytest.raises(ValueError, match="unknown policy"):
        Router(2, "sticky")
    with pytest.raises(ValueError, match="reads HTTP"):
        Router(2, "sid").choose_connection("h")
    with pytest.raises(ValueError, match="http=True"):
        Balancer([("127.0.0.1", 1)], "cookie", http=False)
    with pytest.raises(ValueError):
        Router(0)


def requests_until_unknown_sid(router: Router) -> int:
    """Simulate one long-polling session: the number of the first request that fails."""
    handshake = polling()
    choice = router.choose(handshake, "h")
    router.learn(handshake, choice, Response(200, Headers(), body=OPEN_BODY))
    home, number = choice.backend, 1
    while True:
        number += 1
        if router.choose(polling("AbC"), "h").backend != home:
            return number


@pytest.mark.parametrize("backends", [2, 3])
def test_without_stickiness_the_second_request_fails_with_round_robin(backends):
    # round-robin never sends two consecutive requests to the same backend
    assert requests_until_unknown_sid(Router(backends, "round-robin")) == 2


@pytest.mark.parametrize("backends, mean", [(2, 3.0), (3, 2.5)])
def test_without_stickiness_random_balancing_fails_after_1_plus_n_over_n_minus_1_requests(backends, mean):
    # each later request stays home with probability 1/n: the first failure is request
    # 1 + (a geometric number with success 1 - 1/n), whose mean is 1 + n/(n-1)
    rng = random.Random(12)
    runs = [requests_until_unknown_sid(Router(backends, "random", rng=rng))
            for _ in range(4000)]
    assert min(runs) == 2
    assert abs(sum(runs) / len(runs) - mean) < 0.1


# --- balancing over sockets -----------------------------------------------------------------------

class HTTPBackend:
    """A tiny keep-alive HTTP/1.1 server that answers ``backend <n>``; a request with
    ``Upgrade: echo`` is switched (101) and then echoed byte for byte."""

    def __init__(self, n: int):
        self.n = n
        self.requests: list[Request] = []

    async def _handle(self, reader, writer):
        leftover = b""
        try:
            while True:
                parser, request = RequestParser(), None
                data = leftover
                while True:
                    if data:
                        request = parser.receive_data(data)
                        if isinstance(request, Request):
                            break
                    data = await reader.read(65536)
                    if not data:
                        return
                leftover = parser.trailing_data
                self.requests.append(request)
                if request.headers.get("upgrade") == "echo":
                    writer.write(format_response(101, [("Upgrade", "echo"), ("Connection", "Upgrade")]))
                    if leftover:
                        writer.write(leftover)
                    while data := await reader.read(65536):
                        writer.write(data)
                        await writer.drain()
                    return
                body = b"backend %d" % self.n
                writer.write(format_response(200, [("Content-Length", str(len(body)))], body))
                await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()


def http_get(target: str, *fields: str) -> bytes:
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: lb", *fields]) + "\r\n\r\n").encode()


@asyncio_test
async def test_http_mode_routes_each_request_of_one_keepalive_connection_on_its_own():
    async with (HTTPBackend(0) as b0, HTTPBackend(1) as b1, HTTPBackend(2) as b2,
                Balancer([("127.0.0.1", b.port) for b in (b0, b1, b2)]) as lb):
        reader, writer = await connect(lb.port)
        answers = []
        for i in range(4):
            writer.write(http_get(f"/r{i}"))
            answers.append((await read_answer(reader))[1])
        writer.close()
        await lb.wait_idle()
    assert answers == [b"backend 0", b"backend 1", b"backend 2", b"backend 0"]
    assert [(r.number, r.method, r.target, r.backend, r.reason, r.status) for r in lb.routes] == [
        (i + 1, "GET", f"/r{i}", i % 3, "round-robin", 200) for i in range(4)]
    # one backend conversation per request, holding exactly that request and its answer
    assert len(lb.capture) == 4
    for i, conv in enumerate(lb.capture):
        assert conv.server == ("127.0.0.1", (b0, b1, b2)[i % 3].port)
        assert conv.client != writer.get_extra_info("sockname")[:2]   # the balancer's port
        assert lb.routes[i].client == writer.get_extra_info("sockname")[:2]
        assert conv.data("c2s") == http_get(f"/r{i}")
        assert conv.data("s2c").endswith(b"backend %d" % (i % 3))
        assert conv.closed_by == "c2s" and conv.end is not None   # upstream keep-alive off
    assert str(lb.routes[1]) == "#2 GET /r1  => backend 1 (round-robin) -> 200"


@asyncio_test
async def test_http_mode_cookie_policy_inserts_set_cookie_and_follows_it():
    async with (HTTPBackend(0) as b0, HTTPBackend(1) as b1,
                Balancer([("127.0.0.1", b0.port), ("127.0.0.1", b1.port)], "cookie") as lb):
        reader, writer = await connect(lb.port)
        writer.write(http_get("/a", "Cookie: SERVERID=s1"))
        head, body = await read_answer(reader)
        assert body == b"backend 1" and b"Set-Cookie" not in head
        writer.write(http_get("/b"))                          # no cookie: round-robin, s0
        head, body = await read_answer(reader)
        assert body == b"backend 0"
        assert head.startswith(b"HTTP/1.1 200 OK\r\nSet-Cookie: SERVERID=s0; Path=/; HttpOnly; "
                               b"SameSite=Lax\r\n")
        writer.close()
        await lb.wait_idle()
    # the capture holds what the backend sent; the cookie is the balancer's addition
    assert b"Set-Cookie" not in lb.capture.conversations[1].data("s2c")


@asyncio_test
async def test_http_mode_pipes_both_ways_after_101_and_records_it():
    async with (HTTPBackend(0) as b0, HTTPBackend(1) as b1,
                Balancer([("127.0.0.1", b0.port), ("127.0.0.1", b1.port)]) as lb):
        reader, writer = await connect(lb.port)
        writer.write(http_get("/first"))
        await read_answer(reader)
        writer.write(http_get("/up", "Upgrade: echo", "Connection: Upgrade") + b"early")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await reader.readexactly(5) == b"early"        # sent right behind the request
        writer.write(b"later")
        assert await reader.readexactly(5) == b"later"
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await lb.wait_idle()
    assert [(r.target, r.backend, r.status) for r in lb.routes] == [("/first", 0, 200), ("/up", 1, 101)]
    conv = lb.capture.conversations[1]
    assert conv.data("c2s") == http_get("/up", "Upgrade: echo", "Connection: Upgrade") + b"earlylater"
    assert conv.data("s2c").endswith(b"\r\n\r\nearlylater")
    assert conv.closed_by == "c2s" and not conv.reset


@asyncio_test
async def test_http_mode_answers_502_for_an_unreachable_backend_and_400_for_garbage():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()                                             # nobody listens there now
    async with Balancer([("127.0.0.1", dead_port)]) as lb:
        reader, writer = await connect(lb.port)
        writer.write(http_get("/"))
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 502 ") and body == b"backend 0 is unreachable\n"
        writer.close()
        reader, writer = await connect(lb.port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        head, _ = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 400 ")
        writer.close()
        await lb.wait_idle()
    assert [(r.status, r.error) for r in lb.routes] == [(502, "backend unreachable")]


@asyncio_test
async def test_tcp_mode_round_robin_routes_whole_connections():
    async def named(n):
        async def handler(reader, writer):
            writer.write(b"%d" % n + await reader.read(100))
            await writer.drain()
        return handler

    servers = [await Server(await named(n)).__aenter__() for n in range(3)]
    try:
        async with Balancer([("127.0.0.1", s.port) for s in servers], http=False) as lb:
            answers = []
            for _ in range(4):
                reader, writer = await connect(lb.port)
                writer.write(b"!")
                answers.append(await reader.read(100))
                writer.close()
            await lb.wait_idle()
    finally:
        for server in servers:
            await server.__aexit__()
    assert answers == [b"0!", b"1!", b"2!", b"0!"]
    assert [(r.backend, r.method, r.conversation) for r in lb.routes] == [
        (0, None, 0), (1, None, 1), (2, None, 2), (0, None, 3)]
    assert [c.server[1] for c in lb.capture] == [s.port for s in servers] + [servers[0].port]


@asyncio_test
async def test_http_mode_close_cuts_idle_keepalive_clients_and_the_capture_writes_a_pcap():
    async with HTTPBackend(0) as b0:
        lb = Balancer([("127.0.0.1", b0.port)], close_timeout=0.05)
        await lb.start()
        reader, writer = await connect(lb.port)
        writer.write(http_get("/once"))
        assert (await read_answer(reader))[1] == b"backend 0"
        await lb.close()                                     # the client is still connected
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""
        writer.close()
    [conv] = read_pcap(lb.pcap_bytes(), t0=EPOCH).conversations
    assert conv.data("c2s") == http_get("/once") and conv.server[1] == b0.port
