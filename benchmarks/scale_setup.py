"""Setup cost: time and bytes from TCP connect to the first delivered message.

For each protocol and transport, a client connects, does everything its protocol needs, sends
one message and waits for the answer (the first message delivered end to end):

- **raw WebSocket**: TCP connect, the opening handshake (RFC 6455 §4), a text message, its echo;
- **Socket.IO websocket**: the Engine.IO handshake over a WebSocket, CONNECT ``40``, the event
  ``420["echo",...]`` and its ack ``430[...]``;
- **Socket.IO polling**: the Engine.IO handshake by GET, CONNECT by POST, its answer by GET,
  the event by POST and its ack by GET (long-polling only, no upgrade);
- **Socket.IO polling -> websocket**: what socket.io-client does by default: the handshake and
  CONNECT over polling, then the upgrade (probe ``2probe``/``3probe``, ``5``), and the event
  over the WebSocket.

**ms**: the median over 50 connections made one after the other (10 with ``--quick``), each
timed from before ``connect()`` to the answer's last byte.  **bytes**: one more connection through
lablib's recording relay (:class:`lablib.capture.relay.Relay`), counting every byte both ways
(client to server + server to client, all TCP connections of that client) up to the answer -
HTTP headers included, TCP/IP headers not.  The clients are the hand-written ones of
:mod:`benchmarks.sio_echo` (blocking sockets); the servers are :mod:`benchmarks._peers`.

    python -m benchmarks.scale_setup [--quick] [--connects 50] [--save NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from . import format_table
from ._peers import PEERS, label, node_available, save, started
from .sio_echo import (Stream, _expect, connect_polling_then_upgrade, connect_websocket, first_ack,
                       ws_frame)

TEXT = "0123456789abcdefghijklmnopqrstuv"


def raw_websocket(port: int) -> list[Stream]:
    stream = Stream(port)
    stream.upgrade("")
    stream.sock.sendall(ws_frame(TEXT))
    _expect("echo", stream.read_frame(), TEXT)
    return [stream]


def sio_websocket(port: int) -> list[Stream]:
    stream = connect_websocket(port)
    first_ack(stream)
    return [stream]


def sio_polling(port: int) -> list[Stream]:
    """Long-polling only: every packet by GET or POST on one keep-alive connection."""
    stream = Stream(port)
    stream.request("GET", "EIO=4&transport=polling")
    status, body = stream.read_response()
    _expect("open packet", body, '0{"sid":')
    query = f"EIO=4&transport=polling&sid={json.loads(body[1:])['sid']}"
    stream.request("POST", query, "40")
    stream.read_response()
    stream.request("GET", query)
    _expect("CONNECT answer", stream.read_response()[1], '40{"sid":')
    stream.request("POST", query, f'420["echo",{json.dumps(TEXT)}]')
    stream.read_response()
    answer = ""
    while not answer.startswith("43"):
        stream.request("GET", query)
        packets = [p for p in stream.read_response()[1].split("\x1e") if p not in ("", "6")]
        answer = packets[0] if packets else ""
    _expect("ack", answer, f"430[{json.dumps(TEXT)}]")
    return [stream]


def sio_polling_upgrade(port: int) -> list[Stream]:
    polling, websocket = connect_polling_then_upgrade(port)
    first_ack(websocket)
    return [polling, websocket]


TRANSPORTS = {"raw WebSocket": ("ws", raw_websocket),
              "Socket.IO websocket": ("sio", sio_websocket),
              "Socket.IO polling": ("sio", sio_polling),
              "Socket.IO polling -> websocket": ("sio", sio_polling_upgrade)}


def _close(streams: list[Stream]) -> None:
    for stream in streams:
        stream.sock.close()


def timed(connect, port: int, count: int) -> list[float]:
    connect(port)   # warm-up
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        streams = connect(port)
        samples.append(time.perf_counter() - start)
        _close(streams)
    return samples


def counted(connect, port: int) -> dict:
    """Bytes both ways, through the recording relay, up to the first answer."""
    from lablib.capture.relay import Relay

    async def go() -> dict:
        async with Relay("127.0.0.1", port) as relay:
            streams = await asyncio.to_thread(connect, relay.port)
            conversations = relay.capture.conversations
            result = {"c2s": sum(c.bytes_c2s for c in conversations),
                      "s2c": sum(c.bytes_s2c for c in conversations),
                      "tcp_connections": len(conversations)}
            _close(streams)
            return result

    return asyncio.run(go())


def run(quick: bool = False, connects: int | None = None, save_as: str | None = None,
        command: str = "") -> str:
    connects = connects or (10 if quick else 50)
    node_missing = node_available()
    data: dict = {}
    rows = []
    for transport, (kind, connect) in TRANSPORTS.items():
        for peer in PEERS[kind]:
            if peer == "node" and node_missing:
                continue
            with started(peer, kind) as (proc, port):
                samples = timed(connect, port, connects)
                data.setdefault(transport, {})[label(kind, peer)] = {
                    "ms": [s * 1e3 for s in samples], **counted(connect, port)}
        lab = statistics.median(data[transport]["lablib"]["ms"])
        for name, r in data[transport].items():
            ms = statistics.median(r["ms"])
            rows.append([transport, name, f"{ms:.2f}",
                         "" if name == "lablib" else f"{ms / lab:.2f}x",
                         f"{r['c2s'] + r['s2c']:,}", f"{r['c2s']:,}", f"{r['s2c']:,}",
                         str(r["tcp_connections"])])
    headers = ["transport", "server", "ms to 1st message", "time ratio (peer / lablib)",
               "bytes", "client->server", "server->client", "TCP conns"]
    title = (f"Setup: TCP connect to the first delivered message (an echo / an ack), median of "
             f"{connects} connections; bytes through lablib's relay (HTTP included, TCP/IP not)")
    table = title + "\n\n" + format_table(headers, rows)
    text = table + (f"\n(Node rows skipped: {node_missing})" if node_missing else "")
    if save_as:
        save(save_as, command, [table], data)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 connections per server")
    parser.add_argument("--connects", type=int, help="timed connections per server")
    parser.add_argument("--save", metavar="NAME", help="write benchmarks/results/NAME.json")
    args = parser.parse_args(argv)
    print(run(args.quick, args.connects, args.save,
              "python -m benchmarks.scale_setup " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
