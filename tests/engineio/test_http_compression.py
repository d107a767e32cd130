"""HTTP compression of polling answers (engine.io polling.ts ``httpCompression``): the decision,
the exact headers, both clients, and the dissector reading a compressed body."""

from __future__ import annotations

import asyncio
import gzip
import random
import zlib

import engineio
import pytest

from lablib.capture.dissect import dissect
from lablib.capture.relay import Relay
from lablib.engineio import AsyncClient
from lablib.engineio.http_compression import choose_encoding, decode, encode
from lablib.engineio.packets import Packet, PacketType
from lablib.engineio.server import Server
from lablib.engineio.server_core import EngineServerCore
from lablib.errors import PayloadTooBig
from lablib.http import Headers, Request
from tests.aio_support import asyncio_test, until

TEXT_PLAIN = "text/plain; charset=UTF-8"


def get(target: str, headers=()) -> Request:
    return Request("GET", target, Headers([("Host", "localhost"), *headers]))


def poll(message: str, accept_encoding: str | None, **options):
    """The answer to a GET that collects ``message`` (a held poll answered at once)."""
    core = EngineServerCore(rng=random.Random(7), **options)
    sid = core.handle_request(get("/engine.io/?EIO=4&transport=polling"), 0.0).session.sid
    core.sessions[sid].send(message)
    headers = [("Accept-Encoding", accept_encoding)] if accept_encoding is not None else []
    return core.handle_request(get(f"/engine.io/?EIO=4&transport=polling&sid={sid}", headers),
                               1.0).reply


# --- the decision --------------------------------------------------------------------------------

@pytest.mark.parametrize("accept, chosen", [
    ("gzip, deflate, br", "gzip"),          # aiohttp, browsers
    ("deflate, gzip", "deflate"),           # negotiator: the client's order on equal q
    ("gzip;q=0.5, deflate", "deflate"),     # higher q first
    ("*", "gzip"), ("br, *;q=0.1", "gzip"),  # the server's order under "*"
    ("gzip;q=0, *", "deflate"),             # an exact name beats "*"
    ("gzip;q=0, deflate;q=0", None), ("identity", None), ("br", None), ("", None), (None, None),
    ("GZIP", "gzip"), ("gzip;q=bad, deflate", "deflate"),
])
def test_choose_encoding_as_negotiator_does(accept, chosen):
    assert choose_encoding(accept) == chosen


# --- the answer, exact headers -------------------------------------------------------------------

def test_a_large_answer_is_gzipped_for_a_client_that_accepts_it():
    message = "x" * 2000
    reply = poll(message, "gzip, deflate")
    assert reply.headers == (("Content-Type", TEXT_PLAIN), ("Content-Encoding", "gzip"),
                             ("Content-Length", str(len(reply.body))))
    assert reply.body[:3] == b"\x1f\x8b\x08" and gzip.decompress(reply.body) == b"4" + message.encode()
    assert reply.body == encode(b"4" + message.encode(), "gzip")
    assert reply.to_bytes().startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                                       b"Content-Encoding: gzip\r\nContent-Length: ")


def test_deflate_is_a_zlib_stream():
    reply = poll("y" * 2000, "deflate")
    assert dict(reply.headers)["Content-Encoding"] == "deflate"
    assert zlib.decompress(reply.body) == b"4" + b"y" * 2000  # RFC 1950, as Node's createDeflate


@pytest.mark.parametrize("size, compressed", [(1022, False), (1023, True), (5000, True)])
def test_the_threshold_is_1024_bytes_of_body(size, compressed):
    """The body is "4" + the message: 1023 characters make a 1024-byte body."""
    reply = poll("z" * size, "gzip")
    assert ("Content-Encoding" in dict(reply.headers)) == compressed


@pytest.mark.parametrize("accept, options", [(None, {}), ("br", {}), ("gzip", {"http_compression": False}),
                                             ("gzip", {"compression_threshold": 10_000})])
def test_no_compression(accept, options):
    reply = poll("w" * 2000, accept, **options)
    assert reply.headers == ((("Content-Type", TEXT_PLAIN), ("Content-Length", "2001")))
    assert reply.body == b"4" + b"w" * 2000


def test_a_held_poll_is_compressed_per_its_own_request():
    core = EngineServerCore(rng=random.Random(7))
    sid = core.handle_request(get("/engine.io/?EIO=4&transport=polling"), 0.0).session.sid
    held = get(f"/engine.io/?EIO=4&transport=polling&sid={sid}", [("Accept-Encoding", "deflate")])
    core.handle_request(held, 1.0)  # held
    [answer] = core.sessions[sid].send("v" * 3000)
    reply = core.answer_held_poll(held, answer.packets)
    assert dict(reply.headers)["Content-Encoding"] == "deflate"
    assert zlib.decompress(reply.body) == b"4" + b"v" * 3000


def test_decode_is_bounded():
    bomb = encode(bytes(10 << 20), "gzip")
    assert len(bomb) < 20_000
    with pytest.raises(PayloadTooBig):
        decode(bomb, "gzip", max_size=1 << 20)
    assert decode(encode(b"abc", "deflate"), "deflate", 3) == b"abc"
    for bad in [(b"abc", "gzip"), (b"abc", "br"), (encode(b"abc" * 100, "gzip")[:-10], "gzip")]:
        with pytest.raises(ValueError):
            decode(*bad)


# --- over sockets: both clients, and the dissector -------------------------------------------------

BIG = "chat message, " * 300  # 4200 characters


async def lablib_client_round_trip(port: int, **client_options) -> list[str]:
    client = AsyncClient(random.Random(3), **client_options)
    got: list[str] = []
    client.on("message", got.append)
    await client.connect(f"http://127.0.0.1:{port}", transports=["polling"])
    await until(lambda: got)
    await client.disconnect()
    return got


def serve_big_message() -> Server:
    server = Server(rng=random.Random(5))
    server.on("connect", lambda sid, request: asyncio.get_running_loop().call_soon(
        lambda: asyncio.ensure_future(server.send(sid, BIG))))
    return server


@asyncio_test(timeout=20)
async def test_lablib_client_asks_for_and_decodes_compressed_polls():
    server = serve_big_message()
    await server.start("127.0.0.1", 0)
    try:
        async with Relay("127.0.0.1", server.port) as relay:
            assert await lablib_client_round_trip(relay.port, http_compression=True) == [BIG]
            await relay.wait_idle()
    finally:
        await server.close()
    records = [r for c in relay.capture for r in dissect(c)]
    answers = [r for r in records if r.kind == "response"
               and ("Content-Encoding", "gzip") in r.fields["headers"]]
    assert len(answers) == 1 and len(answers[0].fields["body"]) < len(BIG) // 10
    gets = [r for r in records if r.kind == "request" and r.fields["method"] == "GET"]
    assert all(("Accept-Encoding", "gzip, deflate") in g.fields["headers"] for g in gets)
    # the Engine.IO layer of the dissector reads the packet inside the gzip body
    packets = [r for r in records if r.layer == "engineio" and r.fields.get("data") == BIG]
    assert len(packets) == 1 and packets[0].direction == "s2c"


@asyncio_test(timeout=20)
async def test_lablib_client_by_default_asks_for_nothing():
    server = serve_big_message()
    await server.start("127.0.0.1", 0)
    try:
        async with Relay("127.0.0.1", server.port) as relay:
            assert await lablib_client_round_trip(relay.port) == [BIG]
            await relay.wait_idle()
    finally:
        await server.close()
    headers = [h for c in relay.capture for r in dissect(c) if r.layer == "http" for h in r.fields["headers"]]
    assert not [h for h in headers if h[0].lower() in ("accept-encoding", "content-encoding")]


@asyncio_test(timeout=20)
async def test_python_engineio_client_gets_compressed_polls_from_lablib_server():
    server = serve_big_message()
    await server.start("127.0.0.1", 0)
    try:
        async with Relay("127.0.0.1", server.port) as relay:
            client = engineio.AsyncClient()
            got: list[str] = []
            client.on("message", got.append)
            await client.connect(f"http://127.0.0.1:{relay.port}", transports=["polling"])
            await until(lambda: got)
            await client.disconnect()
            await relay.wait_idle()
    finally:
        await server.close()
    assert got == [BIG]
    records = [r for c in relay.capture for r in dissect(c)]
    assert [r for r in records if r.kind == "response"
            and any(k == "Content-Encoding" for k, _ in r.fields["headers"])]


@asyncio_test(timeout=20)
async def test_lablib_client_decodes_python_engineio_server_compression():
    """python-engineio compresses polls too (http_compression=True, threshold 1024)."""
    from tests.interop.test_engineio_client import engineio_server

    async with engineio_server() as (eio, url, log, requests):
        client = AsyncClient(random.Random(3), http_compression=True)
        got: list[str] = []
        client.on("message", got.append)
        await client.connect(url, transports=["polling"])
        await until(lambda: log)  # the server's connect handler has run
        await eio.send(client.sid, BIG)
        await until(lambda: got)
        await client.disconnect()
    assert got == [BIG]


# --- the same bytes as the Node server's zlib --------------------------------------------------------

@pytest.mark.node
@pytest.mark.parametrize("encoding, node_function", [("gzip", "gzipSync"), ("deflate", "deflateSync")])
def test_encoding_equals_node_zlib(encoding, node_function):
    """polling.ts pipes the body through createGzip/createDeflate with default options: the
    same bytes as ours (Node's bundled zlib, defaults level 6, window 15, memLevel 8)."""
    import shutil
    import subprocess

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    body = "4" + BIG
    script = (f"process.stdout.write(require('zlib').{node_function}("
              f"Buffer.from(process.argv[1])).toString('hex'))")
    node = subprocess.run(["node", "-e", script, body], capture_output=True, text=True, check=True,
                          timeout=60)
    assert encode(body.encode(), encoding).hex() == node.stdout
