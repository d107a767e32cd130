"""Latency tails: echo round trips at a fixed offered load, p50 / p99 / p99.9.

50 clients (one client process, :mod:`benchmarks._clients`) each send one echo every 100 ms -
**500 messages/s** in all, phases spread evenly - for 20 s after a 1 s warm-up (10,000 round
trips; 2 s and 1,000 with ``--quick``, where p99.9 is the largest sample but one).  The load is
*open loop*: a client sends on schedule whether or not its previous answer is back, so a slow
server builds a queue and shows it in the tail instead of slowing the clients down.

- **raw WebSocket**: a text message ``"<seq> <32 chars>"``, echoed (lablib, websockets, Node ws);
- **Socket.IO websocket**: ``42<seq>["echo","<32 chars>"]``, answered by the ack ``43<seq>[...]``
  (lablib, python-socketio on aiohttp, Node socket.io);
- **Socket.IO polling**: the same packets, the event in a POST and the ack in the held GET.

A round trip is timed in the client from just before its bytes are written to the moment its
answer is parsed.  Each peer server runs in a fresh process (:mod:`benchmarks._peers`).

    python -m benchmarks.scale_latency [--quick] [--rate 500] [--clients 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import math
import sys

from . import format_table
from ._clients import Workers
from ._peers import PEERS, label, node_available, save, started

TRANSPORTS = {"raw WebSocket": ("ws", "ws"), "Socket.IO websocket": ("sio", "sio-ws"),
              "Socket.IO polling": ("sio", "sio-polling")}
TEXT = "0123456789abcdefghijklmnopqrstuv"
QUANTILES = (0.5, 0.99, 0.999)


def quantile(samples: list[float], q: float) -> float:
    """The nearest-rank quantile of sorted ``samples``."""
    return samples[min(len(samples) - 1, max(0, math.ceil(q * len(samples)) - 1))]


def measure(name: str, kind: str, client: str, clients: int, rate: float, seconds: float) -> dict:
    with started(name, kind) as (proc, port), Workers(1) as workers:
        opened, failed, why = workers.open(client, port, clients)
        if failed:
            return {"error": f"{failed} of {clients} clients failed: {why}"}
        workers.tell(0, cmd="latency", rate=rate / clients, duration=seconds, warmup=1.0,
                     payload=TEXT)
        answer = workers.hear(0)
        workers.all(cmd="close")
    rtts = sorted(answer["rtts"])
    return {"samples": len(rtts), "lost": answer["lost"],
            **{f"p{q * 100:g}_ms": quantile(rtts, q) * 1e3 for q in QUANTILES},
            "max_ms": rtts[-1] * 1e3 if rtts else None}


def run(quick: bool = False, rate: float = 500, clients: int = 50, seconds: float | None = None,
        save_as: str | None = None, command: str = "") -> str:
    seconds = seconds or (2.0 if quick else 20.0)
    node_missing = node_available()
    data: dict = {}
    rows = []
    for transport, (kind, client) in TRANSPORTS.items():
        peers = [p for p in PEERS[kind] if not (p == "node" and node_missing)]
        for peer in peers:
            data.setdefault(transport, {})[label(kind, peer)] = measure(
                peer, kind, client, clients, rate, seconds)
        lab = data[transport]["lablib"]
        for peer in peers:
            r = data[transport][label(kind, peer)]
            if "error" in r:
                rows.append([transport, label(kind, peer), "error", "", "", "", r["error"]])
                continue
            ratio = "" if peer == "lablib" else (
                f"{r['p99_ms'] / lab['p99_ms']:.2f}x" if "p99_ms" in lab else "n/a")
            rows.append([transport, label(kind, peer)]
                        + [f"{r[f'p{q * 100:g}_ms']:.2f}" for q in QUANTILES]
                        + [f"{r['samples']:,} ({r['lost']} lost)", ratio])
    headers = ["transport", "server", "p50 ms", "p99 ms", "p99.9 ms", "round trips",
               "p99 ratio (peer / lablib)"]
    title = (f"Echo round trip at a fixed offered load: {rate:g} msg/s from {clients} clients, "
             f"{seconds:g} s after 1 s warm-up (ratio >1: lablib's p99 is lower)")
    table = title + "\n\n" + format_table(headers, rows)
    target = ["Target: lablib p99 <= each Python peer's at the same load"]
    for transport, (kind, _) in TRANSPORTS.items():
        lab = data[transport]["lablib"]
        for peer in PEERS[kind][1:2]:
            other = data[transport][label(kind, peer)]
            if "p99_ms" in lab and "p99_ms" in other:
                verdict = "met" if lab["p99_ms"] <= other["p99_ms"] else "NOT met"
                target.append(f"  {transport}: lablib {lab['p99_ms']:.2f} ms vs {peer} "
                              f"{other['p99_ms']:.2f} ms -> {verdict}")
    text = table + "\n\n" + "\n".join(target)
    if node_missing:
        text += f"\n(Node rows skipped: {node_missing})"
    if save_as:
        save(save_as, command, [table, "\n".join(target)], data)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per server instead of 20 s")
    parser.add_argument("--rate", type=float, default=500, help="messages/s, all clients together")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, help="measured seconds per server")
    parser.add_argument("--save", metavar="NAME", help="write benchmarks/results/NAME.json")
    args = parser.parse_args(argv)
    print(run(args.quick, args.rate, args.clients, args.seconds, args.save,
              "python -m benchmarks.scale_latency " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
