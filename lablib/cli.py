"""Command line: ``python -m lablib capture|dissect|serve ...`` (``lablib/__main__.py`` calls
:func:`main`).

Each subcommand has its own section below: a ``register_<name>(subparsers)`` function that
declares its arguments, and a ``run_<name>(args) -> int`` function that does the work.  To add
a subcommand, add a section and list its register function in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import replace
from typing import Any, TextIO

from .capture.dissect import Record, dissect
from .capture.records import Capture
from .errors import LablibError

# ============================================================================================
# capture: record a TCP conversation to a pcap file, through a relay or by sniffing
# ============================================================================================


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def register_capture(subparsers) -> None:
    p = subparsers.add_parser(
        "capture", help="record TCP traffic to a pcap file (relay, or sniffing as root)",
        description="Record TCP conversations into a pcap file. By default run a recording "
                    "relay: clients connect to the relay's port and it forwards to --target. "
                    "With --sniff PORT, capture the real packets to/from PORT on the loopback "
                    "interface instead (needs root or CAP_NET_RAW). Stops after --duration "
                    "seconds or on Ctrl-C / SIGTERM, then writes the file.")
    p.add_argument("--target", type=_host_port, metavar="HOST:PORT",
                   help="the server the relay forwards to")
    p.add_argument("--listen-port", type=int, default=0, metavar="N",
                   help="the relay's port (default: any free port, printed at start)")
    p.add_argument("--listen-host", default="127.0.0.1", metavar="HOST")
    p.add_argument("--sniff", type=int, metavar="PORT",
                   help="sniff the traffic of this TCP port instead of relaying")
    p.add_argument("--iface", default="lo", help="interface to sniff on (default: lo)")
    p.add_argument("-w", "--write", required=True, metavar="FILE", help="the pcap file to write")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.set_defaults(run=run_capture)


@contextlib.contextmanager
def _stop_on_signal():
    """An event set by SIGINT (Ctrl-C) or SIGTERM while the block runs.

    Installed *before* announcing readiness, so a signal sent right after the announcement
    cannot hit asyncio's default handler (which would cancel everything mid-capture).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until(stop: asyncio.Event, duration: float | None) -> None:
    """Wait until ``stop`` is set, or ``duration`` seconds have passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(duration):
            await stop.wait()


def _summary(capture) -> str:
    lines = [f"{len(capture)} conversation(s)"]
    for conv in capture:
        lines.append(f"  #{conv.id} {conv.client[0]}:{conv.client[1]} -> "
                     f"{conv.server[0]}:{conv.server[1]}  c2s {conv.bytes_c2s} B, "
                     f"s2c {conv.bytes_s2c} B, {len(conv.chunks)} chunks"
                     + (" (reset)" if conv.reset else ""))
    return "\n".join(lines)


async def _capture(args) -> int:
    from lablib.capture.records import CaptureError
    with _stop_on_signal() as stop:
        if args.sniff is not None:
            from lablib.capture.sniff import Sniffer
            sniffer = Sniffer(args.sniff, args.iface)
            try:
                sniffer.open()
            except CaptureError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"sniffing TCP port {args.sniff} on {args.iface}; Ctrl-C to stop", flush=True)
            try:
                await _until(stop, args.duration)
                await asyncio.to_thread(sniffer.drain)
            finally:
                sniffer.close()
            sniffer.write_pcap(args.write)
            capture = sniffer.capture
        else:
            from lablib.capture.relay import Relay
            if args.target is None:
                print("error: give --target HOST:PORT (relay) or --sniff PORT", file=sys.stderr)
                return 2
            relay = Relay(*args.target, listen_host=args.listen_host, listen_port=args.listen_port)
            try:
                await relay.start()
            except OSError as exc:
                print(f"error: cannot listen on {args.listen_host}:{args.listen_port}: {exc}",
                      file=sys.stderr)
                return 2
            try:
                print(f"relaying {relay.host}:{relay.port} -> {args.target[0]}:{args.target[1]}; "
                      "Ctrl-C to stop", flush=True)
                await _until(stop, args.duration)
            finally:
                await relay.close()
            relay.write_pcap(args.write)
            capture = relay.capture
    print(_summary(capture))
    print(f"wrote {args.write}", flush=True)
    return 0


def run_capture(args) -> int:
    return asyncio.run(_capture(args))


# ============================================================================================
# dissect: the layered view of a capture, in a terminal
# ============================================================================================
#
# For every TCP conversation in the file: a heading (client, server, bytes each way), then one
# line per record (time, direction, layer, summary) as in lablib.show.table.  -v adds every
# field under its record (like tshark -V), -x a hexdump of the record's bytes with the fields
# marked.


def register_dissect(subparsers) -> None:
    parser = subparsers.add_parser(
        "dissect", help="show a capture layer by layer (HTTP, WebSocket frames, ...)",
        description="Dissect a pcap file: HTTP upgrade, WebSocket frames with every header "
                    "field, and what registered decoders find inside.")
    parser.add_argument("file", metavar="FILE.pcap", help="capture file to read")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every field")
    parser.add_argument("-x", "--hex", action="store_true", help="hexdump each record's bytes")
    parser.add_argument("-c", "--conversation", type=int, action="append", metavar="ID",
                        help="only this conversation (repeatable)")
    parser.add_argument("-l", "--layer", action="append", metavar="NAME",
                        help="only these layers, e.g. -l websocket (repeatable)")
    parser.add_argument("--times", choices=("absolute", "relative", "none"), default="absolute",
                        help="time column: capture time (default), since the conversation "
                             "began, or none")
    parser.add_argument("--chunks", action="store_true",
                        help="also list the TCP chunks as captured (frames != segments)")
    parser.set_defaults(run=run_dissect)


def run_dissect(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Read the pcap named by ``args.file`` and print its dissection; returns the exit code."""
    out = out or sys.stdout
    try:
        from .capture.pcap import read_pcap
        capture = read_pcap(args.file)
    except (OSError, ValueError, LablibError) as exc:  # CaptureError is a LablibError
        print(f"lablib dissect: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    out.write(render(capture, verbose=args.verbose, hexdump=args.hex,
                     conversations=args.conversation, layers=args.layer, times=args.times,
                     chunks=args.chunks))
    return 0


def render(capture: Capture, *, verbose: bool = False, hexdump: bool = False,
           conversations: list[int] | None = None, layers: list[str] | None = None,
           times: str = "absolute", chunks: bool = False) -> str:
    """The whole terminal output for ``capture`` as one string (what :func:`run` prints)."""
    from .show.table import conversation_table

    parts: list[str] = []
    if not len(capture):
        return "no TCP conversations in this capture\n"
    for conv in capture:
        if conversations and conv.id not in conversations:
            continue
        (ch, cp), (sh, sp) = conv.client, conv.server
        parts.append(f"=== conversation {conv.id}: {ch}:{cp} -> {sh}:{sp}  "
                     f"({conv.bytes_c2s} bytes c2s, {conv.bytes_s2c} bytes s2c)")
        records = [r for r in dissect(conv, chunks=chunks) if not layers or r.layer in layers]
        if times == "relative":
            records = [_shift(r, conv.start) for r in records]
        if not (verbose or hexdump):
            parts.append(conversation_table(records, times="none" if times == "none" else
                                            "absolute", width=None).text())
        else:
            for i, record in enumerate(records, 1):
                parts.append(_line(i, record, times))
                if verbose:
                    parts.extend("      " + line for line in format_fields(record))
                if hexdump and record.raw and record.depth == 0:
                    parts.extend("      " + line for line in _hex(record).splitlines())
        parts.append("")
    return "\n".join(parts) + "\n"


def _shift(record: Record, origin: float) -> Record:
    # Relative times: the same record with time measured from the connection's start.
    return replace(record, time=record.time - origin)


def _line(i: int, record: Record, times: str) -> str:
    from .show.table import ARROWS
    time = "" if times == "none" else f"{record.time:.6f}  "
    return (f"{i:4d}  {time}{ARROWS.get(record.direction, '?')}  {record.layer:<10} "
            f"{'  ' * record.depth}{record.summary}")


def format_fields(record: Record) -> list[str]:
    """``name = value`` lines for a record's fields (bytes in hex, long values cut)."""
    lines = [f"offset = {record.offset}, length = {record.length}"]
    for name, value in record.fields.items():
        if name == "headers":
            lines.append("headers:")
            lines.extend(f"  {k}: {v}" for k, v in value)
            continue
        lines.append(f"{name} = {_value(value)}")
    return lines


def _value(value: Any, limit: int = 64) -> str:
    if isinstance(value, (bytes, bytearray)):
        if len(value) > limit:
            return bytes(value[:limit]).hex(" ") + f" ... ({len(value)} bytes)"
        return bytes(value).hex(" ") or "(empty)"
    text = repr(value)
    return text if len(text) <= 2 * limit else text[:2 * limit - 3] + "..."


def _hex(record: Record) -> str:
    from .show.hexdump import hexdump
    return hexdump(record).text()


# ============================================================================================
# serve: one lablib Socket.IO server, or several processes behind the teaching balancer
# ============================================================================================


def register_serve(subparsers) -> None:
    from .capture.balancing import POLICIES
    from .cluster import DEFAULT_APP
    p = subparsers.add_parser(
        "serve", help="run lablib Socket.IO server process(es), optionally behind a balancer",
        description="Run a lablib Socket.IO server (--workers 1) on --port, or start --workers N "
                    "server processes on free ports and, unless --balance none, the relay's "
                    "balancing mode in front of them on --port. The app is MODULE:ATTR (a "
                    "lablib.socketio.server.Server, or a function returning one); the default "
                    "answers 'echo', 'broadcast' and 'whoami'. Stops on Ctrl-C / SIGTERM or "
                    "after --duration seconds.")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="server processes")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, metavar="P",
                   help="the server's port (1 worker) or the balancer's (default: a free one)")
    p.add_argument("--app", default=DEFAULT_APP, metavar="MODULE:ATTR")
    p.add_argument("--balance", choices=("none",) + POLICIES, default="sid",
                   help="the balancer's policy with several workers (default: sid, sticky)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--redis", metavar="URL",
                   help="share broadcasts between the workers through the Redis adapter at URL "
                        "(the app must be a function taking adapter_factory=, as the default)")
    p.set_defaults(run=run_serve)


async def _serve(args) -> int:
    from .cluster import Cluster, ClusterError, run_worker
    with _stop_on_signal() as stop:
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        if args.workers == 1:
            await run_worker(args.app, args.host, args.port, stop, args.redis)
            return 0
        if args.balance == "none" and args.port:
            print("error: --port is the balancer's; with --balance none the workers take "
                  "free ports", file=sys.stderr)
            return 2
        try:
            async with Cluster(args.workers, args.app, host=args.host,
                               redis_url=args.redis) as cluster:
                for pid, url in zip(cluster.pids, cluster.urls):
                    print(f"worker {pid}: {url}", flush=True)
                if args.balance == "none":
                    await stop.wait()
                    return 0
                from .capture.relay import Balancer
                async with Balancer(cluster.targets, args.balance, listen_host=args.host,
                                    listen_port=args.port) as balancer:
                    print(f"balancer ({args.balance}): http://{args.host}:{balancer.port}",
                          flush=True)
                    await stop.wait()
                print(f"{len(balancer.routes)} request(s) routed", flush=True)
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def run_serve(args) -> int:
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args))


# ============================================================================================
# main
# ============================================================================================

SUBCOMMANDS = [register_capture, register_dissect, register_serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lablib",
                                     description="lablib: see WebSocket, Engine.IO and "
                                                 "Socket.IO on the wire")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)

