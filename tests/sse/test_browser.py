"""A real browser's ``EventSource`` against the lablib SSE server, through the capture relay.

Headless Chromium (Debian's, through playwright: see conftest.py) loads a page from the lablib
server; its ``EventSource`` collects the events.  The relay cuts the connection right after
event 3.  What the WHATWG HTML standard (§9.2.3) makes the browser do, on its own:

1. the cut is a network error: *reestablish the connection* after the reconnection time (the
   server's ``retry``), sending ``Last-Event-ID: 3``;
2. the server resumes with events 4..N and ends the stream cleanly: the end of the body also
   reestablishes, now with ``Last-Event-ID: N``;
3. the server answers ``204 No Content``: *fail the connection*, readyState CLOSED, no more
   requests.

Every wait is bounded (the guard timeout and playwright's own); nothing is timed.
"""

from __future__ import annotations

from lablib.capture.dissect import dissect
from lablib.capture.relay import Relay
from lablib.sse import serve
from tests.aio_support import asyncio_test, until

N = 7             #: events in all
CUT_AFTER = 3     #: the relay cuts the stream once the browser has this many
RETRY_MS = 100    #: the server's reconnection time: the browser waits this long before asking again

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>lablib EventSource test</title>
<script>
  window.received = [];           // [data, lastEventId] of each "tick" event, in arrival order
  window.states = [];             // readyState at each open and error event
  const source = new EventSource("/events");
  window.source = source;
  source.addEventListener("tick", (e) => received.push([e.data, e.lastEventId]));
  source.onopen = () => states.push(source.readyState);
  source.onerror = () => states.push(source.readyState);
</script>
"""


def event_stream_server(requests: list[tuple[str | None, str | None]]):
    """The page at ``/``, the stream at ``/events``; ``requests`` gets (Last-Event-ID, Accept)."""

    async def handler(stream):
        if stream.path == "/":
            await stream.respond(200, PAGE, "text/html; charset=utf-8")
            return
        if stream.path != "/events":
            await stream.respond(404, "not found")     # e.g. the browser's /favicon.ico
            return
        requests.append((stream.last_event_id, stream.request.headers.get("accept")))
        if stream.last_event_id is None:
            for n in range(1, CUT_AFTER + 1):
                await stream.send(f"event {n}", event="tick", id=str(n))
            await stream.closed.wait()                 # held open until the relay cuts it
        elif stream.last_event_id == str(CUT_AFTER):
            for n in range(CUT_AFTER + 1, N + 1):
                await stream.send(f"event {n}", event="tick", id=str(n))
            # returning ends the body cleanly (the last chunk): the browser asks again
        else:
            await stream.reject(204)                   # "stop reconnecting"

    return serve(handler, retry=RETRY_MS, keepalive=None)


async def launch(executable):
    from playwright.async_api import async_playwright

    manager = async_playwright()
    playwright = await manager.start()
    browser = await playwright.chromium.launch(executable_path=str(executable), headless=True,
                                               timeout=30_000)
    return manager, browser


@asyncio_test(timeout=90)
async def test_browser_eventsource_resumes_with_last_event_id_after_a_relay_cut(chromium):
    requests: list[tuple[str | None, str | None]] = []
    manager, browser = await launch(chromium)
    try:
        async with event_stream_server(requests) as server, \
                Relay("127.0.0.1", server.port) as relay:
            page = await browser.new_page()
            page.set_default_timeout(20_000)
            await page.goto(f"http://127.0.0.1:{relay.port}/")
            await page.wait_for_function(f"window.received.length >= {CUT_AFTER}")
            relay.cut()
            await page.wait_for_function("window.source.readyState === EventSource.CLOSED")
            received = await page.evaluate("window.received")
            states = await page.evaluate("window.states")
            await page.close()
            # The browser made its last request; the server has logged it.
            await until(lambda: len(requests) == 3, timeout=10)
        capture = relay.capture
    finally:
        await browser.close()
        await manager.__aexit__(None, None, None)

    # Events 1..N, each exactly once, in order, each with its id as lastEventId.
    assert received == [[f"event {n}", str(n)] for n in range(1, N + 1)]
    # The browser reconnected by itself, twice, and resumed from the last id it had seen.
    assert requests == [(None, "text/event-stream"), (str(CUT_AFTER), "text/event-stream"),
                        (str(N), "text/event-stream")]
    # open, error (the cut: CONNECTING), open, error (the clean end: CONNECTING), error (204: CLOSED)
    assert states == [1, 0, 1, 0, 2]

    # On the wire: the stream connections, in order, with what each carried.
    streams = [c for c in capture.conversations if b"GET /events " in c.data("c2s")]
    assert len(streams) == 3
    first, resumed, stopped = streams
    assert first.reset and b"Last-Event-ID" not in first.data("c2s")
    assert b"\r\nLast-Event-ID: 3\r\n" in resumed.data("c2s") and not resumed.reset
    assert b"\r\nLast-Event-ID: 7\r\n" in stopped.data("c2s")
    assert stopped.data("s2c").startswith(b"HTTP/1.1 204 ")

    def ids(conversation):
        return [r.fields["id"] for r in dissect(conversation)
                if r.layer == "sse" and r.kind == "event"]

    assert ids(first) == ["1", "2", "3"]
    assert ids(resumed) == ["4", "5", "6", "7"]
