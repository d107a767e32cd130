"""Idle connections at scale: server memory per connection and heartbeat CPU per connection.

For each transport (raw WebSocket; Socket.IO over WebSocket; Socket.IO over HTTP long-polling)
and each N (1,000 / 5,000 / 10,000; polling up to 5,000: a polling client holds two TCP
connections, and the descriptor limit is per process), each peer server runs in a fresh process
with a **1 s heartbeat** (Engine.IO ``pingInterval`` 1000 ms; a WebSocket ping every second for
the raw servers; Node's ``ws`` has no keepalive of its own, so its peer pings every client from
a 1 s timer, as the ``ws`` README recommends).  A run:

1. opens and closes 100 warm-up connections, then reads the server's RSS (``/proc/PID/status``);
2. opens N clients from 2 client processes (:mod:`benchmarks._clients`: raw sockets doing the
   handshakes and answering every ping; at most 240 s, a server too slow for that keeps the
   clients it got, and the table says so), waits 1 s, reads the RSS again:
   **KiB/conn** = RSS growth / N (N = the clients actually open);
3. reads the server's CPU time (user + system, every thread: ``/proc/PID/stat``) over an idle
   window (5 s; 2 s with ``--quick``): **CPU µs/conn/s** = CPU seconds / window / N x 10^6,
   the cost of keeping one connection alive (its heartbeats) for one second;
4. checks that every client is still connected and counts the pings the clients answered.

Every process raises its open-file limit (``RLIMIT_NOFILE``) to the hard limit.

    python -m benchmarks.scale_idle [--quick] [--sizes 1000,5000,10000] [--repeats 1]
                                    [--transports ws,sio-ws,sio-polling] [--save NAME]
"""

from __future__ import annotations

import argparse
import statistics
import time

from . import format_table
from ._clients import Workers
from ._peers import (PEERS, cpu_seconds, label, node_available, raise_open_file_limit, rss_kib, save,
                     started)

TRANSPORTS = {"raw WebSocket": ("ws", "ws"), "Socket.IO websocket": ("sio", "sio-ws"),
              "Socket.IO polling": ("sio", "sio-polling")}
FULL_SIZES = (1000, 5000, 10000)
QUICK_SIZES = (1000,)
POLLING_MAX = 5000
PING_MS = 1000
WARMUP = 100
CLIENT_PROCESSES = 2
OPEN_BUDGET = 240.0   # seconds to open the N clients; a server slower than that gets fewer


def measure(name: str, kind: str, client: str, n: int, window: float) -> dict:
    with started(name, kind, PING_MS) as (proc, port), Workers(CLIENT_PROCESSES) as workers:
        workers.open(client, port, WARMUP)
        workers.all(cmd="close")
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        start = time.monotonic()
        opened, failed, why = workers.open(client, port, n, OPEN_BUDGET)
        opening = time.monotonic() - start
        time.sleep(1.0 if window >= 5 else 0.5)   # settle (shorter with --quick)
        after = rss_kib(proc.pid)
        pings0 = sum(s["pings"] for s in workers.all(cmd="stats"))
        cpu0 = cpu_seconds(proc.pid)
        time.sleep(window)
        cpu1 = cpu_seconds(proc.pid)
        stats = workers.all(cmd="stats")
        alive = sum(s["alive"] for s in stats)
        pings = sum(s["pings"] for s in stats) - pings0
        workers.all(cmd="close")
    result = {"opened": opened, "failed": failed, "alive": alive, "open_seconds": opening,
              "kib_per_conn": (after - before) / opened if opened else None,
              "cpu_us_per_conn_s": (cpu1 - cpu0) / window / opened * 1e6 if opened else None,
              "pings_per_s": pings / window}
    if why:
        result["first_error"] = why
    return result


def _measure_or_error(name: str, kind: str, client: str, n: int, window: float) -> dict:
    try:
        return measure(name, kind, client, n, window)
    except Exception as exc:  # noqa: BLE001  (one failed run must not lose the others)
        return {"opened": 0, "failed": n, "alive": 0, "kib_per_conn": None,
                "cpu_us_per_conn_s": None, "pings_per_s": 0, "first_error": repr(exc)}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run(repeats: int = 1, quick: bool = False, sizes: tuple[int, ...] | None = None,
        save_as: str | None = None, command: str = "",
        transports: tuple[str, ...] | None = None) -> str:
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    window = 2.0 if quick else 5.0
    raise_open_file_limit(max(sizes) + 1000)
    node_missing = node_available()
    data: dict = {}
    for transport, (kind, client) in TRANSPORTS.items():
        if transports and client not in transports:
            continue
        peers = [p for p in PEERS[kind] if not (p == "node" and node_missing)]
        for n in sizes:
            if client == "sio-polling" and n > POLLING_MAX:
                continue
            results = {p: [] for p in peers}
            for _ in range(repeats):
                for peer in peers:   # alternating, as the other benchmarks do
                    results[peer].append(_measure_or_error(peer, kind, client, n, window))
            data.setdefault(transport, {})[n] = {label(kind, p): results[p] for p in peers}
            if save_as:   # after every size: a run cut short keeps what it measured
                save(save_as, command, render(data, window, repeats), data, window=window)
    tables = render(data, window, repeats)
    text = "\n\n".join(tables)
    if node_missing:
        text += f"\n(Node column skipped: {node_missing})"
    return text


def render(data: dict, window: float, repeats: int) -> list[str]:
    """The tables (one per transport) and the target's verdicts, from the measured ``data``."""
    tables = []
    for transport, by_size in data.items():
        peers = list(next(iter(by_size.values())))
        rows = []
        for n, results in by_size.items():
            n = int(n)
            opened = min(r["opened"] for p in peers for r in results[p])
            row = [f"{n:,} idle" + (f" (opened {opened:,} at worst)" if opened < n else "")]
            for key, digits in (("kib_per_conn", 1), ("cpu_us_per_conn_s", 1), ("us_per_ping", 1)):
                for peer in peers:
                    values = [_value(r, key) for r in results[peer]]
                    values = [v for v in values if v is not None]
                    row.append(_fmt(statistics.median(values) if values else None, digits))
            notes = [f"{p}: {r['alive']:,}/{n:,} alive"
                     + (f" ({r['first_error']})" if r.get("first_error") else "")
                     for p in peers for r in results[p][-1:] if r["alive"] != n]
            notes += [f"{p}: {r['pings_per_s']:,.0f} pings/s"
                      for p in peers for r in results[p][-1:]
                      if r["alive"] and r["pings_per_s"] < 0.8 * r["alive"] * 1000 / PING_MS]
            rows.append(row + ["; ".join(notes) or "all alive, every ping answered"])
        headers = (["scenario"] + [f"{p} KiB/conn" for p in peers]
                   + [f"{p} CPU µs/conn/s" for p in peers]
                   + [f"{p} CPU µs/ping" for p in peers] + ["notes (pings/s: below 80 % of N)"])
        title = (f"{transport}: idle connections, {PING_MS} ms heartbeat; KiB/conn = server RSS "
                 f"growth / N; CPU = server CPU over a {window:g} s idle window, per connection "
                 f"per second and per ping the clients answered (median of {repeats})")
        tables.append(title + "\n\n" + format_table(headers, rows))
    return tables + [_targets(data)]


def _value(result: dict, key: str) -> float | None:
    if key == "us_per_ping":   # CPU per heartbeat: servers do not all ping on the dot
        if not result.get("pings_per_s") or result.get("cpu_us_per_conn_s") is None:
            return None
        return result["cpu_us_per_conn_s"] * result["opened"] / result["pings_per_s"]
    return result.get(key)


def _targets(data: dict) -> str:
    """Target: lablib's KiB per idle connection <= websockets' and <= python-socketio's."""
    lines = ["Target: lablib KiB/conn <= websockets' (raw WebSocket) and <= python-socketio's"]
    for transport, ref in (("raw WebSocket", "websockets"), ("Socket.IO websocket", "python-socketio"),
                           ("Socket.IO polling", "python-socketio")):
        for n, by_peer in data.get(transport, {}).items():
            lab, other = (statistics.median([r["kib_per_conn"] or 0 for r in by_peer[p]])
                          for p in ("lablib", ref))
            verdict = "met" if lab <= other else "NOT met"
            lines.append(f"  {transport}, {int(n):,}: lablib {lab:.1f} vs {ref} {other:.1f} KiB "
                         f"-> {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1,000 connections only")
    parser.add_argument("--sizes", help="comma-separated connection counts")
    parser.add_argument("--save", metavar="NAME", help="write benchmarks/results/NAME.json")
    parser.add_argument("--transports", help="comma-separated subset of ws,sio-ws,sio-polling")
    parser.add_argument("--show", metavar="NAME",
                        help="print the tables of benchmarks/results/NAME.json (no measuring)")
    args = parser.parse_args(argv)
    if args.show:
        import json
        from ._peers import RESULTS
        saved = json.loads((RESULTS / f"{args.show}.json").read_text())
        print(f"{saved['command']}\n")
        print("\n\n".join(render(saved["data"], float(saved.get("window", 5)), 1)))
        return
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    import sys
    print(run(args.repeats, args.quick, sizes, args.save,
              "python -m benchmarks.scale_idle " + " ".join(sys.argv[1:]),
              tuple(args.transports.split(",")) if args.transports else None))


if __name__ == "__main__":
    main()
