"""Echo round trip: lablib's WebSocket server against the ``websockets`` server.

One client sends 10,000 text messages of 32 bytes, one at a time: send a message, wait for the
echo, send the next.  Messages per second is then the inverse of one round trip: the client's
send, the server reading, parsing, unmasking and UTF-8-checking the frame, the handler's
``recv()`` and ``send()``, the server writing the reply, and the client reading it.

Set-up, chosen so that the *server* is what differs:

- each server runs in its own subprocess (its own interpreter and event loop);
- both servers run the same handler (``async for message in ws: await ws.send(message)``)
  with keepalive pings off; ``websockets`` with ``compression=None`` (lablib has no
  extensions);
- the client is the same for both, and as cheap as possible: a blocking socket that sends
  one pre-encoded masked frame and reads the 34-byte answer (no event loop, no parser),
  checking every echo byte for byte.  ``--client websockets`` uses the ``websockets``
  asyncio client instead, whose own cost then dilutes the difference between the servers.

Each repeat opens a new connection (the handshake is not timed), sends 100 warm-up messages,
then times the 10,000.  The two servers alternate from repeat to repeat.  Besides messages per
second, the table gives each server's own CPU time per message (Linux: /proc/PID/schedstat),
which does not depend on scheduling or on other load.

Where the processes run matters more than anything else here (``--cpus``):

- ``same`` (the default): client and servers pinned to one CPU.  A round trip is then the
  client's CPU time plus the server's, plus two context switches: the ratio shows what each
  server costs per message (unless another process gets scheduled on that CPU meanwhile).
- ``split``: the client on one CPU, the servers on another.  Each round trip then also pays
  for waking the other CPU twice.  On a virtual machine that wake-up can cost more than
  everything else together (we measured ~140 µs per round trip instead of ~35 µs on a 2-vCPU
  VM), and the ratio tends towards 1.
- ``any``: no pinning; the OS moves the processes around and runs jump between the two cases
  above (a factor of 3 on that VM), so medians of a few runs mean little.

    python -m benchmarks.ws_echo [--repeats 7] [--messages 10000] [--client raw|websockets]
                                 [--cpus same|split|any]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import socket
import struct
import subprocess
import sys

from . import format_table, ratio, reap, timed

MESSAGE = b"0123456789abcdefghijklmnopqrstuv"  # 32 bytes of ASCII: valid UTF-8 text
MASKING_KEY = b"\x37\xfa\x21\x3d"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
WARMUP = 100


# --- the servers (each runs in a subprocess: python -m benchmarks.ws_echo --serve NAME) ---------

async def _echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


async def _serve(name: str) -> None:
    """Serve until stdin closes; the first line on stdout is the port."""
    loop = asyncio.get_running_loop()
    if name == "lablib":
        from lablib.websocket import server
        cm = server.serve(_echo, "127.0.0.1", 0, ping_interval=None)
    else:
        from websockets.asyncio.server import serve
        cm = serve(_echo, "127.0.0.1", 0, compression=None, ping_interval=None)
    async with cm as srv:
        print(srv.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # the parent closes our stdin to stop us


def start_server(name: str, cpus: set[int] | None = None) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ws_echo", "--serve", name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if cpus is not None:
        os.sched_setaffinity(proc.pid, cpus)
    port = int(proc.stdout.readline())
    return proc, port


def placement(cpus: str) -> tuple[set[int] | None, set[int] | None, str]:
    """(client CPUs, server CPUs, description) for ``--cpus same|split|any``."""
    if cpus == "any" or not hasattr(os, "sched_setaffinity"):
        return None, None, "no CPU pinning"
    available = sorted(os.sched_getaffinity(0))
    if cpus == "split" and len(available) >= 2:
        return ({available[0]}, {available[-1]},
                f"client on CPU {available[0]}, servers on CPU {available[-1]}")
    if cpus == "split":
        return None, None, "no CPU pinning (only one CPU available for --cpus split)"
    return {available[-1]}, {available[-1]}, f"client and servers pinned to CPU {available[-1]}"


def stop_server(proc: subprocess.Popen) -> None:
    proc.stdin.close()   # the server's signal to stop
    reap(proc)


# --- the raw client ----------------------------------------------------------------------------

def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame, encoded here (not by lablib) so both servers get the same client."""
    assert len(payload) <= 125
    key = MASKING_KEY * (len(payload) // 4 + 1)
    masked = bytes(b ^ k for b, k in zip(payload, key))  # 32 bytes once, at set-up: fine
    return bytes((0x80 | opcode, 0x80 | len(payload))) + MASKING_KEY + masked


class RawClient:
    """A blocking-socket WebSocket client that can do just one thing: echo round trips."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed during the handshake")
            response += chunk
        head, _, rest = response.partition(b"\r\n\r\n")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or accept not in head or rest:
            raise ConnectionError(f"unexpected handshake answer: {response!r}")
        self.request = _masked_frame(0x1, MESSAGE)
        self.expected = bytes((0x81, len(MESSAGE))) + MESSAGE  # the server's unmasked echo

    def round_trips(self, count: int) -> None:
        sock, request, expected = self.sock, self.request, self.expected
        size = len(expected)
        for _ in range(count):
            sock.sendall(request)
            answer = sock.recv(size)
            while len(answer) < size:
                more = sock.recv(size - len(answer))
                if not more:
                    raise ConnectionError("server closed the connection")
                answer += more
            if answer != expected:
                raise AssertionError(f"bad echo {answer!r}")

    def close(self) -> None:
        self.sock.sendall(_masked_frame(0x8, struct.pack("!H", 1000)))
        self.sock.settimeout(10)
        while self.sock.recv(4096):  # the server's close frame, then its TCP FIN (§7.1.1)
            pass
        self.sock.close()


def server_cpu_time(pid: int) -> float | None:
    """Seconds the server's main thread has spent on a CPU so far (Linux), else None.

    Unlike wall time, this does not depend on where the scheduler put the processes or on
    what else the machine runs: it is what the server itself costs.
    """
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def measured(run, server_pid: int) -> tuple[float, float | None]:
    """(wall time, server CPU time or None) of ``run()``."""
    before = server_cpu_time(server_pid)
    wall = timed(run)
    after = server_cpu_time(server_pid)
    return wall, (after - before if before is not None and after is not None else None)


def time_raw(port: int, messages: int, server_pid: int) -> tuple[float, float | None]:
    client = RawClient(port)
    try:
        client.round_trips(WARMUP)
        return measured(lambda: client.round_trips(messages), server_pid)
    finally:
        client.close()


# --- the websockets client (optional) -----------------------------------------------------------

def time_websockets_client(port: int, messages: int,
                           server_pid: int) -> tuple[float, float | None]:
    from websockets.asyncio.client import connect

    text = MESSAGE.decode()

    async def main() -> tuple[float, float | None]:
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=None) as ws:
            async def round_trips(count: int) -> None:
                for _ in range(count):
                    await ws.send(text)
                    if await ws.recv() != text:
                        raise AssertionError("bad echo")

            await round_trips(WARMUP)
            loop = asyncio.get_running_loop()
            cpu_before = server_cpu_time(server_pid)
            start = loop.time()
            await round_trips(messages)
            wall = loop.time() - start
            cpu_after = server_cpu_time(server_pid)
            cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None \
                else None
            return wall, cpu

    return asyncio.run(main())


# --- the benchmark -------------------------------------------------------------------------------

def run(repeats: int = 7, messages: int = 10_000, client: str = "raw", cpus: str = "same") -> str:
    import statistics

    import websockets

    time_client = time_raw if client == "raw" else time_websockets_client
    client_cpus, server_cpus, where = placement(cpus)
    own_cpus = os.sched_getaffinity(0) if client_cpus is not None else None
    servers = {name: start_server(name, server_cpus) for name in ("lablib", "websockets")}
    times: dict[str, list[float]] = {name: [] for name in servers}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    try:
        if client_cpus is not None:
            os.sched_setaffinity(0, client_cpus)
        for _ in range(repeats):
            for name, (proc, port) in servers.items():  # alternate: lablib, websockets, ...
                wall, server_cpu = time_client(port, messages, proc.pid)
                times[name].append(wall)
                if server_cpu is not None:
                    cpu[name].append(server_cpu)
    finally:
        if own_cpus is not None:
            os.sched_setaffinity(0, own_cpus)
        for proc, _ in servers.values():
            stop_server(proc)
    t_lab = statistics.median(times["lablib"])
    t_ref = statistics.median(times["websockets"])
    headers = ["scenario", "lablib msgs/s", "websockets msgs/s", "ratio",
               "lablib server CPU µs/msg", "websockets server CPU µs/msg", "CPU ratio"]
    row = [f"echo {len(MESSAGE)} B text x {messages}", f"{messages / t_lab:,.0f}",
           f"{messages / t_ref:,.0f}", ratio(t_ref, t_lab)]
    if cpu["lablib"] and cpu["websockets"]:
        c_lab, c_ref = statistics.median(cpu["lablib"]), statistics.median(cpu["websockets"])
        row += [f"{c_lab / messages * 1e6:.1f}", f"{c_ref / messages * 1e6:.1f}",
                ratio(c_ref, c_lab)]
    else:
        row += ["n/a", "n/a", "n/a"]  # no /proc/PID/schedstat here
    title = (f"WebSocket echo server, 1 client ({client} client), one message in flight, "
             f"server in a subprocess, {where}, median of {repeats} runs "
             f"(websockets {websockets.__version__})\n"
             "ratio = websockets time / lablib time (>1: lablib faster); "
             "server CPU = CPU time of the server process per message")
    return title + "\n\n" + format_table(headers, [row])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--client", choices=["raw", "websockets"], default="raw")
    parser.add_argument("--cpus", choices=["same", "split", "any"], default="same",
                        help="where client and servers run (see the module docstring)")
    parser.add_argument("--serve", choices=["lablib", "websockets"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
    else:
        print(run(args.repeats, args.messages, args.client, args.cpus))


if __name__ == "__main__":
    main()
