"""The asyncio drivers (lablib.websocket.aio, client, server): timers, closing, limits.

Most scenarios put a hand-made client or server on the other end of the socket, so the test
can assert the exact bytes on the wire and the order in which each side closes TCP.

The project does not depend on pytest-asyncio: each scenario is an ``async def`` wrapped by
:func:`asyncio_test`, which runs it in a fresh event loop.  Timeouts are guards against hangs,
never measurements; the only short intervals are the keepalive and open timers under test.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import logging
import random
import socket

import pytest

from lablib.errors import ConnectionClosed, HandshakeError, LocalProtocolError
from lablib.websocket import FrameParser, Opcode
from lablib.websocket.client import connect
from lablib.websocket import WebSocketState
from lablib.websocket.server import serve
from tests.aio_support import asyncio_test, until
from tests.wire import KEY, close_frame, masked, open_upgraded


# --- a hand-made client -------------------------------------------------------------------------

#: Client frames must be masked; with the key 00 00 00 00 the payload reads as is on the wire.
CLOSE_1000 = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


# --- keepalive (§5.5.2 used as a heartbeat) ---------------------------------------------------

@asyncio_test
async def test_keepalive_timeout_closes_with_1011():
    observed = asyncio.get_running_loop().create_future()

    async def handler(ws):
        await ws.wait_closed()
        observed.set_result((ws.close_code, ws.close_reason))

    async with serve(handler, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.05,
                     rng=random.Random(7)) as server:
        reader, writer = await open_upgraded(server.port)
        # We read but never answer: the server pings once, waits, gives up.
        received = await reader.read()  # up to EOF: the server closed TCP
        writer.close()
        assert await observed == (1011, "keepalive ping timeout")
    ping_payload = random.Random(7).randbytes(4)
    assert received == (b"\x89\x04" + ping_payload
                        + b"\x88\x18\x03\xf3" + b"keepalive ping timeout")


@asyncio_test
async def test_keepalive_with_an_answering_peer_sets_latency_and_stays_open():
    server_side = asyncio.get_running_loop().create_future()

    async def handler(ws):
        server_side.set_result(ws)
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0, ping_interval=0.02, ping_timeout=2) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=0.02,
                           ping_timeout=2) as ws:
            peer = await server_side
            # Both sides ping every 20 ms; wait for a round trip in each direction.
            await until(lambda: peer.latency > 0 and ws.latency > 0)
            assert ws.state is WebSocketState.OPEN and peer.state is WebSocketState.OPEN
            await ws.send("still here")
            assert await ws.recv() == "still here"
        assert ws.close_code == 1000


@asyncio_test
async def test_explicit_ping_resolves_to_the_round_trip_time():
    async def handler(ws):
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            first = await ws.ping(b"one")
            second = await ws.ping(b"two")
            assert await second >= 0
            assert first.done()  # a pong acknowledges earlier pings too
            pending = await ws.ping(b"dup")
            with pytest.raises(LocalProtocolError):
                await ws.ping(b"dup")  # the same payload while its pong is still awaited
            await pending


# --- the closing handshake on the wire (§7.1.1: the server closes TCP first) -------------------

@asyncio_test
async def test_client_initiated_close_server_echoes_then_closes_tcp():
    observed = asyncio.get_running_loop().create_future()

    async def handler(ws):
        await ws.wait_closed()
        observed.set_result((ws.close_code, ws.close_reason))

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await open_upgraded(server.port)
        writer.write(masked(Opcode.CLOSE, b"\x03\xe8bye"))
        received = await reader.read()  # the echo, then EOF: the server closed TCP
        writer.close()
        assert received == b"\x88\x02\x03\xe8"  # the code echoed (§5.5.1)
        assert await observed == (1000, "bye")


@asyncio_test
async def test_server_initiated_close_waits_for_the_clients_close_frame():
    close_returned = asyncio.get_running_loop().create_future()

    async def handler(ws):
        await ws.close(1000, "done")
        close_returned.set_result(ws.close_code)

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await open_upgraded(server.port)
        assert await reader.readexactly(8) == b"\x88\x06\x03\xe8done"
        # The server sent its close frame; it must wait for ours before closing TCP.
        assert not close_returned.done()
        writer.write(CLOSE_1000)
        assert await reader.read() == b""  # nothing more, then EOF
        writer.close()
        assert await close_returned == 1000


@asyncio_test
async def test_lablib_client_waits_for_the_server_to_close_tcp():
    """A hand-made server: the client must not close TCP before the server does."""
    loop = asyncio.get_running_loop()
    release = loop.create_future()
    server_saw = loop.create_future()

    async def raw_server(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b": ", 1)[1] for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        from lablib.websocket import accept_key
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                     + accept_key(key.decode()).encode() + b"\r\n\r\n")
        [frame] = FrameParser(mask_required=True).receive_data(await reader.readexactly(2 + 4 + 5))
        writer.write(b"\x88\x05" + frame.payload)  # echo code and reason
        await writer.drain()
        await release
        eof_before_our_close = reader.at_eof()
        writer.close()  # the server closes TCP first
        server_saw.set_result((frame.payload, eof_before_our_close, await reader.read()))

    tcp_server = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    port = tcp_server.sockets[0].getsockname()[1]
    async with tcp_server:
        ws = await connect(f"ws://127.0.0.1:{port}/", rng=random.Random(1))
        closing = asyncio.create_task(ws.close(1000, "bye"))
        await until(lambda: ws.state is WebSocketState.CLOSED)  # the echo arrived
        assert not closing.done()  # ... but close() still waits for the server's FIN
        release.set_result(None)
        await closing
        payload, eof_before_our_close, rest = await server_saw
    assert payload == b"\x03\xe8bye"
    assert eof_before_our_close is False
    assert rest == b""
    assert (ws.close_code, ws.close_reason) == (1000, "bye")


@asyncio_test
async def test_close_timeout_when_the_peer_never_answers():
    """A server that never echoes our close: close() gives up after close_timeout (1006)."""
    async def raw_server(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b": ", 1)[1] for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        from lablib.websocket import accept_key
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                     + accept_key(key.decode()).encode() + b"\r\n\r\n")
        await reader.read()  # swallow everything, answer nothing

    tcp_server = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    port = tcp_server.sockets[0].getsockname()[1]
    async with tcp_server:
        ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=0.05)
        await ws.close()
        assert ws.close_code == 1006
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1006


# --- the server's life cycle ------------------------------------------------------------------

@asyncio_test
async def test_server_shutdown_closes_clients_with_1001():
    async def handler(ws):
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    clients = [await connect(f"ws://127.0.0.1:{server.port}/") for _ in range(2)]
    await until(lambda: len(server.connections) == 2)
    server.close()
    await server.wait_closed()
    for ws in clients:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1001 and info.value.ok
        await ws.wait_closed()
        assert ws.close_code == 1001
    assert server.connections == set()
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{server.port}/")  # no longer listening


@asyncio_test
async def test_handler_exception_closes_with_1011_and_no_traceback(caplog):
    async def handler(ws):
        raise RuntimeError("secret detail of the server")

    with caplog.at_level(logging.ERROR, logger="lablib.websocket.server"):
        async with serve(handler, "127.0.0.1", 0) as server:
            reader, writer = await open_upgraded(server.port)
            expected = close_frame(1011, b"internal error")
            assert await reader.readexactly(len(expected)) == expected
            writer.write(CLOSE_1000)
            rest = await reader.read()
            writer.close()
    assert rest == b""
    assert "connection handler failed" in caplog.text
    assert "secret detail of the server" in caplog.text  # in the log, not on the wire


@asyncio_test
async def test_handler_return_closes_with_1000():
    async def handler(ws):
        await ws.send("bye")

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await open_upgraded(server.port)
        assert await reader.readexactly(5 + 4) == b"\x81\x03bye" + b"\x88\x02\x03\xe8"
        writer.write(CLOSE_1000)
        assert await reader.read() == b""
        writer.close()


@asyncio_test
async def test_handshake_timeout_closes_a_silent_connection():
    async def handler(ws):
        raise AssertionError("no handshake, no handler")

    async with serve(handler, "127.0.0.1", 0, open_timeout=0.05) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and never the rest
        assert await reader.read() == b""  # the server gave up and closed TCP
        writer.close()
        assert server.connections == set()


@asyncio_test
async def test_garbage_request_gets_400_and_the_server_stays_up():
    async def handler(ws):
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"HELLO\x00WORLD\r\n\r\n")
        answer = await reader.read()  # the error answer, then EOF
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        assert length == len(body) > 0
        # The next client is served as if nothing happened.
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("after the garbage")
            assert await ws.recv() == "after the garbage"


@asyncio_test
async def test_client_sees_handshake_error_status():
    async with serve(lambda ws: None, "127.0.0.1", 0, origins=["http://ok.example"]) as server:
        with pytest.raises(HandshakeError) as info:
            await connect(f"ws://127.0.0.1:{server.port}/", origin="http://evil.example")
    assert info.value.status == 403


# --- bounded buffers (a slow reader cannot make memory grow) ---------------------------------

class RecordingDeque(collections.deque):
    """A deque that remembers the longest it has ever been."""

    high_water = 0

    def append(self, item):
        super().append(item)
        self.high_water = max(self.high_water, len(self))


@asyncio_test
async def test_slow_reader_bounds_the_queue_and_blocks_the_sender():
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    server_side = loop.create_future()
    counted = loop.create_future()
    max_queue = 4

    async def handler(ws):
        ws._messages = RecordingDeque(ws._messages)  # before the first message arrives
        server_side.set_result(ws)
        await gate  # never recv() until the test says so
        count = 0
        while await ws.recv() != "done":
            count += 1
        counted.set_result(count)

    message = bytes(64 * 1024)
    sent = 0
    stop = False

    async def sender(ws):
        nonlocal sent
        while not stop:
            await ws.send(message)
            sent += 1
        await ws.send("done")

    async with serve(handler, "127.0.0.1", 0, max_queue=max_queue) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/", rng=random.Random(3)) as ws:
            peer = await server_side
            sending = asyncio.create_task(sender(ws))
            client_transport = ws.transport
            high = client_transport.get_write_buffer_limits()[1]
            # Backpressure all the way: the server's queue is full, it stopped reading the
            # socket, the kernel buffers filled up, and our own write buffer passed its
            # high-water mark, so send() waits until the transport resumes writing.
            await until(lambda: len(peer._messages) == max_queue
                        and not peer.transport.is_reading()
                        and client_transport.get_write_buffer_size() > high)
            # At this very instant (no await since the check), the sender's send() is
            # waiting for the transport to drain.  (Asserting that it is *still* waiting a
            # few loop iterations later would be flaky: the kernel may open the TCP window a
            # little, and a few more messages then go out into the server's socket buffer.)
            assert ws._writing_paused and ws._drain_waiters and not sending.done()
            assert len(peer._messages) == max_queue
            stop = True
            gate.set_result(None)  # the handler starts reading: everything flows again
            await sending
            assert await counted == sent
            assert peer._messages.high_water <= max_queue
            assert sent > max_queue


# --- recv() and async for after the close -----------------------------------------------------

@asyncio_test
async def test_messages_before_the_close_are_delivered_then_recv_raises():
    async def handler(ws):
        await ws.send("a")
        await ws.send(b"b")
        await ws.close(4001, "that's all")

    async with serve(handler, "127.0.0.1", 0) as server:
        ws = await connect(f"ws://127.0.0.1:{server.port}/")
        assert await ws.recv() == "a"
        assert await ws.recv() == b"b"
        for _ in range(2):  # and again: a closed connection stays closed
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4001, "that's all")
            assert not info.value.ok
        with pytest.raises(ConnectionClosed) as info:
            await ws.send("too late")
        assert info.value.code == 4001
        await ws.close()  # closing a closed connection is a no-op


@asyncio_test
async def test_messages_in_the_same_read_as_the_peers_close_are_all_delivered():
    """20 messages and a close frame in one TCP segment: more than the queue holds, and the
    connection is CLOSED before recv() runs.  The application never asked to close, so every
    message reaches it (§7.1.2: data before the close frame is data), then recv() raises."""
    done = asyncio.get_running_loop().create_future()

    async def handler(ws):
        await until(lambda: ws.connection.state is WebSocketState.CLOSED)  # the whole burst is parsed
        received = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                received.append(await ws.recv())
        done.set_result((received, info.value.code))

    async with serve(handler, "127.0.0.1", 0, max_queue=16, ping_interval=None) as server:
        reader, writer = await open_upgraded(server.port)
        writer.write(b"".join(masked(1, f"m{i}".encode()) for i in range(20)) + CLOSE_1000)
        received, code = await done
        writer.close()
    assert received == [f"m{i}" for i in range(20)]
    assert code == 1000


def _silent_client(port: int) -> socket.socket:
    """A client that completes the handshake and then never reads: the server's sends back up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n".encode("ascii"))
    return sock


@pytest.mark.parametrize("fragmented", [False, True])
@asyncio_test
async def test_close_is_bounded_by_close_timeout_when_the_peer_does_not_read(fragmented):
    """close() while send() waits for a peer that reads nothing (and, fragmented, while that
    send holds the send lock): the close frame goes out at once (a control frame may go between
    fragments, §5.4), and close_timeout ends the wait.  Before, close() waited for the send."""
    started = asyncio.get_running_loop().create_future()

    async def handler(ws):
        started.set_result(ws)
        with pytest.raises(ConnectionClosed):
            if fragmented:
                await ws.send(b"x" * 65536 for _ in range(1000))
            while True:
                await ws.send(b"x" * 65536)

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, close_timeout=0.2) as server:
        sock = _silent_client(server.port)
        ws = await started
        await until(lambda: ws._writing_paused and ws._send_lock.locked() == fragmented)
        await asyncio.wait_for(ws.close(), 5)  # a guard: close_timeout (0.2 s) ends it
        assert ws.connection.state is WebSocketState.CLOSED or ws.transport.is_closing()
        sock.close()


@asyncio_test
async def test_server_shutdown_is_bounded_when_a_peer_does_not_read():
    started = asyncio.get_running_loop().create_future()

    async def handler(ws):
        started.set_result(ws)
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.send(b"x" * 65536)

    server = await serve(handler, "127.0.0.1", 0, ping_interval=None, close_timeout=0.2)
    sock = _silent_client(server.port)
    ws = await started
    await until(lambda: ws._writing_paused)
    server.close()  # sends 1001 to the silent client
    await asyncio.wait_for(server.wait_closed(), 5)  # a guard: close_timeout ends it
    assert not server.connections
    sock.close()


@asyncio_test
async def test_async_for_ends_quietly_on_1000():
    async def handler(ws):
        for message in ["one", "two", b"three"]:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            received = [message async for message in ws]
        assert received == ["one", "two", b"three"]
        assert ws.close_code == 1000


@asyncio_test
async def test_async_for_raises_on_an_error_close():
    async def handler(ws):
        await ws.send("one")
        raise RuntimeError("boom")

    async with serve(handler, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            received = []
            with pytest.raises(ConnectionClosed) as info:
                async for message in ws:
                    received.append(message)
        assert received == ["one"]
        assert (info.value.code, info.value.reason) == (1011, "internal error")


# --- regressions found while writing these tests ------------------------------------------------

@asyncio_test
async def test_pong_that_arrives_before_ping_returns_still_resolves_it():
    """The waiter must exist before the ping leaves, or a fast pong is taken as unsolicited."""
    async def handler(ws):
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            pong_seen = asyncio.get_running_loop().create_future()
            original_pong_received = ws._pong_received

            def spy(payload):
                original_pong_received(payload)
                if not pong_seen.done():
                    pong_seen.set_result(payload)

            ws._pong_received = spy
            # As if the write buffer were over its high-water mark: ping() writes the frame,
            # then waits for resume_writing(); the pong comes back meanwhile.
            ws.pause_writing()
            pinging = asyncio.create_task(ws.ping(b"fast pong"))
            assert await pong_seen == b"fast pong"
            assert not pinging.done()
            ws.resume_writing()
            waiter = await pinging
            assert waiter.done() and waiter.result() >= 0


@asyncio_test
async def test_concurrent_recv_calls_each_get_a_message():
    async def handler(ws):
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            first = asyncio.create_task(ws.recv())
            second = asyncio.create_task(ws.recv())
            await asyncio.sleep(0)  # both are waiting now
            await ws.send("one")
            await ws.send("two")
            assert sorted(await asyncio.gather(first, second)) == ["one", "two"]


@asyncio_test
async def test_close_while_the_queue_is_full_completes_the_handshake():
    """Reading is paused on a full queue; close() must resume it to read the close echo."""
    server_side = asyncio.get_running_loop().create_future()

    async def handler(ws):
        server_side.set_result(ws)
        await until(lambda: len(ws._messages) == ws.max_queue and not ws.transport.is_reading())
        await ws.close(1000, "enough")  # without ever calling recv()

    async with serve(handler, "127.0.0.1", 0, max_queue=1, close_timeout=5) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            for i in range(3):
                await ws.send(f"message {i}")
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
            assert (info.value.code, info.value.reason) == (1000, "enough")
            peer = await server_side
            await peer.wait_closed()
            assert peer.close_code == 1000  # the echo was read: a clean close, not 1006


@asyncio_test
async def test_handler_stopped_by_the_peers_close_is_not_an_error(caplog):
    done = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()  # raises ConnectionClosed: the client closes
        finally:
            done.set_result(None)

    with caplog.at_level(logging.INFO, logger="lablib.websocket.server"):
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/"):
                pass
            await done
    assert "connection handler failed" not in caplog.text


@asyncio_test
async def test_handler_raising_another_connections_close_still_closes_this_one(caplog):
    async def handler(ws):
        raise ConnectionClosed(1001, "some other connection")  # this one is still open

    with caplog.at_level(logging.ERROR, logger="lablib.websocket.server"):
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
    assert (info.value.code, info.value.reason) == (1011, "internal error")
    assert "connection handler failed" in caplog.text


@asyncio_test
async def test_handshake_in_flight_during_shutdown_is_refused_with_503():
    async def handler(ws):
        raise AssertionError("no session may start after close()")

    server = await serve(handler, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    await until(lambda: len(server._tasks) == 1)  # the server is reading our request
    server.close()
    writer.write(b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode()
                 + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    answer = await reader.read()
    writer.close()
    await server.wait_closed()
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert answer.endswith(b"\r\n\r\nserver shutting down\n")


@asyncio_test
async def test_client_open_timeout_when_the_server_never_answers():
    async def silent(reader, writer):
        await reader.read()

    tcp_server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = tcp_server.sockets[0].getsockname()[1]
    async with tcp_server:
        with pytest.raises(asyncio.TimeoutError):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=0.05)


def _ipv6_loopback() -> bool:
    import socket
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
@asyncio_test
async def test_ipv6_literal_is_bracketed_in_the_host_header():
    async def handler(ws):
        await ws.send(ws.request.headers.get("Host"))

    async with serve(handler, "::1", 0) as server:
        async with connect(f"ws://[::1]:{server.port}/") as ws:
            assert await ws.recv() == f"[::1]:{server.port}"


# --- the public signatures ------------------------------------------------------------------

@pytest.mark.parametrize("opener", [serve, connect])
def test_options_are_explicit_keyword_parameters_with_defaults_and_types(opener):
    """serve(...) and connect(...) say every option in their signature: no **options to
    guess from, each with its type and its default (the secure one)."""
    import inspect

    parameters = inspect.signature(opener).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    options = [p for p in parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert {"max_size", "max_queue", "ping_interval", "ping_timeout", "close_timeout",
            "open_timeout", "rng"} <= {p.name for p in options}
    for p in options:
        assert p.annotation is not p.empty, p.name
        assert p.default is not p.empty, p.name
    assert parameters["max_size"].default == 1 << 20


# --- error answers arrive (a peer still sending gets the answer, not a reset) ----------------

#: The server's answer to fragments over max_size=1000: close 1009 with the parser's reason.
CLOSE_1009 = close_frame(1009, b"fragmented message exceeds the limit of 1000 bytes")


async def _send_until_eof(writer: asyncio.StreamWriter, chunk: bytes,
                          reader: asyncio.StreamReader) -> bytes:
    """Keep writing ``chunk`` while reading everything the server sends, up to its EOF."""
    async def keep_sending():
        while True:
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(keep_sending())
    try:
        return await reader.read()  # raises ConnectionResetError if the server resets
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


@asyncio_test(timeout=30)
async def test_peer_sending_past_max_size_receives_the_1009_close_frame():
    """The server fails the connection (1009) while the peer is still sending fragments.  It
    must not close TCP with the peer's bytes unread (that is a reset, which can destroy the
    close frame on its way): it shuts down its sending side and discards until the peer's
    EOF.  Before, the peer got ECONNRESET instead of the close frame, 5 runs out of 5."""
    async def handler(ws):
        async for _ in ws:
            pass

    first = bytes([0x02, 0xFE, 0x01, 0x00]) + b"\x00" * 4 + bytes(256)  # BINARY, fin=0, 256 B
    more = bytes([0x00, 0xFE, 0x01, 0x00]) + b"\x00" * 4 + bytes(256)   # CONT, fin=0, 256 B
    async with serve(handler, "127.0.0.1", 0, max_size=1000, ping_interval=None) as server:
        for _ in range(5):
            reader, writer = await open_upgraded(server.port)
            writer.write(first)
            assert await _send_until_eof(writer, more * 64, reader) == CLOSE_1009


@asyncio_test(timeout=30)
async def test_peer_sending_an_oversized_request_receives_the_431():
    """The same for the handshake: a request over max_request_size gets its 431 even while
    the peer goes on sending header lines."""
    async def handler(ws):
        raise AssertionError("no handshake, no handler")

    async with serve(handler, "127.0.0.1", 0, max_request_size=1024) as server:
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            answer = await _send_until_eof(writer, b"X-Filler: " + b"y" * 1000 + b"\r\n", reader)
            assert answer.startswith(b"HTTP/1.1 431 ")


@asyncio_test
async def test_client_failing_reads_on_to_the_servers_eof():
    """Client side (§7.1.1: the client waits for the server to close TCP): a server that
    sends a message over the client's max_size receives the client's 1009 close frame, and
    the client closes once the server has closed."""
    accept = base64.b64encode(hashlib.sha1(
        base64.b64encode(random.Random(3).randbytes(16))
        + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    received = asyncio.get_running_loop().create_future()

    async def raw_server(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        writer.write(b"\x82\x7e\x04\x00" + bytes(1024))  # 1024 bytes > max_size=1000
        parser = FrameParser(mask_required=True)
        frames = []
        while not frames:
            frames = parser.receive_data(await reader.read(4096))
        received.set_result(frames)
        writer.close()

    listener = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        ws = await connect(f"ws://127.0.0.1:{port}/", max_size=1000, rng=random.Random(3),
                           ping_interval=None)
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1009
        (frame,) = await received
        assert frame.opcode is Opcode.CLOSE and frame.payload[:2] == b"\x03\xf1"
        await ws.wait_closed()  # the server's close, not the 10 s close_timeout (guard: 10 s)


# --- messages before a protocol error are delivered --------------------------------------------

VIOLATIONS = {  # a frame each endpoint must fail the connection on, with 1002 (§5.2, §5.4)
    "rsv1": (b"\xc1\x80\x00\x00\x00\x00", b"\xc1\x00"),
    "reserved opcode": (b"\x83\x80\x00\x00\x00\x00", b"\x83\x00"),
    "orphan continuation": (b"\x80\x80\x00\x00\x00\x00", b"\x80\x00"),
}


@pytest.mark.parametrize("violation", VIOLATIONS)
@asyncio_test
async def test_server_delivers_the_messages_before_a_violation_then_closes_1002(violation):
    """One write: a whole message, then a frame that breaks the protocol.  The handler's
    recv() returns the message, then raises ConnectionClosed 1002."""
    seen = asyncio.get_running_loop().create_future()

    async def handler(ws):
        messages = [await ws.recv()]
        with pytest.raises(ConnectionClosed) as info:
            messages.append(await ws.recv())
        seen.set_result((messages, info.value.code))

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        reader, writer = await open_upgraded(server.port)
        writer.write(masked(0x1, b"whole", fin=False) + masked(0x0, b" message")
                     + VIOLATIONS[violation][0])
        answer = await reader.read()
        writer.close()
        assert await seen == (["whole message"], 1002)
    assert answer[:4] == b"\x88" + bytes([len(answer) - 2]) + b"\x03\xea"


@pytest.mark.parametrize("violation", VIOLATIONS)
@asyncio_test
async def test_client_delivers_the_messages_before_a_violation_then_closes_1002(violation):
    accept = base64.b64encode(hashlib.sha1(
        base64.b64encode(random.Random(5).randbytes(16))
        + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())

    async def raw_server(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await writer.drain()
        await reader.read(1)  # the client's first message: it is open, and reading
        writer.write(b"\x01\x05whole\x80\x08 message" + VIOLATIONS[violation][1])
        await reader.read()  # until the client closes
        writer.close()

    listener = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        ws = await connect(f"ws://127.0.0.1:{port}/", rng=random.Random(5), ping_interval=None,
                           close_timeout=0.1)
        await ws.send("ready")
        assert await ws.recv() == "whole message"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1002
        await ws.wait_closed()


# --- memory per idle connection ----------------------------------------------------------------

def _buffers_reachable(root) -> dict[int, int]:
    """{id: size in bytes} of every buffer (bytes, bytearray, the memory under a memoryview
    or a numpy array) reachable from ``root`` through lablib's own objects and containers.
    asyncio's objects (transport, futures, the loop) are not followed: they are not ours."""
    import numpy as np

    found: dict[int, int] = {}
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (bytes, bytearray)):
            found[id(obj)] = len(obj)
        elif isinstance(obj, memoryview):
            found[id(obj.obj)] = obj.obj.nbytes if isinstance(obj.obj, memoryview) \
                else len(obj.obj)
        elif isinstance(obj, np.ndarray):
            base = obj if obj.base is None else obj.base
            found[id(base)] = base.nbytes
        elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif type(obj).__module__.startswith("lablib"):
            todo.extend(getattr(obj, "__dict__", {}).values())
            todo.extend(getattr(obj, name) for cls in type(obj).__mro__
                        for name in getattr(cls, "__slots__", ()) if hasattr(obj, name))
    return found


@asyncio_test
async def test_an_idle_connection_owns_no_read_buffer():
    """Memory per connection: an open, idle connection holds at most a few hundred bytes of
    buffers of its own.  The 64 KiB the event loop reads the socket into is one buffer shared
    by every connection of the loop (get_buffer and buffer_updated run back to back, and the
    bytes are copied out at once).  Before: 64 KiB per connection, allocated at accept."""
    connections = []

    async def handler(ws):
        connections.append(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, close_timeout=0.1) as server:
        clients = [await open_upgraded(server.port) for _ in range(3)]
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None,
                               close_timeout=0.1) as ws:
                await ws.send("hello")  # one connection has carried a message
                await until(lambda: len(connections) == 4)
                endpoints = connections + [ws]
                reachable = [_buffers_reachable(endpoint) for endpoint in endpoints]
                for i, buffers in enumerate(reachable):
                    shared = set().union(*(other for j, other in enumerate(reachable) if j != i))
                    own = sum(size for key, size in buffers.items() if key not in shared)
                    assert own <= 512, (endpoints[i], buffers)
                assert len({id(endpoint._read_buffer.obj) for endpoint in endpoints}) == 1
        finally:
            for _, writer in clients:
                writer.close()


# --- what a server that bounds its own buffers uses (the Engine.IO server) ---------------------

@asyncio_test
async def test_send_nowait_writes_at_once_and_close_nowait_starts_the_closing_handshake():
    done = asyncio.get_running_loop().create_future()

    async def handler(ws):
        ws.send_nowait("hi")
        ws.send_nowait(b"\x01\x02")
        ws.close_nowait(None)          # a close frame without a status code
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("too late")  # the closing handshake started
        await ws.wait_closed()
        done.set_result(ws.close_code)

    async with serve(handler, "127.0.0.1", 0) as server:
        reader, writer = await open_upgraded(server.port)
        assert await reader.readexactly(10) == b"\x81\x02hi" b"\x82\x02\x01\x02" b"\x88\x00"
        writer.write(masked(Opcode.CLOSE, b""))
        assert await reader.read() == b""   # then the server closes TCP
        writer.close()
        assert await done == 1005
