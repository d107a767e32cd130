"""lablib.lab: the helpers the chapters share (predict-then-check, placeholders, tables)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from lablib.lab import SideBySide, check, for_display, hide_random, until

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
