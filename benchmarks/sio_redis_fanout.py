"""Broadcast through Redis to 1,000 clients spread over 1, 2 and 4 server processes.

lablib (``RedisAdapter``, the @socket.io/redis-adapter protocol) against python-socketio
(``AsyncRedisManager``), each on the same embedded Redis (``REDIS_URL`` to use another).  For
each implementation and process count: start the server processes (``--serve``), connect 1,000
clients round-robin (all in the room ``room``) and one control client to process 0, which then
broadcasts ``--messages`` events of ~100 bytes to the room in a loop of awaited emits; the other
processes get each one through Redis.  Measured: deliveries (messages x clients) per second from
the control client's ``start`` until every client has every message.  Median of ``--repeats``.

The clients are raw WebSocket connections (one process, asyncio protocols) that count the bytes
they receive: every delivery is the same unmasked frame, so the count says when all arrived and
the client side costs the same for both servers.  Heartbeats are pushed out of the way.

    python -m benchmarks sio_redis_fanout [--quick] [--repeats 5]
    python -m benchmarks.sio_redis_fanout --quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from . import reap

ROOM = "room"
CLIENTS = 1000
PAYLOAD = "x" * 100
IMPLS = ("lablib", "python-socketio")


# --- the servers (subprocesses) -----------------------------------------------------------------

async def serve_lablib(url: str) -> None:
    from lablib.socketio.redis_adapter import RedisAdapter
    from lablib.socketio.server import Server, serve
    sio = Server(adapter_factory=RedisAdapter.factory(url), ping_interval=600_000,
                 ping_timeout=600_000, max_queue=10_000)

    @sio.event
    async def connect(sid, request, auth):
        if not (auth or {}).get("control"):
            sio.enter_room(sid, ROOM)

    @sio.on("start")
    async def start(sid, count, payload):
        for _ in range(count):
            await sio.emit("m", payload, room=ROOM)

    async with serve(sio, "127.0.0.1", 0) as server:
        print(server.port, flush=True)
        await _until_stdin_closes()


async def serve_python_socketio(url: str) -> None:
    import socketio
    from aiohttp import web
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=600, ping_timeout=600,
                               client_manager=socketio.AsyncRedisManager(url))
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid, environ, auth=None):
        if not (auth or {}).get("control"):
            await sio.enter_room(sid, ROOM)

    @sio.on("start")
    async def start(sid, count, payload):
        for _ in range(count):
            await sio.emit("m", payload, room=ROOM)

    sio.manager.initialize()   # subscribe now, not on the first connection
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await _until_stdin_closes()


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- the clients (this process) -----------------------------------------------------------------

def _client_frame(text: str) -> bytes:
    """A masked text frame (mask key 0: the payload XOR 0 is itself; RFC 6455 §5.3 allows it)."""
    data = text.encode()
    assert len(data) < 126
    return bytes([0x81, 0x80 | len(data)]) + b"\0\0\0\0" + data


def _server_frame_size(text: str) -> int:
    n = len(text.encode())
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


class Counter:
    def __init__(self, target: int) -> None:
        self.received = 0
        self.target = target
        self.done = asyncio.Event()

    def add(self, n: int) -> None:
        self.received += n
        if self.received >= self.target:
            self.done.set()


class RawClient(asyncio.Protocol):
    """Engine.IO v4 over WebSocket by hand: upgrade, CONNECT "/", then count bytes."""

    def __init__(self, auth: str = "") -> None:
        self.auth = auth
        self.buffer = b""
        self.connected = asyncio.get_running_loop().create_future()
        self.counter: Counter | None = None
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                        b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")
        self.sent_connect = False

    def data_received(self, data: bytes) -> None:
        if self.counter is not None:
            self.counter.add(len(data))
            return
        self.buffer += data
        if not self.sent_connect and b'0{"sid"' in self.buffer:
            self.sent_connect = True
            self.transport.write(_client_frame("40" + self.auth))
        if b'40{"sid"' in self.buffer and not self.connected.done():
            self.connected.set_result(None)

    def send(self, text: str) -> None:
        self.transport.write(_client_frame(text))


async def _connect(port: int, auth: str = "") -> RawClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: RawClient(auth), "127.0.0.1", port)
    await asyncio.wait_for(client.connected, 60)
    return client


async def _run_once(ports: list[int], messages: int) -> float:
    clients = []
    for index in range(CLIENTS):
        clients.append(await _connect(ports[index % len(ports)]))
    control = await _connect(ports[0], '{"control":true}')
    await asyncio.sleep(0.5)   # let every connection settle (nothing else is in flight)
    frame = _server_frame_size(f'42["m","{PAYLOAD}"]')
    counter = Counter(CLIENTS * messages * frame)
    for client in clients:
        client.counter = counter
    start = time.perf_counter()
    control.send(f'42["start",{messages},"{PAYLOAD}"]')
    await asyncio.wait_for(counter.done.wait(), 300)
    elapsed = time.perf_counter() - start
    for client in (*clients, control):
        client.transport.close()
    await asyncio.sleep(0.2)
    return CLIENTS * messages / elapsed


def _start_servers(impl: str, url: str, count: int) -> tuple[list[subprocess.Popen], list[int]]:
    processes, ports = [], []
    for _ in range(count):
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sio_redis_fanout", "--serve", impl, "--redis", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        processes.append(process)
    for process in processes:
        line = process.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"a {impl} server did not start")
        ports.append(int(line))
    return processes, ports


def _stop_servers(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.stdin.close()
    for process in processes:
        reap(process)


async def _wait_subscribed(url: str, impl: str, count: int) -> None:
    import redis.asyncio as aioredis
    client = aioredis.Redis.from_url(url)
    channel = "socket.io-request#/#" if impl == "lablib" else "socketio"
    try:
        async with asyncio.timeout(60):
            while (await client.pubsub_numsub(channel))[0][1] < count:
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def _measure(url: str, impl: str, processes: int, messages: int, repeats: int) -> float:
    servers, ports = _start_servers(impl, url, processes)
    try:
        await _wait_subscribed(url, impl, processes)
        rates = [await _run_once(ports, messages) for _ in range(repeats)]
    finally:
        _stop_servers(servers)
    return statistics.median(rates)


def run(repeats: int = 3, messages: int = 50, quick: bool = False,
        process_counts: tuple[int, ...] = (1, 2, 4)) -> str:
    """The table: processes, lablib and python-socketio deliveries/s, ratio."""
    from lablib.services.redis import redis_server
    if quick:
        repeats, messages = 1, 10
    rows = []
    with redis_server() as url:
        for count in process_counts:
            rates = {impl: asyncio.run(_measure(url, impl, count, messages, repeats))
                     for impl in IMPLS}
            rows.append((count, rates["lablib"], rates["python-socketio"]))
    lines = [f"Socket.IO broadcast through Redis to {CLIENTS} clients ({messages} messages of "
             f"{len(PAYLOAD)} B, median of {repeats}; deliveries/s)",
             f"{'processes':>9}  {'lablib':>10}  {'python-socketio':>15}  {'ratio':>6}"]
    for count, ours, theirs in rows:
        lines.append(f"{count:>9}  {ours:>10,.0f}  {theirs:>15,.0f}  {ours / theirs:>5.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sio_redis_fanout")
    parser.add_argument("--serve", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 10 messages (< 60 s)")
    args = parser.parse_args(argv)
    if args.serve:
        serve = serve_lablib if args.serve == "lablib" else serve_python_socketio
        asyncio.run(serve(args.redis))
        return
    print(run(args.repeats, args.messages, args.quick), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
