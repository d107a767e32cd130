"""``python -m benchmarks``: run every benchmark (or the ones named) and print their tables.

    python -m benchmarks                      # all, 7 repeats each
    python -m benchmarks ws_frames --repeats 3
    python -m benchmarks ws_echo --messages 2000 --client websockets --cpus split
    python -m benchmarks sio_echo --calls 2000 --connects 100
    python -m benchmarks ws_memory --connections 3000
    python -m benchmarks sio_redis_fanout --quick      # < 60 s
"""

from __future__ import annotations

import argparse
import platform
import sys

from . import sio_echo, sio_redis_fanout, ws_echo, ws_frames, ws_memory

BENCHMARKS = {
    "ws_frames": lambda args: ws_frames.run(args.repeats),
    "ws_echo": lambda args: ws_echo.run(args.repeats, args.messages, args.client, args.cpus),
    "sio_echo": lambda args: sio_echo.run(args.repeats, args.calls, args.connects, args.cpus),
    "ws_memory": lambda args: ws_memory.run(args.repeats, args.connections),
    "sio_redis_fanout": lambda args: sio_redis_fanout.run(min(args.repeats, 3), args.broadcasts,
                                                          quick=args.quick),
}


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
                        help="sio_redis_fanout: 1 repeat of 10 messages (< 60 s)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    for name in args.names or BENCHMARKS:
        print()
        print(BENCHMARKS[name](args), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
