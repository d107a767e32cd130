"""The lablib SSE client against scripted servers: what it asks, when it reconnects, when not."""

import asyncio
import contextlib
import random

import pytest

from lablib.errors import HandshakeError, PayloadTooBig
from lablib.sse import EventReceived, ReadyState, connect
from lablib.sse.server import LAST_CHUNK, chunk
from tests.aio_support import asyncio_test

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


@contextlib.asynccontextmanager
async def scripted(*answers: bytes):
    """A server that answers its n-th connection with ``answers[n]`` then closes; yields
    (port, the requests it received)."""
    requests: list[bytes] = []

    async def on_connection(reader, writer):
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(answers[min(len(requests), len(answers)) - 1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], requests
    finally:
        server.close()


class Sleeps:
    """An injected sleep: records each wait, waits for nothing."""

    def __init__(self):
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def collect(source) -> list[EventReceived]:
    return [event async for event in source]


@asyncio_test
async def test_first_request_bytes():
    async with scripted(b"HTTP/1.1 204 No Content\r\n\r\n") as (port, requests):
        source = connect(f"http://127.0.0.1:{port}/feed?x=1")
        assert await collect(source) == []
    assert requests == [b"GET /feed?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        b"Accept: text/event-stream\r\nCache-Control: no-store\r\n\r\n" % port]
    assert (source.ready_state, source.status, source.connections) == (ReadyState.CLOSED, 204, 1)


@asyncio_test
async def test_reconnects_after_the_end_with_last_event_id_and_the_servers_retry():
    sleeps = Sleeps()
    first = OK + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"retry: 50\nid: 7\ndata: one\n\n") + LAST_CHUNK
    second = OK + b"\r\ndata: two\n\n"                     # close-delimited this time
    async with scripted(first, second, b"HTTP/1.1 204 No Content\r\n\r\n") as (port, requests):
        source = connect(f"http://127.0.0.1:{port}/", sleep=sleeps)
        assert await collect(source) == [EventReceived("one", last_event_id="7"),
                                         EventReceived("two", last_event_id="7")]
    assert b"Last-Event-ID" not in requests[0]
    assert b"\r\nLast-Event-ID: 7\r\n" in requests[1] and b"\r\nLast-Event-ID: 7\r\n" in requests[2]
    assert sleeps.calls == [0.05, 0.05]                     # retry: 50 ms, before each reconnection
    assert source.connections == 3


@asyncio_test
async def test_a_cut_in_the_middle_of_an_event_discards_it_and_reconnects():
    sleeps = Sleeps()
    cut = OK + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"id: 1\ndata: a\n\n") + b"9\r\ndata: los"
    async with scripted(cut, b"HTTP/1.1 204 No Content\r\n\r\n") as (port, requests):
        source = connect(f"http://127.0.0.1:{port}/", sleep=sleeps, retry=10)
        assert await collect(source) == [EventReceived("a", last_event_id="1")]
    assert b"Last-Event-ID: 1\r\n" in requests[1] and sleeps.calls == [0.01]


@pytest.mark.parametrize("answer, status", [
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 500),
    (b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", 301),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\ndata: x\n\n", 200),
    (b"HTTP/1.1 200 OK\r\n\r\ndata: x\n\n", 200),
])
@asyncio_test
async def test_fail_the_connection_never_reconnects(answer, status):
    sleeps = Sleeps()
    async with scripted(answer) as (port, requests):
        source = connect(f"http://127.0.0.1:{port}/", sleep=sleeps)
        with pytest.raises(HandshakeError) as raised:
            await collect(source)
    assert raised.value.status == status
    assert (len(requests), sleeps.calls, source.ready_state) == (1, [], ReadyState.CLOSED)


@asyncio_test
async def test_content_type_parameters_are_allowed():
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\ndata: x\n\n"
    async with scripted(answer) as (port, _):
        source = connect(f"http://127.0.0.1:{port}/", max_reconnects=0)
        assert await collect(source) == [EventReceived("x")]


@asyncio_test
async def test_a_refused_connection_is_retried_with_jitter_from_the_injected_rng():
    sleeps = Sleeps()
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                                           # nobody listens there now
    source = connect(f"http://127.0.0.1:{port}/", sleep=sleeps, retry=1000,
                     rng=random.Random(1), jitter=0.5, max_reconnects=2)
    assert await collect(source) == []
    expected = random.Random(1)
    assert sleeps.calls == [1 + 0.5 * expected.random(), 1 + 0.5 * expected.random()]
    assert source.connections == 0 and source.ready_state == ReadyState.CLOSED


@asyncio_test
async def test_an_answer_that_is_not_http_is_a_network_error_retried():
    sleeps = Sleeps()
    async with scripted(b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n") as (port, requests):
        source = connect(f"http://127.0.0.1:{port}/", sleep=sleeps, retry=5)
        assert await collect(source) == []
    assert len(requests) == 2 and sleeps.calls == [0.005] and source.status == 204


@asyncio_test
async def test_an_event_over_the_limit_fails_the_connection():
    answer = OK + b"\r\ndata: " + b"x" * 100 + b"\n\n"
    async with scripted(answer) as (port, requests):
        source = connect(f"http://127.0.0.1:{port}/", max_size=64, sleep=Sleeps())
        with pytest.raises(PayloadTooBig):
            await collect(source)
    assert len(requests) == 1 and source.ready_state == ReadyState.CLOSED


@asyncio_test
async def test_close_stops_a_source_for_good():
    sleeps = Sleeps()
    answer = OK + b"\r\ndata: 1\n\ndata: 2\n\n"
    async with scripted(answer) as (port, requests):
        async with connect(f"http://127.0.0.1:{port}/", sleep=sleeps) as source:
            async for event in source:
                break
        assert event == EventReceived("1")
    assert source.ready_state == ReadyState.CLOSED and sleeps.calls == []
