"""Small helpers the chapters share: predict-then-check, placeholders for random values, tables
side by side, an echo handler, and a wait for a condition.

A chapter's questions are *predict-then-check*: the learner writes a value in an answer cell,
then a check cell measures the real value and calls :func:`check`, which says "right", or says
why the answer is wrong and raises ``AssertionError`` (so nbval and the student version's
``--check`` see a wrong or missing answer as a failure)::

    Q1_ANSWER = ...   # the blank of the student version: never right
    check("Q1", Q1_ANSWER, measured=len(frame), why_wrong="count the two header bytes too")

Values that change from run to run (the session ids python-socketio draws from ``os.urandom``,
ephemeral ports) are shown as ``<sid>`` and ``<port>`` by :func:`hide_random` and
:func:`for_display`, so stored outputs re-run identical.

Chapter 03 sends servers bytes no well-behaved client would send, over a raw TCP socket:
:func:`raw_exchange` does the opening handshake by hand, writes the bytes, reads the frames the
server answers until it closes TCP, and probes a server that stays silent; :func:`verdict` says
in a few words what the server did.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import struct
from typing import Any, Callable, NamedTuple

import websockets

from .errors import ConnectionClosed
from .websocket.frames import (NEED_DATA, Frame, FrameParser, Opcode, encode_frame,
                               parse_close_payload)
from .websocket.handshake import ClientHandshake

__all__ = ["PROBE", "RawExchange", "SideBySide", "bytes_carried", "check", "close_of", "first_close",
           "for_display", "hide_random", "raw_exchange", "settle", "until", "verdict", "ws_drain",
           "ws_echo"]

#: A session id (20 URL-safe base64 characters) after ``sid=``, ``"sid":"`` or ``sid ``.
SID = re.compile(r'(sid=|"sid":"|sid )[A-Za-z0-9_-]{20}')
#: A loopback address with its (ephemeral) port.
PORT = re.compile(r"127\.0\.0\.1:\d+")


def check(question: str, answer: Any, measured: Any, why_wrong: str | Callable[[Any], str],
          ok: bool | None = None, explain: str = "") -> None:
    """Print "right" (and ``explain``), or print "wrong: <why>" and raise AssertionError.

    ``measured`` is the value the notebook measured just now; ``ok`` overrides
    ``answer == measured`` (for a tolerance or a set of acceptable answers).  ``why_wrong`` is a
    text, or a function of the answer giving the reason for that answer.  ``...`` (the blank of
    the student version) is never right.
    """
    if answer is ...:
        print(f"{question}: no answer yet: write it in the answer cell, run it, then this cell")
        raise AssertionError(f"{question}: no answer yet")
    if (answer == measured) if ok is None else ok:
        print(f"{question}: right. {explain}".rstrip() if explain else f"{question}: right")
        return
    why = why_wrong(answer) if callable(why_wrong) else why_wrong
    print(f"{question}: wrong: you answered {answer!r}, measured {measured!r}. {why}")
    raise AssertionError(f"{question}: wrong: {why}")


def hide_random(text: str, *, sids: bool = True, ports: bool = True) -> str:
    """``text`` with session ids (:data:`SID`) and ports (:data:`PORT`) replaced by ``<sid>`` and
    ``<port>``; ``sids=False`` or ``ports=False`` keeps those (lablib's sids are seeded)."""
    if sids:
        text = SID.sub(r"\1<sid>", text)
    if ports:
        text = PORT.sub("127.0.0.1:<port>", text)
    return text


def for_display(records: list, *, sids: bool = True, ports: bool = True) -> list:
    """Dissected records (:mod:`lablib.capture.dissect`) whose one-line summaries went through
    :func:`hide_random`."""
    return [dataclasses.replace(r, summary=hide_random(r.summary, sids=sids, ports=ports))
            for r in records]


class SideBySide:
    """Tables (anything with ``_repr_html_``) next to each other in Jupyter where they fit, else
    one below the other; one after the other, each under its title, as plain text::

        SideBySide(**{"lablib": conversation_table(a), "python-engineio": conversation_table(b)})
    """

    def __init__(self, **tables: Any) -> None:
        self.tables = tables

    def __repr__(self) -> str:
        return "\n\n".join(f"{title}\n{table!r}" for title, table in self.tables.items())

    def _repr_html_(self) -> str:
        columns = "".join(f'<div style="margin-right:24px"><b>{title}</b>{table._repr_html_()}</div>'
                          for title, table in self.tables.items())
        return f'<div style="display:flex;flex-wrap:wrap;align-items:flex-start">{columns}</div>'


async def ws_echo(ws) -> None:
    """A WebSocket handler that sends every message back, for ``websockets``' server and for
    lablib's alike (same API); the peer closing the connection ends it quietly."""
    try:
        async for message in ws:
            await ws.send(message)
    except (websockets.ConnectionClosed, ConnectionClosed):
        pass


async def ws_drain(ws) -> None:
    """A WebSocket handler that reads and drops every message, for ``websockets``' server and
    for lablib's alike; the peer closing the connection ends it quietly."""
    try:
        async for _ in ws:
            pass
    except (websockets.ConnectionClosed, ConnectionClosed):
        pass


async def until(condition: Callable[[], bool], timeout: float = 5.0,
                interval: float = 0.01) -> None:
    """Wait until ``condition()`` is true (checked every ``interval`` seconds), at most
    ``timeout`` seconds (then ``TimeoutError``)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(interval)



async def settle(relay, quiet: float = 0.05, timeout: float = 5.0) -> None:
    """Wait until ``relay`` (a :class:`~lablib.capture.relay.Relay`) has carried no chunk for
    ``quiet`` seconds: the exchange through it is over.  At most ``timeout`` seconds (then
    ``TimeoutError``)."""
    async with asyncio.timeout(timeout):
        while True:
            before = sum(len(c.chunks) for c in relay.capture)
            await asyncio.sleep(quiet)
            if sum(len(c.chunks) for c in relay.capture) == before:
                return


def bytes_carried(relay) -> tuple[int, int]:
    """(client→server, server→client) bytes ``relay`` has carried so far, all its connections
    together."""
    return (sum(c.bytes_c2s for c in relay.capture), sum(c.bytes_s2c for c in relay.capture))


# --- a raw WebSocket client, for servers that must fail the connection (chapter 03) -----------

def _probe() -> bytes:
    rng = random.Random(42)
    return (encode_frame(Opcode.PING, b"probe", masking_key=rng.randbytes(4))
            + encode_frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"probe",
                           masking_key=rng.randbytes(4)))


#: What :func:`raw_exchange` sends to a server that stayed silent: a ping ``b"probe"``, then a
#: close frame (1000, ``"probe"``), masked with keys from ``random.Random(42)`` (§5.3).
PROBE = _probe()


class RawExchange(NamedTuple):
    """What a server sent back to :func:`raw_exchange`, and how the TCP connection ended."""

    #: The frames the server sent in answer to the bytes, until it closed TCP or went quiet.
    answer: list[Frame]
    #: The frames answering :data:`PROBE`; None: no probe was sent (the server answered).
    probe_answer: list[Frame] | None
    #: How TCP ended: ``"FIN"`` (the server closed), ``"RST"`` (reset) or ``"timeout"``.
    ending: str


async def _read_until_eof(reader: asyncio.StreamReader, parser: FrameParser,
                          timeout: float) -> tuple[list[Frame], str]:
    """The frames the server sends until it closes TCP (``"FIN"``), resets it (``"RST"``), or
    ``timeout`` seconds pass (``"timeout"``)."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                frames += parser.receive_data(chunk)
        return frames, "FIN"
    except TimeoutError:
        return frames, "timeout"
    except ConnectionResetError:
        return frames, "RST"


async def raw_exchange(port: int, data: bytes, *, host: str = "127.0.0.1", wait: float = 1.0,
                       timeout: float = 3.0, rng: random.Random | None = None) -> RawExchange:
    """Open a TCP connection to a WebSocket server, do the opening handshake by hand (§4.1) and
    write ``data`` (frames, any bytes at all); read what the server answers until it closes TCP.

    If the server sends nothing within ``wait`` seconds, it has not failed the connection (yet):
    :data:`PROBE` is sent to see how it treats the connection now, and its answer is read for at
    most ``timeout`` seconds.  The handshake's Sec-WebSocket-Key comes from ``rng`` (None: a fresh
    ``random.Random(13)``, so every exchange sends the same request).  The server's frames are
    parsed unmasked, as a client receives them (§5.1)::

        exchange = await raw_exchange(server.port, encode_frame(0x3, b"x", masking_key=key))
        verdict(exchange)     # "1002 'reserved opcode 0x3'"
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        handshake = ClientHandshake(host=f"{host}:{port}",
                                    rng=rng if rng is not None else random.Random(13))
        writer.write(handshake.request_bytes())
        while handshake.receive_data(await reader.read(4096)) is NEED_DATA:
            pass
        parser = FrameParser(mask_required=False)
        parser.feed(handshake.trailing_data)
        writer.write(data)
        await writer.drain()
        answer, ending = await _read_until_eof(reader, parser, wait)
        probe_answer = None
        if ending == "timeout" and not answer:
            writer.write(PROBE)
            await writer.drain()
            probe_answer, ending = await _read_until_eof(reader, parser, timeout)
        return RawExchange(answer, probe_answer, ending)
    finally:
        writer.close()


def first_close(frames: list[Frame]) -> tuple[int, str] | None:
    """``(code, reason)`` of the first close frame among ``frames`` (None: there is none)."""
    return next((parse_close_payload(f.payload) for f in frames if f.opcode is Opcode.CLOSE), None)


def close_of(data: bytes) -> tuple[int, str] | None:
    """``(code, reason)`` of the first close frame in ``data``, bytes a server sent (unmasked)."""
    return first_close(FrameParser(mask_required=False).receive_data(data))


def _describe_close(frames: list[Frame]) -> str:
    close = first_close(frames)
    return f"{close[0]} {close[1]!r}" if close else "no close frame"


def verdict(exchange: RawExchange) -> str:
    """What a server put on the wire in a :func:`raw_exchange`, in a few words: its close code
    and reason (``"1002 'reserved opcode 0x3'"``), or, for a server that stayed silent, what the
    probe got (``"silent; probe -> pong, then 1000 'probe'"``); an ending other than FIN is added
    in parentheses."""
    ending = "" if exchange.ending == "FIN" else f" ({exchange.ending})"
    if exchange.probe_answer is None:
        return _describe_close(exchange.answer) + ending
    pong = "pong, then " if any(f.opcode is Opcode.PONG for f in exchange.probe_answer) else ""
    return f"silent; probe -> {pong}{_describe_close(exchange.probe_answer)}" + ending
