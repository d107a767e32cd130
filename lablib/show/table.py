"""A conversation as a table: one row per dissected record.

:func:`conversation_table` turns the records of :func:`lablib.capture.dissect.dissect` into a
:class:`ConversationTable` — HTML in Jupyter, aligned plain text in ``repr``::

      #  time   dir  layer      summary
      1  0.000  →    http       GET /chat HTTP/1.1 [Upgrade: websocket]
      2  0.001  ←    http       HTTP/1.1 101 Switching Protocols
      3  0.002  →    websocket  TEXT fin=1 mask=1 len=5 'Hello'

Number columns (``#``, ``time``, ``conn``) are right-aligned, text columns left-aligned, in both
renderings; the HTML sets the alignment on every cell, since JupyterLab's stylesheet would
otherwise right-align them all.  In HTML a long summary wraps to the width of the notebook.

``→`` is client to server, ``←`` server to client, ``·`` a connection event.  Records nested in
another (a reassembled message, a decoder's packet) have their summary indented by their depth.

Capture times change from run to run; for stored notebook outputs use ``times="none"`` (the
``#`` column still gives the order) or ``times="relative"`` with a coarse ``precision``.
"""

from __future__ import annotations

import html
from typing import Iterable, Sequence

__all__ = ["ConversationTable", "conversation_table", "ARROWS", "LAYER_COLORS", "NUMBER_COLUMNS"]

ARROWS = {"c2s": "→", "s2c": "←", None: "·"}

#: Row colour per layer in the HTML table.
LAYER_COLORS = {"tcp": "#eeeeee", "http": "#dbe8f6", "websocket": "#e3f1df", "engineio": "#fdf1d6",
                "socketio": "#f2e1ef", "error": "#f9d2d2"}

_TIME_MODES = ("absolute", "relative", "none", "order")

#: The columns that hold numbers: right-aligned, so that digits of the same weight line up.
NUMBER_COLUMNS = frozenset({"#", "time", "conn"})


def conversation_table(records: Iterable, *, times: str = "absolute", precision: int = 3,
                       layers: Sequence[str] | None = None, max_depth: int | None = None,
                       width: int | None = 100) -> ConversationTable:
    """Tabulate dissect records.

    ``times``: ``"absolute"`` (capture time), ``"relative"`` (since the first row), ``"none"``
    or ``"order"`` (no time column: the ``#`` column is the order).  ``layers`` keeps only those
    layers (e.g. ``("http", "websocket")`` hides tcp events whose ports change every run);
    ``max_depth=0`` hides nested records; ``width`` cuts long summaries (None: never).
    """
    if times not in _TIME_MODES:
        raise ValueError(f"times must be one of {_TIME_MODES}, not {times!r}")
    rows = [r for r in records if (layers is None or r.layer in layers)
            and (max_depth is None or r.depth <= max_depth)]
    return ConversationTable(rows, times=times, precision=precision, width=width)


class ConversationTable:
    """Rows of (#, time, direction, layer, summary); text in ``repr``, HTML in Jupyter."""

    def __init__(self, records: list, *, times: str = "absolute", precision: int = 3,
                 width: int | None = 100) -> None:
        self.records = list(records)
        self.times = times
        self.precision = precision
        self.width = width

    @property
    def columns(self) -> list[str]:
        cols = ["#"]
        if self.times in ("absolute", "relative"):
            cols.append("time")
        if self._several_conversations():
            cols.append("conn")
        return cols + ["dir", "layer", "summary"]

    def _several_conversations(self) -> bool:
        return len({r.conversation for r in self.records}) > 1

    def rows(self) -> list[list[str]]:
        """The cells of every row, as strings (what both renderings show)."""
        origin = self.records[0].time if self.records else 0.0
        out = []
        for i, r in enumerate(self.records, 1):
            row = [str(i)]
            if self.times == "absolute":
                row.append(f"{r.time:.{self.precision}f}")
            elif self.times == "relative":
                row.append(f"+{r.time - origin:.{self.precision}f}")
            if self._several_conversations():
                row.append("" if r.conversation is None else str(r.conversation))
            indent = "  " * r.depth
            summary = indent + r.summary
            if self.width is not None and len(summary) > self.width:
                summary = summary[:self.width - 3] + "..."
            row += [ARROWS.get(r.direction, "?"), r.layer, summary]
            out.append(row)
        return out

    def alignments(self) -> list[str]:
        """``"right"`` for each number column, ``"left"`` for each text column."""
        return ["right" if c in NUMBER_COLUMNS else "left" for c in self.columns]

    def text(self) -> str:
        rows = [self.columns] + self.rows()
        widths = [max(len(row[c]) for row in rows) for c in range(len(self.columns))]
        lines = []
        for row in rows:
            cells = [cell.rjust(width) if align == "right" else cell.ljust(width)
                     for cell, width, align in zip(row, widths, self.alignments())]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        aligns = self.alignments()
        head = "".join(f'<th style="padding:2px 8px;text-align:{align};border-bottom:1px solid #888">'
                       f'{html.escape(c)}</th>' for c, align in zip(self.columns, aligns))
        # The summary keeps its indentation but may wrap (anywhere: a URL is one long word), so
        # the table fits a narrow notebook instead of making it scroll sideways.
        wraps = ["pre-wrap;overflow-wrap:anywhere" if c == "summary" else "pre"
                 for c in self.columns]
        body = []
        for record, row in zip(self.records, self.rows()):
            color = LAYER_COLORS.get(record.layer, "#ffffff")
            cells = "".join(f'<td style="padding:1px 8px;text-align:{align};white-space:{wrap}">'
                            f'{html.escape(c)}</td>' for c, align, wrap in zip(row, aligns, wraps))
            body.append(f'<tr style="background:{color}">{cells}</tr>')
        return ('<table style="border-collapse:collapse;font-family:monospace;font-size:12px">'
                f'<tr>{head}</tr>{"".join(body)}</table>')
