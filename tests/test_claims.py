"""The README's claims scoreboard agrees with the notebooks' stored outputs (scripts/claims.py)."""

import pathlib

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from scripts.claims import (BEGIN, CLAIMS, END, README, measurements, row, table, unknown_keys,
                            with_table)


def notebook(path: pathlib.Path, *cells: tuple[list[str], str]) -> pathlib.Path:
    """Write a notebook whose code cells (tags, printed text) carry stored stdout."""
    nb = new_notebook()
    for tags, printed in cells:
        cell = new_code_cell("print(...)")
        cell.metadata["tags"] = tags
        cell.outputs = [new_output("stream", name="stdout", text=printed)]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def claim_row(text_start: str, notebooks_dir: pathlib.Path) -> tuple[str, str, str]:
    claim = next(c for c in CLAIMS if c.text.startswith(text_start))
    found, chapters = measurements(notebooks_dir)
    return row(claim, found, chapters)


def test_readme_agrees_with_the_notebooks():
    readme = README.read_text(encoding="utf-8")
    assert with_table(readme, table()) == readme, (
        "README.md's claims scoreboard is not what the notebooks' stored outputs say: "
        "run .venv/bin/python scripts/claims.py --write")


def test_every_printed_claim_has_a_row():
    assert unknown_keys() == []


@pytest.mark.parametrize("chapter", ["06", "07", "08", "09"])
def test_chapters_06_to_09_measure_their_claims(chapter):
    found, _ = measurements()
    assert any(ch == chapter for values in found.values() for ch, _ in values)


def test_only_cells_tagged_claim_count(tmp_path):
    notebook(tmp_path / "09-x.ipynb",
             (["claim"], "CLAIM at_most_once: 0/3 lost\nnot a claim line\nCLAIM no_reconnection: dead\n"),
             ([], "CLAIM at_most_once: printed by an ordinary cell\n"))
    found, chapters = measurements(tmp_path)
    assert found == {"at_most_once": [("09", "0/3 lost")], "no_reconnection": [("09", "dead")]}
    assert chapters == {"09"}
    assert claim_row('"at-most-once', tmp_path)[1:] == ("chapter 09", "ch. 09: 0/3 lost")


def test_a_chapter_without_its_numbers_is_pending_and_a_missing_one_planned(tmp_path):
    notebook(tmp_path / "09-x.ipynb", ([], "nothing for the scoreboard\n"))
    assert claim_row('"at-most-once', tmp_path)[1:] == ("chapter 09 (pending)", "—")
    assert claim_row('"scaling', tmp_path)[1:] == ("planned (chapter 10)", "—")


def test_chapters_before_claim_cells_are_read_from_what_they_print(tmp_path):
    row_of_one_char = ("       1 │     8 (+ 7)    250 (+249)   31.2 │     4 (+ 3)    204 (+203)   51.0\n")
    notebook(tmp_path / "04-long-polling.ipynb", ([], row_of_one_char))
    where, measured = claim_row('"2-byte', tmp_path)[1:]
    assert where.startswith("chapter 04")
    assert "3 B ← / 7 B → beyond itself over a WebSocket" in measured
    assert "203 B ← / 249 B → over long-polling" in measured


def test_a_legacy_chapter_whose_output_changed_is_pending_not_guessed(tmp_path):
    notebook(tmp_path / "04-long-polling.ipynb", ([], "1 | 8 | 250 (a layout the parser does not know)\n"))
    assert claim_row('"2-byte', tmp_path)[1:] == ("chapter 04 (pending)", "—")


def test_a_claim_cell_wins_over_the_legacy_parser(tmp_path):
    notebook(tmp_path / "04-long-polling.ipynb",
             (["claim"], "CLAIM polling_overhead: from the claim cell\n"),
             ([], "       1 │     8 (+ 7)    250 (+249)   31.2 │     4 (+ 3)    204 (+203)   51.0\n"))
    assert claim_row('"2-byte', tmp_path)[2] == "ch. 04: from the claim cell"


def test_a_pipe_in_a_value_does_not_break_the_table(tmp_path):
    notebook(tmp_path / "08-rooms.ipynb", (["claim"], "CLAIM rooms: a | b\n"))
    assert "a \\| b" in table(tmp_path)


def test_only_the_text_between_the_markers_is_replaced():
    readme = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    assert with_table(readme, "new table") == f"intro\n{BEGIN}\nnew table\n{END}\noutro\n"
    with pytest.raises(ValueError):
        with_table("no markers here", "new table")


def test_not_api_compatible_is_read_from_chapter_05(tmp_path):
    printed = ("ws://…/socket.io/                                 InvalidStatus: server rejected WebSocket "
               "connection: HTTP 400, body b'Transport unknown'\n"
               "…?EIO=4&transport=websocket, then 'hello'         received 1 message, then close 1000 ''\n"
               "['polling', 'websocket']  connect() raised TransportError: 426 missing 'Upgrade: websocket' header\n"
               "['websocket']             connect() raised TransportError: timeout\n")
    notebook(tmp_path / "05-upgrade.ipynb", ([], printed))
    where, measured = claim_row('"not API-compatible', tmp_path)[1:]
    assert where == "chapter 05"
    assert "HTTP 400 (Transport unknown)" in measured and "HTTP 426" in measured and "timeout" in measured
