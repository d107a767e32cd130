"""``python -m benchmarks``: run every benchmark (or the ones named) and print their tables.

    python -m benchmarks                      # all, 7 repeats each
    python -m benchmarks ws_frames --repeats 3
    python -m benchmarks ws_echo --messages 2000 --client websockets --cpus split
    python -m benchmarks sio_echo --calls 2000 --connects 100
    python -m benchmarks ws_memory --connections 3000
    python -m benchmarks sio_redis_fanout --quick      # < 60 s
    python -m benchmarks scale_idle scale_fanout scale_latency scale_setup --quick
    python -m benchmarks scale_idle --idle-sizes 1000,5000,10000 --save scale_idle
"""

from __future__ import annotations

import argparse
import platform
import sys

from . import (scale_fanout, scale_idle, scale_latency, scale_setup, sio_echo, sio_redis_fanout,
               ws_echo, ws_frames, ws_memory)

BENCHMARKS = {
    "ws_frames": lambda args: ws_frames.run(args.repeats),
    "ws_echo": lambda args: ws_echo.run(args.repeats, args.messages, args.client, args.cpus),
    "sio_echo": lambda args: sio_echo.run(args.repeats, args.calls, args.connects, args.cpus),
    "ws_memory": lambda args: ws_memory.run(args.repeats, args.connections),
    "sio_redis_fanout": lambda args: sio_redis_fanout.run(min(args.repeats, 3), args.broadcasts,
                                                          quick=args.quick),
    # at scale: lablib, websockets / python-socketio and Node, one run each (see README.md)
    "scale_idle": lambda args: scale_idle.run(
        1, args.quick, _sizes(args.idle_sizes), _save(args, "scale_idle"),
        _command(args, "scale_idle")),
    "scale_fanout": lambda args: scale_fanout.run(
        args.quick, _sizes(args.room_sizes), _save(args, "scale_fanout"),
        _command(args, "scale_fanout")),
    "scale_latency": lambda args: scale_latency.run(
        args.quick, args.rate, args.latency_clients, None, _save(args, "scale_latency"),
        _command(args, "scale_latency")),
    "scale_setup": lambda args: scale_setup.run(
        args.quick, None, _save(args, "scale_setup"), _command(args, "scale_setup")),
}


def _sizes(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(s) for s in text.split(",")) if text else None


def _save(args: argparse.Namespace, name: str) -> str | None:
    return name if args.save else None


def _command(args: argparse.Namespace, name: str) -> str:
    return "python -m benchmarks " + name + " " + " ".join(sys.argv[1:] if args.argv is None
                                                           else args.argv)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="lablib against the reference libraries")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement (median)")
    parser.add_argument("--messages", type=int, default=10_000, help="ws_echo: messages per run")
    parser.add_argument("--client", choices=["raw", "websockets"], default="raw",
                        help="ws_echo: the client driving both servers")
    parser.add_argument("--calls", type=int, default=2000,
                        help="sio_echo: calls of the 1-client echo-with-ack scenario")
    parser.add_argument("--connects", type=int, default=100,
                        help="sio_echo: connections per run of the connect scenarios")
    parser.add_argument("--connections", type=int, default=3000,
                        help="ws_memory: idle connections per run")
    parser.add_argument("--cpus", choices=["same", "split", "any"], default="same",
                        help="ws_echo, sio_echo: client and servers on one CPU, on two, or unpinned")
    parser.add_argument("--broadcasts", type=int, default=50,
                        help="sio_redis_fanout: messages broadcast per run")
    parser.add_argument("--quick", action="store_true",
                        help="sio_redis_fanout, scale_*: the small sizes (each under about a minute)")
    parser.add_argument("--idle-sizes", help="scale_idle: connection counts, e.g. 1000,5000,10000")
    parser.add_argument("--room-sizes", help="scale_fanout: room sizes, e.g. 100,1000,5000")
    parser.add_argument("--rate", type=float, default=500,
                        help="scale_latency: offered load, messages/s from all clients")
    parser.add_argument("--latency-clients", type=int, default=50,
                        help="scale_latency: clients sharing the offered load")
    parser.add_argument("--save", action="store_true",
                        help="scale_*: also write benchmarks/results/<name>.json")
    args = parser.parse_args(argv)
    args.argv = argv
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    for name in args.names or BENCHMARKS:
        print()
        print(BENCHMARKS[name](args), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
