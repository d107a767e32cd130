"""lablib's SSE against maintained implementations, over real sockets on 127.0.0.1.

* server side: ``aiohttp-sse`` (aiohttp's SSE response) serves, the lablib client reads;
* client side: ``httpx-sse`` (on httpx) reads, the lablib server serves;
* the resumption story: a lablib relay between them cuts the connection, the lablib client
  comes back with ``Last-Event-ID`` and gets the rest, against both servers.
"""

import asyncio
import contextlib

import httpx
import httpx_sse
import pytest
from aiohttp import web
from aiohttp_sse import sse_response

from lablib.capture.dissect import dissect
from lablib.capture.relay import Relay
from lablib.sse import EventReceived, connect, encode, serve
from lablib.http import ResponseStream
from tests.aio_support import aiohttp_site, asyncio_test

pytestmark = pytest.mark.interop


class Sleeps:
    def __init__(self):
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def aiohttp_sse_app(handler) -> web.Application:
    app = web.Application()
    app.router.add_get("/events", handler)
    return app


# --- the lablib client against aiohttp-sse ----------------------------------------------------

@asyncio_test
async def test_lablib_client_reads_aiohttp_sse_and_resumes():
    seen = []

    async def events(request):
        seen.append(request.headers.get("Last-Event-ID"))
        if seen[-1] == "3":
            return web.Response(status=204)           # stop reconnecting
        async with sse_response(request) as response:
            await response.send("one\ntwo", id="1", event="a", retry=20)
            await response.send("x", id="2")
            await response.send("y\r\nz", id="3")
        return response

    sleeps = Sleeps()
    async with aiohttp_site(aiohttp_sse_app(events)) as port:
        source = connect(f"http://127.0.0.1:{port}/events", sleep=sleeps)
        got = [event async for event in source]
    assert got == [EventReceived("one\ntwo", "a", "1"), EventReceived("x", "message", "2"),
                   EventReceived("y\nz", "message", "3")]
    assert seen == [None, "3"]
    assert sleeps.calls == [0.02] and source.status == 204 and source.retry == 20


@asyncio_test
async def test_lablib_encoder_bytes_equal_aiohttp_sse_bytes():
    sent = [("hello", "1", None, None), ("multi\nline\r\ndata", None, "tick", None),
            ("", "", None, 100), ("é ü", "7", "x y", 0)]

    async def events(request):
        async with sse_response(request) as response:
            for data, id, event, retry in sent:
                await response.send(data, id=id, event=event, retry=retry)
        return response

    async with aiohttp_site(aiohttp_sse_app(events)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await reader.read(-1)
        writer.close()
    stream = ResponseStream()
    body = b"".join(item for item in stream.receive_data(raw) + stream.receive_data(b"")
                    if isinstance(item, bytes))
    ours = b"".join(encode(data, id=id, event=event, retry=retry, sep="\r\n")
                    for data, id, event, retry in sent)
    assert body == ours


# --- httpx-sse against the lablib server --------------------------------------------------------

@asyncio_test
async def test_httpx_sse_reads_the_lablib_server():
    async def handler(stream):
        start = int(stream.last_event_id or 0)
        await stream.comment("hi")
        await stream.send("first\nsecond", event="greeting", id=str(start + 1))
        await stream.send("plain", id=str(start + 2), retry=250)

    async with serve(handler, retry=1500) as server, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{server.port}/"
        async with httpx_sse.aconnect_sse(client, "GET", url) as source:
            got = [(e.event, e.data, e.id, e.retry) async for e in source.aiter_sse()]
        async with httpx_sse.aconnect_sse(client, "GET", url,
                                          headers={"Last-Event-ID": "10"}) as source:
            resumed = [e.id async for e in source.aiter_sse()]
    # httpx-sse reports the server's retry-only block as an event with empty data; an
    # EventSource dispatches nothing for it (§9.2.6 step 2) and only sets its reconnection time.
    assert got == [("message", "", "", 1500), ("greeting", "first\nsecond", "1", None),
                   ("message", "plain", "2", 250)]
    assert resumed == ["", "11", "12"]


# --- resumption after a relay cut -----------------------------------------------------------------

@contextlib.asynccontextmanager
async def lablib_server(script):
    async def handler(stream):
        action, events = script(stream.last_event_id)
        if action == "stop":
            await stream.reject(204)
            return
        for number in events:
            await stream.send(f"event {number}", id=str(number))
        if action == "hang":
            await asyncio.Event().wait()

    async with serve(handler, retry=10, keepalive=None) as server:
        yield server.port


@contextlib.asynccontextmanager
async def aiohttp_sse_server(script):
    async def events(request):
        action, numbers = script(request.headers.get("Last-Event-ID"))
        if action == "stop":
            return web.Response(status=204)
        async with sse_response(request) as response:
            # aiohttp-sse's send() always writes a data field; a bare retry is written raw.
            await response.write(b"retry: 10\r\n\r\n")
            for number in numbers:
                await response.send(f"event {number}", id=str(number))
            if action == "hang":
                await asyncio.Event().wait()
        return response

    async with aiohttp_site(aiohttp_sse_app(events), handler_cancellation=True) as port:
        yield port


@pytest.mark.parametrize("server", [lablib_server, aiohttp_sse_server])
@asyncio_test(timeout=20)
async def test_resume_with_last_event_id_after_a_relay_cut(server):
    asked: list[str | None] = []

    def script(last_event_id):
        asked.append(last_event_id)
        if last_event_id is None:
            return "hang", [1, 2, 3]         # then silence, until the relay cuts
        if last_event_id == "3":
            return "end", [4, 5]             # then a clean end: the client reconnects
        return "stop", []                    # 204: the client stops

    sleeps = Sleeps()
    async with server(script) as port, Relay("127.0.0.1", port) as relay:
        source = connect(f"http://127.0.0.1:{relay.port}/events", sleep=sleeps)
        got = []
        async for event in source:
            got.append(event)
            if event.last_event_id == "3":
                relay.cut()
    assert [(e.data, e.last_event_id) for e in got] == [(f"event {n}", str(n)) for n in range(1, 6)]
    assert asked == [None, "3", "5"]
    assert sleeps.calls == [0.01, 0.01] and source.connections == 3

    # The dissector shows what crossed the relay: three events, then the cut ...
    cut, resumed, stopped = relay.capture.conversations
    assert cut.reset
    records = dissect(cut)
    assert [r.fields["id"] for r in records if r.layer == "sse" and r.kind == "event"] == ["1", "2", "3"]
    assert records[-2].kind == "truncated" and records[-1].kind == "close"
    request = next(r for r in dissect(resumed) if r.kind == "request")
    assert ("Last-Event-ID", "3") in request.fields["headers"]
    assert [r.fields["data"] for r in dissect(resumed) if r.kind == "event"] == ["event 4", "event 5"]
    assert [r.fields["status"] for r in dissect(stopped) if r.kind == "response"] == [204]
