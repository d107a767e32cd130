"""Cheap clients for the at-scale benchmarks: thousands per process, driven over a pipe.

A client is an asyncio ``Protocol`` that knows just enough of the wire to stay connected:

- ``ws``: the RFC 6455 opening handshake, then it answers every ping with a pong and hands text
  messages on (frames it sends are masked with the all-zero key, so the payload reads as is);
- ``sio-ws``: the same over ``/socket.io/?EIO=4&transport=websocket``: Engine.IO open packet,
  Socket.IO CONNECT ``40``, and ``3`` for every ``2`` (the Engine.IO heartbeat);
- ``sio-polling``: Engine.IO over HTTP long-polling, as socket.io-client does it: two TCP
  connections, one always holding a ``GET`` (packets from the server), one for ``POST``s.

No library client is used: a library client costs more per message than the servers being
measured.  A worker process (``python -m benchmarks._clients``) reads one JSON command per line on
stdin and answers one JSON line on stdout; :class:`Workers` drives several of them.  Times are
``time.monotonic()`` (CLOCK_MONOTONIC: the same clock in every process of the machine).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from . import reap
from .ws_memory import raise_open_file_limit

BATCH = 100          # connections opened at once by one worker
OPEN_TIMEOUT = 120.0


def _frame(text: str, opcode: int = 0x1) -> bytes:
    """A client frame, masked with the key 0 (RFC 6455 §5.3 lets the key be any 4 bytes)."""
    data = text.encode() if isinstance(text, str) else text
    n = len(data)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", n)
    return head + b"\0\0\0\0" + data


def _upgrade(path: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


class Client:
    """What every kind of client shares: readiness, counters, the latency samples."""

    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False
        self.received = 0            # "msg" events (fan-out)

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        self.closed = True

    def on_text(self, text: str) -> None:
        """A text message (raw WebSocket) or an Engine.IO packet (Socket.IO)."""
        w = self.worker
        if self.kind == "ws":
            w.answered(text.partition(" ")[0])
            return
        kind = text[:1]
        if kind == "2":
            w.pings += 1
            self.send("3")
        elif text.startswith("42"):
            self.received += 1
            w.delivered()
        elif text.startswith("43"):
            w.answered(text[2:text.index("[")])
        elif text.startswith("40"):
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "0":
            self.send("40")
        elif kind == "1" or text.startswith("41") or text.startswith("44"):
            self.closed = True


class WSClient(Client, asyncio.Protocol):
    def __init__(self, worker: "Worker", kind: str, port: int) -> None:
        super().__init__(worker)
        self.kind, self.port = kind, port
        self.buffer = b""
        self.upgraded = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        path = "/" if self.kind == "ws" else "/socket.io/?EIO=4&transport=websocket"
        transport.write(_upgrade(path, self.port))

    def connection_lost(self, exc) -> None:
        self.fail("connection lost")

    def send(self, text: str) -> None:
        self.transport.write(_frame(text))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.fail(f"handshake refused: {buffer[:40]!r}")
                self.transport.close()
                return
            self.upgraded = True
            buffer = buffer[end + 4:]
            if self.kind == "ws" and not self.ready.done():
                self.ready.set_result(None)
        pos, n = 0, len(buffer)
        while n - pos >= 2:
            opcode, size = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F
            head = 2
            if size == 126:
                if n - pos < 4:
                    break
                size, head = struct.unpack_from("!H", buffer, pos + 2)[0], 4
            elif size == 127:
                if n - pos < 10:
                    break
                size, head = struct.unpack_from("!Q", buffer, pos + 2)[0], 10
            if n - pos < head + size:
                break
            payload = buffer[pos + head:pos + head + size]
            pos += head + size
            if opcode == 0x1:
                self.on_text(payload.decode())
            elif opcode == 0x9:
                self.worker.pings += 1
                self.transport.write(_frame(payload, 0xA))
            elif opcode == 0x8:
                self.closed = True
                self.transport.close()
        self.buffer = buffer[pos:]


class _HTTP(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, Content-Length answers."""

    def __init__(self, on_body) -> None:
        self.on_body = on_body
        self.buffer = b""
        self.transport = None
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connected.set_result(None)

    def connection_lost(self, exc) -> None:
        self.on_body(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").lower()
            start = head.find("content-length:")
            if start < 0:
                self.on_body(None)
                return
            length = int(head[start + 15:].split("\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length].decode()
            self.buffer = self.buffer[end + 4 + length:]
            self.on_body(body)


class PollingClient(Client):
    """Engine.IO over long-polling: a GET connection (always one GET held) and a POST connection."""

    kind = "sio-polling"

    def __init__(self, worker: "Worker", port: int) -> None:
        super().__init__(worker)
        self.port = port
        self.sid = None
        self.posting = False
        self.pending: list[str] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.get = await loop.create_connection(lambda: _HTTP(self.on_get), "127.0.0.1", self.port)
        self.request(self.get, "GET", "EIO=4&transport=polling")
        await asyncio.wait_for(asyncio.shield(self.handshake_done()), OPEN_TIMEOUT)
        _, self.post = await loop.create_connection(lambda: _HTTP(self.on_post), "127.0.0.1", self.port)
        self.send("40")
        self.request(self.get, "GET", self.query)

    def handshake_done(self):
        if not hasattr(self, "_handshake"):
            self._handshake = asyncio.get_running_loop().create_future()
        return self._handshake

    def request(self, conn: _HTTP, method: str, query: str, body: str = "") -> None:
        data = body.encode()
        extra = (f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(data)}\r\n"
                 if method == "POST" else "")
        conn.transport.write(f"{method} /socket.io/?{query} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}"
                             f"\r\n{extra}\r\n".encode() + data)

    def on_get(self, body: str | None) -> None:
        if body is None:
            self.fail("GET connection lost or unreadable")
            return
        if self.sid is None:
            self.sid = json.loads(body[1:])["sid"]
            self.query = f"EIO=4&transport=polling&sid={self.sid}"
            self.handshake_done().set_result(None)
            return
        for packet in body.split("\x1e"):
            if packet and packet != "6":
                self.on_text(packet)
        if not self.closed:
            self.request(self.get, "GET", self.query)

    def send(self, text: str) -> None:
        if self.posting:
            self.pending.append(text)
            return
        self.posting = True
        self.request(self.post, "POST", self.query, text)

    def on_post(self, body: str | None) -> None:
        if body is None:
            self.fail("POST connection lost or unreadable")
            return
        self.posting = False
        if self.pending:
            text, self.pending = "\x1e".join(self.pending), []
            self.send(text)

    def abort(self) -> None:
        for conn in (getattr(self, "get", None), getattr(self, "post", None)):
            if conn is not None and conn.transport is not None:
                conn.transport.abort()


class Worker:
    """One client process: its connections, counters, and the commands it understands."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.pings = 0
        self.expected = 0
        self.got = 0
        self.all_done: asyncio.Future | None = None
        self.sent: dict[str, float] = {}
        self.rtts: list[float] = []

    # counters called by the clients
    def delivered(self) -> None:
        self.got += 1
        if self.got == self.expected and self.all_done is not None and not self.all_done.done():
            self.all_done.set_result(time.monotonic())

    def answered(self, key: str) -> None:
        start = self.sent.pop(key, None)
        if start is not None:
            self.rtts.append(time.monotonic() - start)

    async def open_one(self, kind: str, port: int) -> Client:
        loop = asyncio.get_running_loop()
        if kind == "sio-polling":
            client = PollingClient(self, port)
            await client.open()
        else:
            _, client = await loop.create_connection(lambda: WSClient(self, kind, port),
                                                     "127.0.0.1", port)
        await asyncio.wait_for(client.ready, OPEN_TIMEOUT)
        return client

    async def cmd_open(self, kind: str, port: int, count: int, budget: float = 1e9) -> dict:
        """Open ``count`` clients, BATCH at a time; stop starting batches after ``budget`` s."""
        failed, why = 0, ""
        deadline = time.monotonic() + budget
        for first in range(0, count, BATCH):
            if time.monotonic() > deadline:
                why = why or f"gave up after {budget:g} s"
                break
            results = await asyncio.gather(
                *(self.open_one(kind, port) for _ in range(min(BATCH, count - first))),
                return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    failed += 1
                    why = why or repr(r)
                else:
                    self.clients.append(r)
        return {"opened": len(self.clients), "failed": failed, "why": why}

    async def cmd_stats(self) -> dict:
        return {"pings": self.pings, "alive": sum(not c.closed for c in self.clients)}

    async def cmd_expect(self, count: int) -> dict:
        """Arm: answer (later, in cmd_wait) when every client has ``count`` more messages."""
        self.got = 0
        self.expected = count * len(self.clients)
        self.all_done = asyncio.get_running_loop().create_future()
        return {"armed": self.expected}

    async def cmd_wait(self, timeout: float) -> dict:
        try:
            done = await asyncio.wait_for(asyncio.shield(self.all_done), timeout)
        except TimeoutError:
            return {"done": None, "got": self.got, "expected": self.expected}
        return {"done": done, "got": self.got}

    async def cmd_send(self, text: str) -> dict:
        """The first client sends ``text`` (an Engine.IO packet): the time it left."""
        start = time.monotonic()
        self.clients[0].send(text)
        return {"t0": start}

    async def cmd_latency(self, rate: float, duration: float, warmup: float, payload: str) -> dict:
        """Every client sends an echo each 1/rate s (open loop, phases spread) for ``duration``."""
        loop = asyncio.get_running_loop()
        begin = loop.time() + 0.1
        period = 1 / rate
        count = len(self.clients)
        seq = iter(range(10**9))

        async def run(i: int, client: Client) -> None:
            next_at = begin + period * i / count
            while next_at < begin + warmup + duration:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                n = next(seq)
                key = str(n)
                if client.kind == "ws":
                    text = f"{key} {payload}"
                else:
                    text = f'42{key}["echo",{json.dumps(payload)}]'
                if next_at >= begin + warmup:
                    self.sent[key] = time.monotonic()
                client.send(text)
                next_at += period

        await asyncio.gather(*(run(i, c) for i, c in enumerate(self.clients)))
        deadline = loop.time() + 10
        while self.sent and loop.time() < deadline:
            await asyncio.sleep(0.05)
        rtts, self.rtts = self.rtts, []
        lost, self.sent = len(self.sent), {}
        return {"rtts": rtts, "lost": lost}

    async def cmd_close(self) -> dict:
        for c in self.clients:
            if isinstance(c, PollingClient):
                c.abort()
            else:
                c.transport.abort()
        self.clients = []
        await asyncio.sleep(0.1)
        return {"closed": True}

    async def main(self) -> None:
        raise_open_file_limit(0)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            name = command.pop("cmd")
            if name == "exit":
                break
            answer = await getattr(self, f"cmd_{name}")(**command)
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        await self.cmd_close()


class Workers:
    """Several client processes, driven together; always stopped by ``close()``."""

    def __init__(self, count: int) -> None:
        root = Path(__file__).resolve().parents[1]
        self.procs = [subprocess.Popen([sys.executable, "-m", "benchmarks._clients"], cwd=root,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for _ in range(count)]

    def tell(self, i: int, **command) -> None:
        self.procs[i].stdin.write(json.dumps(command) + "\n")
        self.procs[i].stdin.flush()

    def hear(self, i: int) -> dict:
        line = self.procs[i].stdout.readline()
        if not line:
            raise RuntimeError("a client worker died")
        return json.loads(line)

    def all(self, **command) -> list[dict]:
        for i in range(len(self.procs)):
            self.tell(i, **command)
        return [self.hear(i) for i in range(len(self.procs))]

    def open(self, kind: str, port: int, count: int, budget: float = 1e9) -> tuple[int, int, str]:
        """Open ``count`` connections, split over the workers: (opened, failed, first error).

        ``budget``: seconds after which the workers start no more batches."""
        share = [count // len(self.procs) + (i < count % len(self.procs))
                 for i in range(len(self.procs))]
        for i, n in enumerate(share):
            self.tell(i, cmd="open", kind=kind, port=port, count=n, budget=budget)
        answers = [self.hear(i) for i in range(len(self.procs))]
        return (sum(a["opened"] for a in answers), sum(a["failed"] for a in answers),
                next((a["why"] for a in answers if a["why"]), ""))

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            reap(proc)
            proc.stdout.close()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    asyncio.run(Worker().main())
