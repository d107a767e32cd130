"""The peer servers of the at-scale benchmarks, each in a process of its own, and what they share.

Two kinds of server, four peers (the columns of every ``scale_*`` table):

- ``ws``  (raw WebSocket): lablib (``lablib.websocket.server.serve``), ``websockets``, and Node's
  ``ws`` (the WebSocket library the official socket.io runs on);
- ``sio`` (Socket.IO): lablib (``lablib.socketio.server``), ``python-socketio`` (``AsyncServer``
  on aiohttp), and the official Node ``socket.io``.

Every server does the same thing: raw WebSocket servers echo each message; Socket.IO servers
put every client in the room ``"room"`` on connect, acknowledge ``echo(text)`` with ``text`` and,
on ``burst(n, text)``, broadcast ``msg(text)`` n times to the room.  The heartbeat interval is a
parameter (the idle benchmark makes it short); everything else is each library's default.

A Python server runs as ``python -m benchmarks._peers --serve NAME KIND PING_MS``; the Node ones
are ``interop/node/bench_peer.js``.  Each prints its port on its first line and serves until its
stdin closes.  :func:`started` starts one and always stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from . import reap
from .ws_memory import raise_open_file_limit, rss_kib

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PEERS = {"ws": ("lablib", "websockets", "node"), "sio": ("lablib", "python-socketio", "node")}
LABELS = {("ws", "node"): "node ws", ("sio", "node"): "node socket.io"}
LOAD_AT_START = os.getloadavg()   # the benchmark imports this module when it starts


def label(kind: str, name: str) -> str:
    return LABELS.get((kind, name), name)


# --- the Python servers (in the subprocess) -------------------------------------------------------

async def _ws_echo(ws) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:  # noqa: BLE001  (the benchmark's clients abort their connections)
        pass


async def _serve(name: str, kind: str, ping_ms: int) -> None:
    raise_open_file_limit(0)
    loop = asyncio.get_running_loop()
    stop = lambda: loop.run_in_executor(None, sys.stdin.read)  # noqa: E731  (parent closes stdin)
    ping_s = ping_ms / 1000 if ping_ms else None
    if (kind, name) == ("ws", "lablib"):
        from lablib.websocket import server
        async with server.serve(_ws_echo, "127.0.0.1", 0, ping_interval=ping_s) as srv:
            print(srv.sockets[0].getsockname()[1], flush=True)
            await stop()
    elif (kind, name) == ("ws", "websockets"):
        from websockets.asyncio.server import serve
        async with serve(_ws_echo, "127.0.0.1", 0, compression=None, ping_interval=ping_s) as srv:
            print(srv.sockets[0].getsockname()[1], flush=True)
            await stop()
    elif (kind, name) == ("sio", "lablib"):
        from lablib.socketio.server import Server, serve
        sio = Server(ping_interval=ping_ms, ping_timeout=max(20000, ping_ms))

        @sio.event
        async def connect(sid, request, auth):
            sio.enter_room(sid, "room")

        @sio.on("echo")
        async def echo(sid, text):
            return text

        @sio.on("burst")
        async def burst(sid, n, text):
            for _ in range(n):
                await sio.emit("msg", text, to="room")

        async with serve(sio, "127.0.0.1", 0) as srv:
            print(srv.port, flush=True)
            await stop()
    elif (kind, name) == ("sio", "python-socketio"):
        import socketio
        from aiohttp import web
        sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=ping_ms / 1000,
                                   ping_timeout=max(20, ping_ms / 1000))

        @sio.event
        async def connect(sid, environ, auth=None):
            await sio.enter_room(sid, "room")

        @sio.on("echo")
        async def echo(sid, text):
            return text

        @sio.on("burst")
        async def burst(sid, n, text):
            for _ in range(n):
                await sio.emit("msg", text, to="room")

        app = web.Application()
        sio.attach(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)
        await stop()
        await runner.cleanup()
    else:
        raise SystemExit(f"no Python server {name} for {kind}")


# --- starting and watching them (in the benchmark) ------------------------------------------------

def node_available() -> str | None:
    """None if the Node peer can run, else why not (the packages are installed on first use)."""
    try:
        from lablib.services import ServiceUnavailable
        from lablib.services.node import ensure_node_modules
    except ImportError as exc:  # pragma: no cover
        return str(exc)
    try:
        ensure_node_modules()
    except ServiceUnavailable as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def started(name: str, kind: str, ping_ms: int = 25000) -> Iterator[tuple[subprocess.Popen, int]]:
    """Start peer ``name`` of ``kind`` in its own process: yields (process, port); stops it."""
    if name == "node":
        from lablib.services.node import NODE_DIR, find_node
        command = [find_node(), str(NODE_DIR / "bench_peer.js"), kind, str(ping_ms)]
        cwd = NODE_DIR
    else:
        command = [sys.executable, "-m", "benchmarks._peers", "--serve", name, kind, str(ping_ms)]
        cwd = ROOT
    proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, preexec_fn=_raise_limit_in_child)
    try:
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{name} {kind} server did not start (said {line!r})")
        yield proc, int(line)
    finally:
        proc.stdin.close()
        reap(proc)
        proc.stdout.close()


def _raise_limit_in_child() -> None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """CPU time of the whole process (every thread; Node has several), in seconds.

    The sum of ``/proc/PID/task/*/schedstat`` (nanoseconds); ``/proc/PID/stat`` counts in
    10 ms clock ticks, too coarse for a few seconds of idle heartbeats.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass   # a thread that just ended
    return total / 1e9


# --- the machine, and the saved results ---------------------------------------------------------

def machine() -> dict:
    """What the saved results were measured on."""
    from importlib.metadata import version
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {name: version(name) for name in ("websockets", "python-socketio",
                                                 "python-engineio", "aiohttp")}
    try:
        versions["lablib"] = version("lablib")
    except Exception:  # noqa: BLE001
        pass
    try:
        from lablib.services.node import NODE_DIR, find_node
        out = subprocess.run([find_node(), str(NODE_DIR / "versions.js")], cwd=NODE_DIR,
                             capture_output=True, text=True, timeout=30).stdout
        versions.update({f"node {k}" if k != "node" else "node": v
                         for k, v in json.loads(out).items()})
        out = subprocess.run([find_node(), "-e", 'console.log(require("ws/package.json").version)'],
                             cwd=NODE_DIR, capture_output=True, text=True, timeout=30).stdout
        versions["node ws"] = out.strip()
    except Exception:  # noqa: BLE001  (no Node: its versions are simply absent)
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "lablib_commit": commit,
            "load_average_at_start": LOAD_AT_START, "load_average_at_end": os.getloadavg(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": versions}


def save(name: str, command: str, tables: list[str], data: dict, **settings) -> Path:
    """Write benchmarks/results/NAME.json: the command, the machine, the tables, the numbers
    (and any ``settings`` a benchmark needs to render its tables again)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "command": command, "machine": machine(),
                                **settings, "tables": tables, "data": data}, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=3, metavar=("NAME", "KIND", "PING_MS"), required=True)
    args = parser.parse_args(argv)
    name, kind, ping_ms = args.serve
    asyncio.run(_serve(name, kind, int(ping_ms)))


if __name__ == "__main__":
    main()
