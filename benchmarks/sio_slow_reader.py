"""A slow reader in a room: does it delay a Socket.IO broadcast, and what memory does it pin?

Three WebSocket clients join the room "room" of a Socket.IO server: two healthy ones that read
everything, and one whose socket has a 4 KiB receive buffer and never reads.  A healthy client
sends ``start``; the server then broadcasts ``--count`` messages of ``--size`` bytes (50 x 1 MB
by default, ~50 MB) to the room, in a plain loop of ``await sio.emit("blob", data, room="room")``.

Measured: the time from ``start`` until *both* healthy clients have the last message, whether
the slow client was disconnected, and the server process's peak RSS (``ru_maxrss``, asked for
with an acknowledged ``rss`` event at the end, so it includes everything the broadcast made
it hold).  The server runs in a subprocess (``--serve``), with its default heartbeat (ping
every 25 s, 20 s to answer): a server that waits for the slow client finishes only when the
heartbeat drops it.

    python -m benchmarks.sio_slow_reader [--impl lablib|python-socketio] [--count 50]
                                         [--size 1000000]
    PYTHONPATH=../lablib-old python -m benchmarks.sio_slow_reader   # lablib as of another commit (a git worktree)

The clients are raw sockets speaking Engine.IO/Socket.IO by hand (unmasked server frames are
parsed with ``struct``), so the measurement is the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time

ROOM = "room"


# --- the server (subprocess) -------------------------------------------------------------------

async def serve_lablib(count: int, size: int) -> None:
    from lablib.socketio.server import Server, serve
    sio = Server()
    blob = "x" * size

    @sio.event
    async def connect(sid, request, auth):
        sio.enter_room(sid, ROOM)

    @sio.on("start")
    async def start(sid):
        asyncio.get_running_loop().create_task(broadcast())

    async def broadcast():
        for _ in range(count):
            await sio.emit("blob", blob, room=ROOM)

    sio.on("rss", lambda sid: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    sio.on("members", lambda sid: len(sio.core.adapter("/").members(ROOM)))
    async with serve(sio, "127.0.0.1", 0) as server:
        print(server.port, flush=True)
        await asyncio.Event().wait()


async def serve_python_socketio(count: int, size: int) -> None:
    import socketio
    from aiohttp import web
    sio = socketio.AsyncServer(async_mode="aiohttp", max_http_buffer_size=10 * size)
    app = web.Application()
    sio.attach(app)
    blob = "x" * size

    @sio.event
    async def connect(sid, environ, auth=None):
        await sio.enter_room(sid, ROOM)

    @sio.on("start")
    async def start(sid):
        for _ in range(count):
            await sio.emit("blob", blob, room=ROOM)

    @sio.on("rss")
    async def rss(sid):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @sio.on("members")
    async def members(sid):
        return len(list(sio.manager.get_participants("/", ROOM)))

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# --- the clients ----------------------------------------------------------------------------------

def frame(text: str) -> bytes:
    """A masked client text frame (mask key 0: the payload reads as is)."""
    data = text.encode()
    n = len(data)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    return head + b"\0\0\0\0" + data


UPGRADE = ("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class Healthy:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Healthy":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        writer.write(UPGRADE.encode())
        await reader.readuntil(b"\r\n\r\n")
        client = cls(reader, writer)
        assert (await client.message()).startswith("0")
        writer.write(frame("40"))
        assert (await client.message()).startswith("40")
        return client

    async def message(self) -> str:
        """The next Engine.IO message; answers pings on the way."""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            text = (await self.reader.readexactly(n)).decode()
            if text == "2":
                self.writer.write(frame("3"))
                continue
            return text

    async def call(self, event: str, ack_id: int) -> str:
        self.writer.write(frame('42%d["%s"]' % (ack_id, event)))
        while not (answer := await self.message()).startswith("43%d" % ack_id):
            pass
        return answer[len("43%d" % ack_id):]


def open_slow(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(UPGRADE.encode() + frame("40"))
    return sock   # never read from


async def scenario(port: int, count: int) -> dict:
    healthy = [await Healthy.open(port) for _ in range(2)]
    slow = open_slow(port)
    while json.loads(await healthy[0].call("members", 1))[0] < 3:
        await asyncio.sleep(0.01)
    done: list[float] = []

    async def receive_all(client: Healthy) -> None:
        got = 0
        while got < count:
            if (await client.message()).startswith('42["blob"'):
                got += 1
        done.append(time.perf_counter())

    start = time.perf_counter()
    healthy[0].writer.write(frame('42["start"]'))
    await asyncio.gather(*(receive_all(client) for client in healthy))
    elapsed = max(done) - start
    members = json.loads(await healthy[0].call("members", 2))[0]
    rss_kib = json.loads(await healthy[0].call("rss", 3))[0]
    slow.close()
    for client in healthy:
        client.writer.close()
    return {"healthy done (s)": round(elapsed, 2), "room members after": members,
            "server peak RSS (MiB)": round(rss_kib / 1024, 1)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sio_slow_reader")
    parser.add_argument("--impl", choices=["lablib", "python-socketio"], default="lablib")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve = serve_lablib if args.impl == "lablib" else serve_python_socketio
        asyncio.run(serve(args.count, args.size))
        return
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.sio_slow_reader", "--serve",
                               "--impl", args.impl, "--count", str(args.count),
                               "--size", str(args.size)],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        port = int(server.stdout.readline())
        result = asyncio.run(scenario(port, args.count))
    finally:
        server.terminate()
        server.wait()
    where = "lablib" if args.impl == "lablib" else "python-socketio"
    if args.impl == "lablib":
        import lablib
        where += f" ({os.path.dirname(os.path.dirname(inspect.getfile(lablib)))})"
    print(f"{where}: {args.count} x {args.size} B to a room of 2 healthy + 1 never-reading client")
    for key, value in result.items():
        print(f"  {key:24} {value}")


if __name__ == "__main__":
    main(sys.argv[1:])
