"""Fan-out: one Socket.IO broadcast to a room of 100 / 1,000 / 5,000 clients, and a burst of them.

Each peer server (lablib, python-socketio on aiohttp, Node socket.io; :mod:`benchmarks._peers`)
runs in a fresh process; N clients connect over WebSocket from 2 client processes
(:mod:`benchmarks._clients`) and the server puts each in the room ``"room"``.  One client then
sends ``burst(k, text)`` (a 32-character text), and the server's handler runs
``emit("msg", text, to="room")`` k times (Node: ``io.to("room").emit``).

- **one broadcast** (k = 1): time from the ``burst`` event leaving the client to the moment the
  last of the N clients has the message (``time.monotonic()``, the same clock in every process);
  median of 5 (3 with ``--quick``);
- **sustained**: k broadcasts in a row, k = 100,000 / N deliveries (at least 10; 20,000 / N with
  ``--quick``): deliveries per second = N x k / time until the last client has all k; and the
  server's own CPU time for that burst per delivery (``/proc/PID/task/*/schedstat``), which
  does not depend on how fast the clients read.

The clients are cheap but not free: on a 2-core machine they share the CPUs with the server, so
a server much faster than Python clients (Node) is measured partly as the clients' speed.

    python -m benchmarks.scale_fanout [--quick] [--sizes 100,1000,5000] [--save NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from . import format_table
from ._clients import Workers
from ._peers import PEERS, cpu_seconds, label, node_available, raise_open_file_limit, save, started

FULL_SIZES = (100, 1000, 5000)
QUICK_SIZES = (100, 1000)
TEXT = "0123456789abcdefghijklmnopqrstuv"
CLIENT_PROCESSES = 2


def _broadcasts(workers: Workers, k: int, timeout: float) -> float | None:
    """Seconds from sending burst(k) to the last client having all k messages (None: timeout)."""
    workers.all(cmd="expect", count=k)
    workers.tell(0, cmd="send", text="42" + json.dumps(["burst", k, TEXT]))
    t0 = workers.hear(0)["t0"]
    answers = workers.all(cmd="wait", timeout=timeout)
    if any(a["done"] is None for a in answers):
        return None
    return max(a["done"] for a in answers) - t0


def measure(name: str, n: int, repeats: int, deliveries: int) -> dict:
    k = max(10, deliveries // n)
    with started(name, "sio") as (proc, port), Workers(CLIENT_PROCESSES) as workers:
        opened, failed, why = workers.open("sio-ws", port, n)
        if failed:
            return {"error": f"{failed} of {n} clients failed to connect: {why}"}
        _broadcasts(workers, 1, 60)                      # warm-up
        single = [_broadcasts(workers, 1, 60) for _ in range(repeats)]
        cpu0 = cpu_seconds(proc.pid)
        burst = _broadcasts(workers, k, 300)
        cpu = cpu_seconds(proc.pid) - cpu0
        workers.all(cmd="close")
    ok = [s for s in single if s is not None]
    return {"single_s": ok, "single_timeouts": len(single) - len(ok), "burst_k": k,
            "burst_s": burst, "deliveries_per_s": n * k / burst if burst else None,
            "server_cpu_us_per_delivery": cpu / (n * k) * 1e6}


def run(quick: bool = False, sizes: tuple[int, ...] | None = None, save_as: str | None = None,
        command: str = "") -> str:
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    repeats, deliveries = (3, 20_000) if quick else (5, 100_000)
    raise_open_file_limit(max(sizes) + 1000)
    node_missing = node_available()
    peers = [p for p in PEERS["sio"] if not (p == "node" and node_missing)]
    data = {n: {label("sio", p): measure(p, n, repeats, deliveries) for p in peers} for n in sizes}
    names = [label("sio", p) for p in peers]
    rows = []
    for n in sizes:
        by = data[n]
        single = {p: statistics.median(by[p]["single_s"]) * 1e3 if by[p].get("single_s") else None
                  for p in names}
        rate = {p: by[p].get("deliveries_per_s") for p in names}
        rows.append([f"1 broadcast to {n:,}: ms to last client"]
                    + [f"{single[p]:.1f}" if single[p] else "n/a" for p in names]
                    + [_ratio(single["python-socketio"], single["lablib"])]
                    + ([_ratio(single["node socket.io"], single["lablib"])] if "node socket.io" in names else []))
        k = by["lablib"].get("burst_k", 0)
        rows.append([f"{k:,} broadcasts to {n:,}: deliveries/s"]
                    + [f"{rate[p]:,.0f}" if rate[p] else "n/a" for p in names]
                    + [_ratio(rate["lablib"], rate["python-socketio"])]
                    + ([_ratio(rate["lablib"], rate["node socket.io"])] if "node socket.io" in names else []))
        cpu = {p: by[p].get("server_cpu_us_per_delivery") for p in names}
        rows.append([f"  same burst: server CPU µs/delivery"]
                    + [f"{cpu[p]:.1f}" if cpu[p] else "n/a" for p in names]
                    + [_ratio(cpu["python-socketio"], cpu["lablib"])]
                    + ([_ratio(cpu["node socket.io"], cpu["lablib"])] if "node socket.io" in names else []))
    headers = (["scenario"] + names + ["lablib vs python-socketio"]
               + (["lablib vs node"] if "node socket.io" in names else []))
    title = (f"Socket.IO fan-out to a room (WebSocket clients, 2 client processes); one broadcast: "
             f"median of {repeats}; ratio >1: lablib faster")
    table = title + "\n\n" + format_table(headers, rows)
    target = ["Target: fan-out to 1,000 clients >= 1.5x python-socketio"]
    if 1000 in data:
        for row in rows:
            if "1,000:" in row[0]:
                verdict = "met" if _num(row[len(names) + 1]) >= 1.5 else "NOT met"
                target.append(f"  {row[0]}: {row[len(names) + 1]} -> {verdict}")
    text = table + "\n\n" + "\n".join(target)
    errors = [f"{p} at {n}: {d['error']}" for n in sizes for p, d in data[n].items() if "error" in d]
    if errors:
        text += "\nerrors: " + "; ".join(errors)
    if node_missing:
        text += f"\n(Node column skipped: {node_missing})"
    if save_as:
        save(save_as, command, [table, "\n".join(target)], data)
    return text


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "n/a"


def _num(text: str) -> float:
    return float(text.rstrip("x")) if text != "n/a" else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="rooms of 100 and 1,000, fewer repeats")
    parser.add_argument("--sizes", help="comma-separated room sizes")
    parser.add_argument("--save", metavar="NAME", help="write benchmarks/results/NAME.json")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    print(run(args.quick, sizes, args.save,
              "python -m benchmarks.scale_fanout " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
