"""lablib.lab: the helpers the chapters share (predict-then-check, placeholders, tables, the
raw WebSocket client of chapter 03)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import socket
import struct

import pytest

from lablib.lab import (PROBE, RawExchange, SideBySide, bytes_carried, check, close_of, first_close,
                        for_display, hide_random, raw_exchange, settle, until, verdict, ws_drain)
from lablib.websocket import serve
from lablib.websocket.frames import Frame, Opcode, apply_mask, encode_frame
from lablib.websocket.handshake import accept_key, generate_key
from tests.aio_support import run_guarded

SID = "AbCdEfGhIjKlMnOpQrSt"   # 20 characters, as Engine.IO's


def test_check_right_prints_right(capsys):
    check("Q1", 8, 8, "count the header")
    assert capsys.readouterr().out == "Q1: right\n"


def test_check_right_with_an_explanation(capsys):
    check("Q2", 3, 3, "no", explain="one per namespace.")
    assert capsys.readouterr().out == "Q2: right. one per namespace.\n"


def test_check_ok_overrides_equality(capsys):
    check("Q3", 10, 11, "too far", ok=abs(10 - 11) <= 1)
    assert capsys.readouterr().out == "Q3: right\n"


def test_check_wrong_says_why_and_raises(capsys):
    with pytest.raises(AssertionError, match="Q4: wrong: count the mask"):
        check("Q4", 6, 10, "count the mask")
    assert capsys.readouterr().out == "Q4: wrong: you answered 6, measured 10. count the mask\n"


def test_check_why_wrong_may_depend_on_the_answer(capsys):
    with pytest.raises(AssertionError, match="6 is the header only"):
        check("Q5", 6, 10, lambda answer: f"{answer} is the header only")


def test_check_the_blank_is_never_right(capsys):
    with pytest.raises(AssertionError, match="no answer yet"):
        check("Q6", ..., ..., "x")
    assert "write it in the answer cell" in capsys.readouterr().out


def test_hide_random_replaces_sids_and_ports():
    text = f'GET /socket.io/?sid={SID} 127.0.0.1:54321 0{{"sid":"{SID}"}} sid {SID}'
    assert hide_random(text) == ('GET /socket.io/?sid=<sid> 127.0.0.1:<port> 0{"sid":"<sid>"} '
                                 'sid <sid>')
    assert hide_random(text, ports=False) == ('GET /socket.io/?sid=<sid> 127.0.0.1:54321 '
                                              '0{"sid":"<sid>"} sid <sid>')
    assert hide_random(text, sids=False) == text.replace("54321", "<port>")


def test_hide_random_leaves_shorter_ids_alone():
    assert hide_random("sid=abc 127.0.0.1") == "sid=abc 127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Record:
    layer: str
    summary: str


def test_for_display_rewrites_only_the_summaries():
    records = [Record("eio", f"open sid={SID}"), Record("tcp", "127.0.0.1:80 -> 127.0.0.1:4000")]
    assert for_display(records) == [Record("eio", "open sid=<sid>"),
                                    Record("tcp", "127.0.0.1:<port> -> 127.0.0.1:<port>")]
    assert for_display(records, sids=False)[0] == records[0]


class Table:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text

    def _repr_html_(self):
        return f"<table>{self.text}</table>"


def test_side_by_side_text_and_html():
    both = SideBySide(left=Table("a"), right=Table("b"))
    assert repr(both) == "left\na\n\nright\nb"
    assert both._repr_html_() == (
        '<div style="display:flex;flex-wrap:wrap;align-items:flex-start">'
        '<div style="margin-right:24px"><b>left</b><table>a</table></div>'
        '<div style="margin-right:24px"><b>right</b><table>b</table></div></div>')


def test_until_returns_once_the_condition_holds():
    async def scenario():
        flag = []
        asyncio.get_running_loop().call_soon(flag.append, 1)
        await until(lambda: flag)
        return flag

    assert asyncio.run(scenario()) == [1]


def test_until_times_out():
    with pytest.raises(TimeoutError):
        asyncio.run(until(lambda: False, timeout=0.05))


def test_until_checks_the_condition_every_interval(monkeypatch):
    """The chapters that poll faster (09 to 12) pass their own interval."""
    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr("lablib.lab.asyncio.sleep", fake_sleep)
    checks = iter([False, False, True])
    asyncio.run(until(lambda: next(checks), interval=0.002))
    assert slept == [0.002, 0.002]


def test_ws_echo_serves_websockets_and_lablib_alike():
    import random

    from websockets.asyncio.server import serve as websockets_serve

    from lablib.lab import ws_echo
    from lablib.websocket import connect, serve

    async def scenario():
        answers = []
        async with serve(ws_echo, "127.0.0.1", 0, rng=random.Random(1)) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/", rng=random.Random(2)) as ws:
                await ws.send("hi")
                answers.append(await ws.recv())
        async with websockets_serve(ws_echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", rng=random.Random(2)) as ws:
                await ws.send(b"\x01")
                answers.append(await ws.recv())
        return answers

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == ["hi", b"\x01"]


# --- the raw WebSocket client of chapter 03 -----------------------------------------------------

def test_probe_is_a_masked_ping_then_a_close_with_seeded_keys():
    keys = random.Random(42)
    ping_key, close_key = keys.randbytes(4), keys.randbytes(4)
    assert PROBE == (b"\x89\x85" + ping_key + apply_mask(b"probe", ping_key)
                     + b"\x88\x87" + close_key + apply_mask(b"\x03\xe8probe", close_key))
    assert PROBE.hex(" ") == ("89 85 9d 79 b1 a3 ed 0b de c1 f8 "
                              "88 87 7f 31 80 1c 7c d9 f0 6e 10 53 e5")


def test_close_of_reads_the_first_close_frame_a_server_sent():
    assert close_of(b"\x81\x02hi" + b"\x88\x05\x03\xeabye" + b"\x88\x02\x03\xe8") == (1002, "bye")
    assert close_of(b"\x88\x00") == (1005, "")          # no status code (§7.1.5)
    assert close_of(b"\x81\x02hi") is None


def test_first_close_skips_other_frames():
    frames = [Frame(Opcode.PONG, b"x"), Frame(Opcode.CLOSE, b"\x03\xf1"), Frame(Opcode.CLOSE)]
    assert first_close(frames) == (1009, "")
    assert first_close(frames[:1]) is None


@pytest.mark.parametrize("exchange, words", [
    (RawExchange([Frame(Opcode.CLOSE, b"\x03\xeabad")], None, "FIN"), "1002 'bad'"),
    (RawExchange([Frame(Opcode.TEXT, b"x")], None, "RST"), "no close frame (RST)"),
    (RawExchange([], [Frame(Opcode.PONG, b"probe"), Frame(Opcode.CLOSE, b"\x03\xe8probe")], "FIN"),
     "silent; probe -> pong, then 1000 'probe'"),
    (RawExchange([], [Frame(Opcode.CLOSE, b"\x03\xea")], "FIN"), "silent; probe -> 1002 ''"),
    (RawExchange([], [], "timeout"), "silent; probe -> no close frame (timeout)"),
])
def test_verdict_in_a_few_words(exchange, words):
    assert verdict(exchange) == words


def client_frame(opcode, payload=b"", **fields):
    return encode_frame(opcode, payload, masking_key=b"\x01\x02\x03\x04", **fields)


def test_raw_exchange_a_violation_gets_the_servers_close_frame():
    async def scenario():
        async with serve(ws_drain, "127.0.0.1", 0, ping_interval=None, rng=random.Random(1)) as server:
            return await raw_exchange(server.port, client_frame(0x3, b"x"))

    exchange = run_guarded(scenario())
    assert exchange.probe_answer is None and exchange.ending == "FIN"
    assert [f.opcode for f in exchange.answer] == [Opcode.CLOSE]
    assert verdict(exchange) == "1002 'reserved opcode 0x3'"


def test_raw_exchange_probes_a_server_that_stays_silent():
    async def scenario():
        async with serve(ws_drain, "127.0.0.1", 0, ping_interval=None, rng=random.Random(1)) as server:
            return await raw_exchange(server.port, client_frame(Opcode.TEXT, b"hi"), wait=0.2)

    exchange = run_guarded(scenario())
    assert exchange.answer == [] and exchange.ending == "FIN"
    assert [(f.opcode, f.payload) for f in exchange.probe_answer] == [
        (Opcode.PONG, b"probe"), (Opcode.CLOSE, b"\x03\xe8")]  # lablib echoes the code only
    assert verdict(exchange) == "silent; probe -> pong, then 1000 ''"


async def hand_made_server(after_101):
    """A TCP server that answers any upgrade request with a 101, then runs
    ``after_101(reader, writer)``; it keeps each request head it read in ``server.requests``."""
    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        server.requests.append(head)
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", head).group(1).decode()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                     + accept_key(key).encode() + b"\r\n\r\n")
        await after_101(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.requests = []
    return server


def test_raw_exchange_says_when_a_server_never_answers_and_never_closes():
    async def scenario():
        released = asyncio.Event()

        async def stay_silent(reader, writer):
            await released.wait()
            writer.close()

        server = await hand_made_server(stay_silent)
        try:
            port = server.sockets[0].getsockname()[1]
            return await raw_exchange(port, client_frame(Opcode.TEXT, b"hi"), wait=0.05, timeout=0.05)
        finally:
            released.set()
            server.close()

    assert run_guarded(scenario()) == RawExchange([], [], "timeout")


def test_raw_exchange_says_when_a_server_resets_the_connection():
    async def scenario():
        async def reset(reader, writer):
            await reader.readexactly(1)        # the first byte of our frame has arrived
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()           # with SO_LINGER 0: an RST, not a FIN

        server = await hand_made_server(reset)
        try:
            port = server.sockets[0].getsockname()[1]
            return await raw_exchange(port, client_frame(Opcode.TEXT, b"hi"))
        finally:
            server.close()

    exchange = run_guarded(scenario())
    assert exchange.ending == "RST" and exchange.answer == []
    assert verdict(exchange) == "no close frame (RST)"


def test_raw_exchange_sends_the_same_seeded_request_every_time():
    async def scenario():
        async def close(reader, writer):
            writer.close()

        server = await hand_made_server(close)
        try:
            port = server.sockets[0].getsockname()[1]
            for rng in (None, None, random.Random(7)):
                await raw_exchange(port, b"", rng=rng)
            return server.requests
        finally:
            server.close()

    first, second, third = run_guarded(scenario())
    assert first == second
    assert f"Sec-WebSocket-Key: {generate_key(random.Random(13))}\r\n".encode() in first
    assert f"Sec-WebSocket-Key: {generate_key(random.Random(7))}\r\n".encode() in third


def test_ws_drain_reads_everything_for_websockets_and_lablib_alike():
    from websockets.asyncio.server import serve as websockets_serve

    async def scenario():
        verdicts = []
        frames = client_frame(Opcode.TEXT, b"a") + client_frame(Opcode.BINARY, b"b")
        async with serve(ws_drain, "127.0.0.1", 0, ping_interval=None, rng=random.Random(1)) as server:
            verdicts.append(verdict(await raw_exchange(server.port, frames, wait=0.2)))
        async with websockets_serve(ws_drain, "127.0.0.1", 0, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            verdicts.append(verdict(await raw_exchange(port, frames, wait=0.2)))
        return verdicts

    assert run_guarded(scenario()) == ["silent; probe -> pong, then 1000 ''",
                                       "silent; probe -> pong, then 1000 'probe'"]


# --- counting what a relay carried ----------------------------------------------------------------

@dataclasses.dataclass
class FakeConversation:
    chunks: list = dataclasses.field(default_factory=list)
    bytes_c2s: int = 0
    bytes_s2c: int = 0


class GrowingRelay:
    """A relay stand-in whose capture gains one chunk each time it is looked at, ``busy`` times
    (None: for ever)."""

    def __init__(self, busy):
        self.busy, self.looks, self.conversation = busy, 0, FakeConversation()

    @property
    def capture(self):
        self.looks += 1
        if self.busy is None or self.looks <= self.busy:
            self.conversation.chunks.append(b"x")
        return [self.conversation]


def test_settle_returns_once_nothing_more_arrives():
    relay = GrowingRelay(busy=4)
    run_guarded(settle(relay, quiet=0))
    assert len(relay.conversation.chunks) == 4


def test_settle_times_out_on_a_relay_that_never_goes_quiet():
    with pytest.raises(TimeoutError):
        run_guarded(settle(GrowingRelay(busy=None), quiet=0, timeout=0.05))


def test_bytes_carried_adds_up_every_connection():
    class Relay:
        capture = [FakeConversation(bytes_c2s=3, bytes_s2c=5), FakeConversation(bytes_c2s=10)]

    assert bytes_carried(Relay()) == (13, 5)


def test_bytes_carried_through_a_real_relay():
    from lablib.capture.relay import Relay

    async def echo(reader, writer):
        writer.write(await reader.readexactly(3))
        await writer.drain()
        writer.close()

    async def scenario():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        try:
            async with Relay("127.0.0.1", server.sockets[0].getsockname()[1]) as relay:
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
                writer.write(b"abc")
                assert await reader.readexactly(3) == b"abc"
                writer.close()
                return bytes_carried(relay)
        finally:
            server.close()

    assert run_guarded(scenario()) == (3, 3)
