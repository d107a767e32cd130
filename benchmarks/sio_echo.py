"""Socket.IO: lablib's server against python-socketio's ``AsyncServer`` (aiohttp).

Two kinds of scenario, each run against both servers with the *same* client:

- **echo-with-ack**: each client calls ``call("echo", text)`` in a loop - it sends the event
  ``42<id>["echo","<32 B text>"]`` and waits for the acknowledgement ``43<id>["<32 B text>"]``
  before sending the next.  The server's handler is ``async def echo(sid, text): return text``.
  1 client (2,000 calls), and 50 clients at once (100 calls each, one call in flight per
  client).  Everything runs over the WebSocket transport; the connections are opened before
  the clock starts.
- **connect**: N connections one after the other, each timed from its first byte to its first
  acknowledged event: ``polling -> websocket`` (the handshake over HTTP long-polling, CONNECT
  by POST, then the upgrade: probe, ``5``, and the event over the WebSocket - what
  socket.io-client does by default) and ``websocket only`` (the handshake, CONNECT and the
  event over one WebSocket).

The client is our own minimal one, as cheap as we could make it, so that its cost is small
and identical for both servers: blocking sockets (a selector for the 50 clients), Engine.IO
and Socket.IO packets and their masked WebSocket frames encoded by hand *before* the clock
starts, and every answer compared byte for byte with the frame both servers must send.  (A
library client - lablib's or python-socketio's ``AsyncClient`` - would spend more time per
call than either server, and the ratio would tend to 1.)  So it knows the wire formats
Engine.IO v4 and Socket.IO v5 fix, and nothing else; the two servers differ in what the
protocol leaves open (python-engineio answers a POST with ``OK``, lablib with ``ok``), and the
client accepts both.

Each server runs in a subprocess (``python -m benchmarks.sio_echo --serve NAME``), heartbeats
off in practice (ping interval 60 s), python-socketio with its defaults otherwise (its
``async_handlers=True`` starts a task per event).  Server CPU µs/op is the server process's own
CPU time (Linux ``/proc/PID/schedstat``) per call or per connection - for connections that
includes closing them, which happens after each connection's clock stops.  CPU pinning
(``--cpus same|split|any``) as in :mod:`benchmarks.ws_echo`, whose docstring says why it
matters more than either library.  ``--profile FILE`` runs the lablib server under cProfile
and writes its statistics to FILE (then: ``python -m pstats FILE``).

    python -m benchmarks.sio_echo [--repeats 7] [--calls 2000] [--connects 100]
                                  [--cpus same|split|any] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Callable

from . import format_table, ratio
from .ws_echo import placement, server_cpu_time, stop_server

TEXT = "0123456789abcdefghijklmnopqrstuv"   # the 32-byte argument of every echo call
MASKING_KEY = b"\x37\xfa\x21\x3d"
PATH = "/socket.io/"
PING_INTERVAL_S = 60                        # no heartbeat during a run
SERVERS = ("lablib", "python-socketio")


# --- the servers (each runs in a subprocess: python -m benchmarks.sio_echo --serve NAME) ---------

async def _serve(name: str) -> None:
    """Serve until stdin closes; the first line on stdout is the port."""
    loop = asyncio.get_running_loop()
    if name == "lablib":
        from lablib.socketio.server import Server, serve
        sio = Server(ping_interval=PING_INTERVAL_S * 1000)

        @sio.on("echo")
        async def echo(sid, text):
            return text

        async with serve(sio, "127.0.0.1", 0) as server:
            print(server.port, flush=True)
            await loop.run_in_executor(None, sys.stdin.read)  # the parent closes our stdin
        return
    import socketio
    from aiohttp import web
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=PING_INTERVAL_S)

    @sio.on("echo")
    async def echo(sid, text):
        return text

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def _serve_profiled(name: str, path: str) -> None:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_serve(name))
    finally:
        profiler.disable()
        profiler.dump_stats(path)


def start_server(name: str, cpus: set[int] | None, profile: str | None = None
                 ) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "benchmarks.sio_echo", "--serve", name]
    if profile and name == "lablib":
        command += ["--profile", profile]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if cpus is not None:
        os.sched_setaffinity(proc.pid, cpus)
    return proc, int(proc.stdout.readline())


# --- the wire, encoded by hand --------------------------------------------------------------------

def ws_frame(text: str | bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 §5.2) holding ``text``; built once, before timing."""
    payload = text.encode() if isinstance(text, str) else text
    n = len(payload)
    if n <= 125:
        header = bytes((0x80 | opcode, 0x80 | n))
    else:
        assert n < 65536
        header = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", n)
    key = (MASKING_KEY * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + MASKING_KEY + masked


def server_frame(text: str) -> bytes:
    """The unmasked text frame a server sends (short payloads only)."""
    payload = text.encode()
    assert len(payload) <= 125
    return bytes((0x81, len(payload))) + payload


def event_frames(count: int) -> tuple[list[bytes], list[bytes]]:
    """For ack ids 0..count-1: the client's event frames and the servers' ack frames.

    Engine.IO ``4`` (message) + Socket.IO ``2`` (EVENT) + ack id + JSON, and back ``4`` + ``3``
    (ACK) + the same id + the handler's return value as a one-item array.
    """
    argument = json.dumps(TEXT)
    return ([ws_frame(f"42{i}[\"echo\",{argument}]") for i in range(count)],
            [server_frame(f"43{i}[{argument}]") for i in range(count)])


CLOSE_FRAME = ws_frame(struct.pack("!H", 1000), opcode=0x8)


class Stream:
    """A blocking socket with a read buffer: exactly the reads the client needs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = port
        self.buffer = b""

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_head(self) -> tuple[int, dict[str, str]]:
        """An HTTP response head: (status, header fields with lower-case names)."""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), fields

    def read_response(self) -> tuple[int, str]:
        """A whole HTTP response with a Content-Length body (both servers send one)."""
        status, fields = self.read_head()
        if "content-length" not in fields:
            raise ConnectionError(f"no Content-Length in the answer: {fields}")
        return status, self.read_exact(int(fields["content-length"])).decode()

    def read_frame(self) -> str:
        """One unmasked text frame from the server."""
        first, second = self.read_exact(2)
        if first != 0x81:
            raise ConnectionError(f"expected a text frame, got first byte {first:#x}")
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self.read_exact(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self.read_exact(8))[0]
        return self.read_exact(size).decode()

    def request(self, method: str, query: str, body: str = "") -> None:
        extra = (f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
                 if method == "POST" else "")
        self.sock.sendall(f"{method} {PATH}?{query} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                          f"{extra}\r\n{body}".encode())

    def upgrade(self, query: str) -> None:
        """RFC 6455 §4.1 opening handshake (the Sec-WebSocket-Accept is not checked)."""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {PATH}?{query} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        status, _ = self.read_head()
        if status != 101:
            raise ConnectionError(f"WebSocket handshake refused: {status}")

    def close(self) -> None:
        try:
            self.sock.sendall(CLOSE_FRAME)
        except OSError:
            pass
        self.sock.close()


def _expect(what: str, got: str, prefix: str) -> None:
    if not got.startswith(prefix):
        raise AssertionError(f"{what}: expected {prefix!r}..., got {got!r}")


# --- the client: one connection ---------------------------------------------------------------------

FIRST_EVENT, FIRST_ACK = ws_frame(f'420["echo",{json.dumps(TEXT)}]'), f"430[{json.dumps(TEXT)}]"


def connect_websocket(port: int) -> Stream:
    """Engine.IO handshake over a WebSocket, then CONNECT to "/": ready for events."""
    stream = Stream(port)
    stream.upgrade("EIO=4&transport=websocket")
    _expect("open packet", stream.read_frame(), '0{"sid":')
    stream.sock.sendall(ws_frame("40"))
    _expect("CONNECT answer", stream.read_frame(), '40{"sid":')
    return stream


def first_ack(stream: Stream) -> None:
    stream.sock.sendall(FIRST_EVENT)
    answer = stream.read_frame()
    while answer == "6":   # a noop is allowed before it
        answer = stream.read_frame()
    if answer != FIRST_ACK:
        raise AssertionError(f"expected {FIRST_ACK!r}, got {answer!r}")


def connect_polling_then_upgrade(port: int) -> tuple[Stream, Stream]:
    """What socket.io-client does by default, one step after the other."""
    polling = Stream(port)
    polling.request("GET", "EIO=4&transport=polling")
    status, body = polling.read_response()
    if status != 200:
        raise ConnectionError(f"handshake refused: {status} {body!r}")
    _expect("open packet", body, '0{"sid":')
    sid = json.loads(body[1:])["sid"]
    query = f"EIO=4&transport=polling&sid={sid}"
    polling.request("POST", query, "40")
    status, body = polling.read_response()
    if status != 200 or body.lower() != "ok":
        raise ConnectionError(f"POST refused: {status} {body!r}")
    polling.request("GET", query)
    status, body = polling.read_response()
    _expect("CONNECT answer", body, '40{"sid":')
    polling.request("GET", query)               # held: the upgrade will release it
    websocket = Stream(port)
    websocket.upgrade(f"EIO=4&transport=websocket&sid={sid}")
    websocket.sock.sendall(ws_frame("2probe"))
    _expect("probe answer", websocket.read_frame(), "3probe")
    status, body = polling.read_response()      # the held GET, released with a noop
    _expect("released poll", body, "6")
    websocket.sock.sendall(ws_frame("5"))
    return polling, websocket


def time_connects(port: int, count: int, upgrade: bool) -> float:
    """Seconds from each connection's first byte to its first ack, summed over ``count``."""
    total = 0.0
    for _ in range(count):
        start = time.perf_counter()
        if upgrade:
            polling, websocket = connect_polling_then_upgrade(port)
        else:
            polling, websocket = None, connect_websocket(port)
        first_ack(websocket)
        total += time.perf_counter() - start
        websocket.close()
        if polling is not None:
            polling.sock.close()
    return total


# --- the client: echo calls ------------------------------------------------------------------------

def echo_one(stream: Stream, requests: list[bytes], answers: list[bytes], first: int,
             count: int) -> None:
    sock = stream.sock
    for i in range(first, first + count):
        sock.sendall(requests[i])
        expected = answers[i]
        size = len(expected)
        answer = sock.recv(size)
        while len(answer) < size:
            more = sock.recv(size - len(answer))
            if not more:
                raise ConnectionError("the server closed the connection")
            answer += more
        if answer != expected:
            raise AssertionError(f"bad ack {answer!r}, expected {expected!r}")


def echo_many(streams: list[Stream], requests: list[bytes], answers: list[bytes], first: int,
              count: int) -> None:
    """Every client calls ``count`` times, one call in flight each; a selector multiplexes them."""
    selector = selectors.DefaultSelector()
    state = {}
    for stream in streams:
        stream.sock.setblocking(False)
        selector.register(stream.sock, selectors.EVENT_READ, stream)
        state[stream] = [first, b""]   # next ack id, bytes received
        stream.sock.send(requests[first])
    last = first + count - 1
    running = len(streams)
    try:
        while running:
            for key, _ in selector.select():
                stream = key.data
                entry = state[stream]
                entry[1] += stream.sock.recv(65536)
                i = entry[0]
                expected = answers[i]
                if len(entry[1]) < len(expected):
                    continue
                if entry[1] != expected:
                    raise AssertionError(f"bad ack {entry[1]!r}, expected {expected!r}")
                entry[1] = b""
                if i == last:
                    selector.unregister(stream.sock)
                    running -= 1
                else:
                    entry[0] = i + 1
                    stream.sock.send(requests[i + 1])
    finally:
        selector.close()
        for stream in streams:
            stream.sock.setblocking(True)


def time_echo(port: int, clients: int, calls: int, pid: int) -> tuple[float, float | None]:
    """(wall seconds, server CPU seconds) for ``clients`` x ``calls`` calls, after a warm-up."""
    warmup = 100 if clients == 1 else 10
    requests, answers = event_frames(warmup + calls)
    streams = [connect_websocket(port) for _ in range(clients)]
    try:
        if clients == 1:
            echo_one(streams[0], requests, answers, 0, warmup)
            run = lambda: echo_one(streams[0], requests, answers, warmup, calls)  # noqa: E731
        else:
            echo_many(streams, requests, answers, 0, warmup)
            run = lambda: echo_many(streams, requests, answers, warmup, calls)  # noqa: E731
        return _measured(run, pid)
    finally:
        for stream in streams:
            stream.close()


def _measured(run: Callable[[], object], pid: int) -> tuple[float, float | None]:
    import gc
    before = server_cpu_time(pid)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        result = run()
        wall = time.perf_counter() - start
    finally:
        gc.enable()
    after = server_cpu_time(pid)
    if isinstance(result, float):   # the connect scenarios time themselves (start to ack)
        wall = result
    return wall, (after - before if before is not None and after is not None else None)


# --- the benchmark ---------------------------------------------------------------------------------

def run(repeats: int = 7, calls: int = 2000, connects: int = 100, cpus: str = "same",
        clients: int = 50, calls_per_client: int = 100, profile: str | None = None) -> str:
    from importlib.metadata import version

    client_cpus, server_cpus, where = placement(cpus)
    own_cpus = os.sched_getaffinity(0) if client_cpus is not None else None
    scenarios: list[tuple[str, int, Callable[[int, int], tuple[float, float | None]]]] = [
        (f"echo-with-ack, 1 client x {calls:,} calls", calls,
         lambda port, pid: time_echo(port, 1, calls, pid)),
        (f"echo-with-ack, {clients} clients x {calls_per_client} calls",
         clients * calls_per_client,
         lambda port, pid: time_echo(port, clients, calls_per_client, pid)),
        (f"connect polling->websocket + 1st ack x {connects}", connects,
         lambda port, pid: _measured(lambda: time_connects(port, connects, True), pid)),
        (f"connect websocket only + 1st ack x {connects}", connects,
         lambda port, pid: _measured(lambda: time_connects(port, connects, False), pid)),
    ]
    servers = {name: start_server(name, server_cpus, profile) for name in SERVERS}
    rows = []
    try:
        if client_cpus is not None:
            os.sched_setaffinity(0, client_cpus)
        for label, ops, scenario in scenarios:
            wall: dict[str, list[float]] = {name: [] for name in SERVERS}
            cpu: dict[str, list[float]] = {name: [] for name in SERVERS}
            for _ in range(repeats):
                for name, (proc, port) in servers.items():   # alternate: lablib, python-socketio
                    seconds, server_cpu = scenario(port, proc.pid)
                    wall[name].append(seconds)
                    if server_cpu is not None:
                        cpu[name].append(server_cpu)
            t_lab, t_ref = statistics.median(wall["lablib"]), statistics.median(wall["python-socketio"])
            row = [label, f"{ops / t_lab:,.0f}", f"{ops / t_ref:,.0f}", ratio(t_ref, t_lab)]
            if cpu["lablib"] and cpu["python-socketio"]:
                c_lab = statistics.median(cpu["lablib"])
                c_ref = statistics.median(cpu["python-socketio"])
                row += [f"{c_lab / ops * 1e6:.0f}", f"{c_ref / ops * 1e6:.0f}", ratio(c_ref, c_lab)]
            else:
                row += ["n/a", "n/a", "n/a"]   # no /proc/PID/schedstat here
            rows.append(row)
    finally:
        if own_cpus is not None:
            os.sched_setaffinity(0, own_cpus)
        for proc, _ in servers.values():
            stop_server(proc)
    headers = ["scenario", "lablib ops/s", "python-socketio ops/s", "ratio",
               "lablib server CPU µs/op", "python-socketio server CPU µs/op", "CPU ratio"]
    title = (f"Socket.IO server, raw minimal client, servers in subprocesses, {where}, "
             f"median of {repeats} runs (python-socketio {version('python-socketio')}, aiohttp)\n"
             "op = one call (event + its ack) or one connection (to its first ack); "
             "ratio = python-socketio time / lablib time (>1: lablib faster)")
    return title + "\n\n" + format_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="calls of the 1-client scenario")
    parser.add_argument("--connects", type=int, default=100, help="connections per connect run")
    parser.add_argument("--cpus", choices=["same", "split", "any"], default="same",
                        help="where client and servers run (see benchmarks/ws_echo.py)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the lablib server under cProfile, statistics to FILE")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        if args.profile:
            _serve_profiled(args.serve, args.profile)
        else:
            asyncio.run(_serve(args.serve))
    else:
        print(run(args.repeats, args.calls, args.connects, args.cpus,
                  profile=os.path.abspath(args.profile) if args.profile else None))


if __name__ == "__main__":
    main()
