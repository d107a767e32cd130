"""The lablib SSE server, on a raw socket: exact bytes of what it answers."""

import asyncio

from lablib.errors import LocalProtocolError
from lablib.sse import serve
from tests.aio_support import asyncio_test

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request``, read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await reader.read(-1)
    writer.close()
    return answer


def get(path: str = "/", *extra: bytes) -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(extra) + b"\r\n"


@asyncio_test
async def test_events_retry_and_the_last_chunk_exact_bytes():
    async def handler(stream):
        await stream.send("hello\nworld", event="greeting", id="1")
        await stream.send("é")

    async with serve(handler, retry=1500, keepalive=None) as server:
        answer = await exchange(server.port, get())
    assert answer == (HEAD + b"d\r\nretry: 1500\n\n\r\n"
                      + b"2f\r\nid: 1\nevent: greeting\ndata: hello\ndata: world\n\n\r\n"
                      + b"a\r\ndata: \xc3\xa9\n\n\r\n" + b"0\r\n\r\n")


@asyncio_test
async def test_the_handler_reads_last_event_id():
    seen = []

    async def handler(stream):
        seen.append((stream.path, stream.last_event_id))

    async with serve(handler, keepalive=None) as server:
        assert await exchange(server.port, get("/a")) == HEAD + b"0\r\n\r\n"
        await exchange(server.port, get("/b", b"Last-Event-ID: 41\r\n"))
    assert seen == [("/a", None), ("/b", "41")]


@asyncio_test
async def test_reject_with_204_tells_the_client_to_stop():
    async def handler(stream):
        await stream.reject(204)
        try:
            await stream.send("too late")
        except LocalProtocolError:
            pass

    async with serve(handler) as server:
        assert await exchange(server.port, get()) == (
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")


@asyncio_test
async def test_keepalive_comments_while_the_handler_is_silent():
    async def handler(stream):
        await stream.open()
        await asyncio.Event().wait()       # silent forever

    async with serve(handler, keepalive=0.01) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get())
        data = await reader.readuntil(b"2\r\n:\n\r\n2\r\n:\n\r\n")   # two keepalives
        assert data.startswith(HEAD)
        writer.close()


@asyncio_test
async def test_the_handler_is_cancelled_when_the_client_leaves():
    cancelled = asyncio.Event()

    async def handler(stream):
        await stream.open()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with serve(handler, keepalive=None) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get())
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await cancelled.wait()
        await asyncio.sleep(0)
        assert not server.streams or all(s.closed.is_set() for s in server.streams)


@asyncio_test
async def test_server_close_ends_open_streams_with_the_last_chunk():
    opened = asyncio.Event()

    async def handler(stream):
        await stream.send("x")
        opened.set()
        await asyncio.Event().wait()

    server = await serve(handler, keepalive=None)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get())
    await opened.wait()
    await server.close()
    assert await reader.read(-1) == HEAD + b"9\r\ndata: x\n\n\r\n0\r\n\r\n"
    writer.close()


@asyncio_test
async def test_bad_requests_get_an_http_error_never_a_traceback():
    async def handler(stream):
        raise RuntimeError("boom")

    async with serve(handler) as server:
        post = await exchange(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        garbage = await exchange(server.port, b"\x00\x01 nonsense\r\n\r\n")
        failing = await exchange(server.port, get())
    assert post.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and b"Allow: GET" in post
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert failing.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"boom" not in failing


@asyncio_test(timeout=20)
async def test_a_client_that_stops_reading_is_dropped_after_send_timeout():
    from lablib.capture.relay import Relay
    from lablib.errors import ConnectionClosed

    outcome = asyncio.get_running_loop().create_future()

    async def handler(stream):
        try:
            while True:                                   # until TCP flow control pushes back
                await stream.send("x" * 65536)
        except ConnectionClosed as exc:
            outcome.set_result(exc)

    async with serve(handler, send_timeout=0.2, keepalive=None) as server, \
            Relay("127.0.0.1", server.port, max_buffered=1) as relay:
        relay.stall("s2c")                                # the "client" reads nothing
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(get())
        closed = await outcome
        writer.close()
    assert "read nothing" in closed.reason


@asyncio_test
async def test_respond_serves_an_ordinary_page():
    async def handler(stream):
        if stream.path == "/":
            await stream.respond(200, "<p>hi</p>", "text/html")

    async with serve(handler) as server:
        page = await exchange(server.port, get("/"))
    assert page == (b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: text/html\r\n"
                    b"Content-Length: 10\r\nConnection: close\r\n\r\n<p>hi</p>\n")


@asyncio_test
async def test_post_beside_the_stream_when_max_body_size_allows_it():
    seen = []

    async def handler(stream):
        seen.append((stream.request.method, stream.path, stream.request.body))
        await stream.respond(200, "ok")

    post = b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    async with serve(handler, keepalive=None, max_body_size=8) as server:
        answer = await exchange(server.port, post)
        too_big = await exchange(server.port, b"POST /send HTTP/1.1\r\nHost: x\r\n"
                                              b"Content-Length: 9\r\n\r\n123456789")
        put = await exchange(server.port, b"PUT /send HTTP/1.1\r\nHost: x\r\n"
                                          b"Content-Length: 0\r\n\r\n")
    assert seen == [("POST", "/send", b"hello")]
    assert answer == (b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\n"
                      b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
                      b"Connection: close\r\n\r\nok\n")
    assert too_big.startswith(b"HTTP/1.1 413 ")
    assert put.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, POST\r\n" in put
