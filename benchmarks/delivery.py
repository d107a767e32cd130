"""Delivery under faults: messages lost, duplicated and reordered, per direction (chapter 11).

A lablib server and a lablib client talk through the relay (:mod:`lablib.capture.relay`),
which cuts the connection ``--cuts`` times at seeded points of the workload.  The workload:
``--messages`` numbered messages each way, interleaved - the client emits ``c2s`` with its
number (and a message id it chose), the server broadcasts ``s2c`` to everyone - paced by the
client's buffers.  Each setting runs on a fresh server, client and relay, with the same seed:

    default           at-most-once: what is in flight at a cut, or sent while away, is lost
    recovery          connection_state_recovery on the server (server -> client replay)
    retries           the client's retries + ack_timeout (client -> server re-sends)
    retries+dedupe    the same, and the server processes each message id once (Dedupe)
    all               recovery + retries + dedupe

Counted on the receiving side of each direction, after the traffic has settled: *lost* (numbers
never processed), *duplicated* (processed more than once), *reordered* (processed after a
higher number); and how many reconnections were recovered.  ``python -m benchmarks.delivery [--messages 2000] [--cuts 20] [--seed 1]``

This measures behaviour, not speed: the numbers do not depend on the machine's load except
through where in the traffic a cut falls (the seed fixes the message index of each cut, not
what is in flight at that moment).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from lablib.capture.relay import Relay
from lablib.socketio.client import AsyncClient
from lablib.socketio.dedupe import Dedupe
from lablib.socketio.server import Server, serve

SETTINGS = {
    "default": dict(recovery=False, retries=False, dedupe=False),
    "recovery": dict(recovery=True, retries=False, dedupe=False),
    "retries": dict(recovery=False, retries=True, dedupe=False),
    "retries+dedupe": dict(recovery=False, retries=True, dedupe=True),
    "all": dict(recovery=True, retries=True, dedupe=True),
}


@dataclass
class Tally:
    processed: list[int] = field(default_factory=list)

    def counts(self, sent: int) -> tuple[int, int, int]:
        seen = set(self.processed)
        lost = sent - len(seen & set(range(sent)))
        duplicated = len(self.processed) - len(seen)
        reordered, highest = 0, -1
        for number in self.processed:
            if number < highest:
                reordered += 1
            highest = max(highest, number)
        return lost, duplicated, reordered


async def run_setting(name: str, messages: int, cuts: int, seed: int) -> dict:
    options = SETTINGS[name]
    rng = random.Random(seed)
    cut_at = sorted(rng.sample(range(1, messages), cuts))
    recovery = {"max_disconnection_duration": 60000} if options["recovery"] else None
    sio = Server(connection_state_recovery=recovery, rng=random.Random(seed))
    to_server, to_client = Tally(), Tally()
    seen = Dedupe(max_entries=100_000, ttl=None)

    @sio.on("c2s")
    async def c2s(sid, message):
        if not options["dedupe"] or seen.first(message["id"]):
            to_server.processed.append(message["n"])
        return "ok"

    async with serve(sio) as server, Relay("127.0.0.1", server.port) as relay:
        client = AsyncClient(reconnection_delay=0.05, reconnection_delay_max=0.2,
                             rng=random.Random(seed), max_send_buffer=100_000,
                             retries=10 if options["retries"] else None,
                             ack_timeout=0.5 if options["retries"] else None)
        client.on("s2c", lambda number: to_client.processed.append(number))
        reconnects = []   # recovered or not, for each reconnection
        client.on("connect", lambda: reconnects.append(client.recovered()))
        await client.connect(f"http://127.0.0.1:{relay.port}", transports=["websocket"])
        started = time.monotonic()
        for number in range(messages):
            if cut_at and number == cut_at[0]:
                cut_at.pop(0)
                relay.cut()
            await client.emit("c2s", {"id": f"c-{number}", "n": number})
            await sio.emit("s2c", number)
            while client.core.queued() > 50 or client.core.buffered() > 50:
                await asyncio.sleep(0.005)   # the client's retry queue / send buffer drains
            if number % 10 == 9:
                await asyncio.sleep(0.002)   # let both sides read
        await _settle(client, to_server, to_client)
        elapsed = time.monotonic() - started
        await client.disconnect()
    return {"setting": name, "c2s": to_server.counts(messages),
            "s2c": to_client.counts(messages), "seconds": elapsed,
            "recovered": f"{sum(reconnects[1:])}/{len(reconnects) - 1}"}


async def _settle(client: AsyncClient, *tallies: Tally, quiet: float = 1.5) -> None:
    """Wait until nothing has been processed for ``quiet`` seconds and the client is
    connected with its queues empty (or 60 s)."""
    deadline = time.monotonic() + 60
    last, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        state = tuple(len(t.processed) for t in tallies)
        if state != last:
            last, last_change = state, time.monotonic()
        idle = client.connected and not client.core.queued() and not client.core.buffered()
        if idle and time.monotonic() - last_change >= quiet:
            return
        await asyncio.sleep(0.05)


def table(results: list[dict], messages: int, cuts: int) -> str:
    lines = [f"{messages} messages each way, {cuts} cuts, lablib <-> lablib",
             f"{'setting':16} {'c2s lost':>9} {'dup':>5} {'reord':>6}   "
             f"{'s2c lost':>9} {'dup':>5} {'reord':>6}   {'recovered':>9} {'seconds':>7}"]
    for result in results:
        c_lost, c_dup, c_re = result["c2s"]
        s_lost, s_dup, s_re = result["s2c"]
        lines.append(f"{result['setting']:16} {c_lost:9d} {c_dup:5d} {c_re:6d}   "
                     f"{s_lost:9d} {s_dup:5d} {s_re:6d}   {result['recovered']:>9} "
                     f"{result['seconds']:7.1f}")
    return "\n".join(lines)


async def main_async(messages: int, cuts: int, seed: int, settings: list[str]) -> list[dict]:
    return [await run_setting(name, messages, cuts, seed) for name in settings]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.delivery", description=__doc__
                                     .split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)   # the cuts log transport errors by design
    results = asyncio.run(main_async(args.messages, args.cuts, args.seed, args.settings))
    print(table(results, args.messages, args.cuts))


if __name__ == "__main__":
    main()
