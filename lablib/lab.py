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
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any, Callable

import websockets

from .errors import ConnectionClosed

__all__ = ["SideBySide", "check", "for_display", "hide_random", "until", "ws_echo"]

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


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` is true (checked every 10 ms), at most ``timeout`` seconds
    (then ``TimeoutError``)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
