"""Memory per idle connection: lablib's WebSocket server against the ``websockets`` server.

Each server runs in its own subprocess with the same do-nothing handler (it waits for the
connection to close) and keepalive pings off.  A run:

1. starts the server and opens (then closes) 100 warm-up connections, so that the code paths
   and the allocator's first arenas are in memory before anything is counted;
2. reads the server's resident set size (``VmRSS`` in ``/proc/PID/status``);
3. opens N connections (default 3,000) from this process, each completing the opening
   handshake (request, 101) and then staying idle: no message, no ping;
4. reads the server's RSS again: **RSS growth / N** is the memory one idle connection costs,
   everything included (the socket's transport and protocol objects, the handshake request
   kept for the application, read buffers, the handler's task).

Both processes raise their open-file limit (``RLIMIT_NOFILE``) to the hard limit, since N
connections take N descriptors on each side.  RSS counts pages, so small N is noisy: use a few
thousand.  Linux only (``/proc``).

    python -m benchmarks.ws_memory [--repeats 7] [--connections 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import subprocess
import sys
import time

from . import format_table, reap

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
WARMUP = 100
BATCH = 200  # connections opened concurrently


def raise_open_file_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return it (fail if below ``needed``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"need {needed} open files, the hard limit is {soft}: "
                         f"lower --connections or raise `ulimit -Hn`")
    return soft


# --- the servers (each runs in a subprocess: python -m benchmarks.ws_memory --serve NAME) -------

async def _idle(ws) -> None:
    await ws.wait_closed()


async def _serve(name: str) -> None:
    """Serve until stdin closes; the first line on stdout is the port."""
    raise_open_file_limit(0)
    loop = asyncio.get_running_loop()
    if name == "lablib":
        from lablib.websocket import server
        cm = server.serve(_idle, "127.0.0.1", 0, ping_interval=None)
    else:
        from websockets.asyncio.server import serve
        cm = serve(_idle, "127.0.0.1", 0, compression=None, ping_interval=None)
    async with cm as srv:
        print(srv.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # the parent closes our stdin to stop us


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid``, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/PID/status")


# --- the clients -----------------------------------------------------------------------------

async def _open(port: int) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n".encode("ascii"))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        raise RuntimeError(f"handshake refused: {head[:40]!r}")
    return writer


async def _open_many(port: int, count: int) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    while len(writers) < count:
        batch = min(BATCH, count - len(writers))
        writers += await asyncio.gather(*(_open(port) for _ in range(batch)))
    return writers


async def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()
    await asyncio.sleep(0)


def measure(name: str, connections: int) -> float:
    """KiB of server RSS per idle connection, for one fresh server process."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ws_memory", "--serve", name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        port = int(proc.stdout.readline())

        async def scenario() -> float:
            await _close_all(await _open_many(port, WARMUP))
            await asyncio.sleep(0.5)  # the server closes the warm-up connections
            gc.collect()
            before = rss_kib(proc.pid)
            writers = await _open_many(port, connections)
            await asyncio.sleep(0.5)  # every connection is open and idle (its 101 is here)
            after = rss_kib(proc.pid)
            await _close_all(writers)
            return (after - before) / connections

        return asyncio.run(scenario())
    finally:
        proc.stdin.close()
        reap(proc, timeout=30)


def run(repeats: int = 7, connections: int = 3000) -> str:
    raise_open_file_limit(connections + WARMUP + 100)
    samples: dict[str, list[float]] = {"lablib": [], "websockets": []}
    for _ in range(repeats):  # alternating, as the other benchmarks do
        for name, values in samples.items():
            values.append(measure(name, connections))
            time.sleep(0.2)
    lablib, reference = (statistics.median(samples[n]) for n in ("lablib", "websockets"))
    import websockets
    title = (f"Memory per idle WebSocket connection (server RSS growth / {connections:,} "
             f"connections, median of {repeats}; websockets {websockets.__version__})")
    headers = ["scenario", "lablib KiB", "websockets KiB", "ratio"]
    row = [f"{connections:,} idle connections", f"{lablib:.1f}", f"{reference:.1f}",
           f"{reference / lablib:.2f}x" if lablib > 0 else "n/a"]
    note = ("ratio = websockets KiB / lablib KiB (>1: lablib uses less); "
            f"every run: lablib {', '.join(f'{v:.1f}' for v in samples['lablib'])}; "
            f"websockets {', '.join(f'{v:.1f}' for v in samples['websockets'])}")
    return title + "\n\n" + format_table(headers, [row]) + "\n" + note


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--serve", choices=["lablib", "websockets"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
    else:
        print(run(args.repeats, args.connections))


if __name__ == "__main__":
    main()
