"""Regenerate the reference captures in ``captures/`` (see ``captures/README.md``).

Run from the repository root::

    .venv/bin/python scripts/make_reference_captures.py            # all of them
    .venv/bin/python scripts/make_reference_captures.py ws-bad-input  # just one

Every capture is recorded through :class:`lablib.capture.relay.Relay`, so no capture rights are
needed: client -> relay -> server, all on 127.0.0.1.  The relay records byte streams; the pcap
writer invents the TCP/IP headers around them.  Before writing, :func:`renumber` gives the
ports fixed values (server 8080, the port the client also names in its ``Host`` header;
clients 50000, 50001, ...), so that the files read the same from one run to the next and
Wireshark's HTTP dissector recognises port 8080 without ``Decode As``.  What still changes from
run to run: timestamps, how TCP cut the streams into segments, the `websockets` client's
masking keys and the Socket.IO session ids.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
from pathlib import Path
from typing import Awaitable, Callable

from lablib.capture.pcap import write_pcap
from lablib.capture.records import Capture
from lablib.capture.relay import Relay

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
SERVER_PORT = 8080   #: the server's port in the written files
CLIENT_PORT = 50000  #: the first client's port in the written files; the next gets 50001, ...

# The conversation both WebSocket echo captures hold (RFC 6455 §5.6, §5.4, §5.5.2, §5.5.1).
TEXT = "Hello"
BINARY = bytes([0x00, 0x01, 0x02, 0xFD, 0xFE, 0xFF])
LONG_TEXT = "lorem ipsum " * 25            # 300 bytes: needs the 16-bit extended length
FRAGMENTS = ["Frag", "ment", "ed"]          # one text message in three frames
PING_PAYLOAD = b"are you there?"
CLOSE_REASON = "bye"


# --- one recording ------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def relay_to(server_port: int):
    """A recording relay to 127.0.0.1:server_port, listening on 8080 if that port is free."""
    try:
        relay = Relay("127.0.0.1", server_port, listen_port=SERVER_PORT)
        await relay.start()
    except OSError:                       # 8080 is taken: any port will do
        relay = Relay("127.0.0.1", server_port)
        await relay.start()
    try:
        yield relay
        await relay.wait_idle()           # every connection closed: the capture is complete
    finally:
        await relay.close()


def renumber(capture: Capture, server_port: int) -> Capture:
    """Fixed ports for the written file: the server gets ``server_port``, clients 50000 + id."""
    for conv in capture.conversations:
        conv.client = (conv.client[0], CLIENT_PORT + conv.id)
        conv.server = (conv.server[0], server_port)
    return capture


# --- the WebSocket echo conversation --------------------------------------------------------

async def echo_handler(ws) -> None:
    """The server side of both echo captures: send every message back (same API in both libs)."""
    async for message in ws:
        await ws.send(message)


async def talk(ws) -> None:
    """The client side of both echo captures; each step waits for the echo before the next."""
    for message in (TEXT, BINARY, LONG_TEXT, FRAGMENTS):
        await ws.send(message)
        await ws.recv()
    pong = await ws.ping(PING_PAYLOAD)
    await pong
    await ws.close(1000, CLOSE_REASON)


async def ws_echo_websockets() -> tuple[Capture, int]:
    """`websockets` client <-> `websockets` server, no compression so payloads stay readable."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async with serve(echo_handler, "127.0.0.1", 0, compression=None,
                     ping_interval=None) as server:
        server_port = server.sockets[0].getsockname()[1]
        async with relay_to(server_port) as relay:
            port = relay.port
            async with connect(f"ws://127.0.0.1:{port}/echo", compression=None,
                               ping_interval=None) as ws:
                await talk(ws)
    return relay.capture, port


async def ws_echo_lablib() -> tuple[Capture, int]:
    """lablib client <-> lablib server; seeded rngs make the key and masking keys reproducible."""
    from lablib.websocket.client import connect
    from lablib.websocket.server import serve

    async with serve(echo_handler, "127.0.0.1", 0, ping_interval=None,
                     rng=random.Random(2)) as server:
        async with relay_to(server.port) as relay:
            port = relay.port
            async with connect(f"ws://127.0.0.1:{port}/echo", ping_interval=None,
                               rng=random.Random(1)) as ws:
                await talk(ws)
    return relay.capture, port


# --- a client that breaks the rules ---------------------------------------------------------

#: RFC 6455 §1.3's sample key; the server must answer s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
#: RFC 6455 §5.7's example: "Hello" masked with the key 37 fa 21 3d.
MASKED_HELLO = bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")
#: FIN=1 with opcode 0x3, reserved for future data frames (§5.2), MASK=1, empty payload.
RESERVED_OPCODE_FRAME = bytes.fromhex("83 80 37 fa 21 3d")


async def ws_bad_input() -> tuple[Capture, int]:
    """A hand-written client sends a valid frame, then a reserved opcode: the server fails
    the connection with close code 1002 (§7.4.1) and closes TCP."""
    from lablib.websocket.server import serve

    async with serve(echo_handler, "127.0.0.1", 0, ping_interval=None,
                     rng=random.Random(3)) as server:
        async with relay_to(server.port) as relay:
            port = relay.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(("GET /echo HTTP/1.1\r\n"
                          f"Host: 127.0.0.1:{port}\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {SAMPLE_KEY}\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "\r\n").encode())
            await reader.readuntil(b"\r\n\r\n")       # 101 Switching Protocols
            writer.write(MASKED_HELLO)
            await reader.readexactly(7)               # the echo: 81 05 Hello
            writer.write(RESERVED_OPCODE_FRAME)
            await reader.read()                       # the close frame, then EOF
            writer.close()
            await writer.wait_closed()
    return relay.capture, port


# --- Socket.IO ------------------------------------------------------------------------------

async def socketio_echo() -> tuple[Capture, int]:
    """python-socketio client <-> server with the default transports: long-polling first,
    then the upgrade to WebSocket; one plain event and one event with an ack."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp")

    @sio.event
    async def echo(sid, data):
        await sio.emit("echo", data, to=sid)   # an event back to the sender ...
        return data                            # ... and, if the client asked for one, the ack

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        server_port = runner.addresses[0][1]
        async with relay_to(server_port) as relay:
            port = relay.port
            client = socketio.AsyncClient()
            echoes: asyncio.Queue = asyncio.Queue()
            client.on("echo", echoes.put)
            await client.connect(f"http://127.0.0.1:{port}")
            await client.emit("echo", "Hello")
            await echoes.get()
            await client.call("echo", "Hello with an ack")   # waits for the ack
            await echoes.get()
            await client.disconnect()
    finally:
        await runner.cleanup()
    return relay.capture, port


# --- main -----------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[], Awaitable[tuple[Capture, int]]]] = {
    "ws-echo-websockets": ws_echo_websockets,
    "ws-echo-lablib": ws_echo_lablib,
    "ws-bad-input": ws_bad_input,
    "socketio-echo": socketio_echo,
}


async def record(name: str) -> Capture:
    """Run one scenario and return its capture, ports renumbered (see :func:`renumber`)."""
    capture, port = await asyncio.wait_for(SCENARIOS[name](), 30)
    return renumber(capture, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"which captures (default: all of {', '.join(SCENARIOS)})")
    parser.add_argument("--out", type=Path, default=CAPTURES, help="directory to write to")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown capture(s): {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or SCENARIOS:
        capture = asyncio.run(record(name))
        path = args.out / f"{name}.pcap"
        write_pcap(capture, path)
        sizes = ", ".join(f"#{c.id} {c.bytes_c2s}+{c.bytes_s2c} B" for c in capture)
        print(f"{path}: {path.stat().st_size} bytes; {len(capture)} connection(s): {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
