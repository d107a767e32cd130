"""Sequence diagrams of a dissected conversation: client and server lifelines, one arrow per
message on the wire (HTTP request/response, WebSocket frame), labelled with its summary.

:func:`sequence_diagram` draws it with matplotlib and returns the ``Figure`` (Jupyter shows it);
:func:`sequence_text` gives the same diagram as deterministic text::

    client                                                      server
      |  GET /chat HTTP/1.1 [Upgrade: websocket]                  |
      |--------------------------------------------------------->|
      |                          HTTP/1.1 101 Switching Protocols |
      |<---------------------------------------------------------|

Arrows are drawn for the records a stream carries directly (``depth == 0``); what decoders
found inside (a reassembled message, Engine.IO packets) is added under the arrow's label with
``children=True``.  Labels carry no times unless ``times=True``, so the picture is the same
on every run.
"""

from __future__ import annotations

from typing import Iterable

from matplotlib.figure import Figure

__all__ = ["sequence_diagram", "sequence_text", "arrows"]

_COLORS = {"http": "#1f5fa8", "websocket": "#2e7d32", "control": "#777777", "close": "#b35900",
           "error": "#c62828"}


def arrows(records: Iterable) -> list[tuple[object, list]]:
    """The messages to draw: ``(record, nested records)`` for each depth-0 http/websocket/error
    record; nested records (depth > 0) go with the message they follow."""
    out: list[tuple[object, list]] = []
    for r in records:
        if r.depth == 0 and r.layer in ("http", "websocket", "error") and r.direction:
            out.append((r, []))
        elif r.depth > 0 and out:
            out[-1][1].append(r)
    return out


def _label(record, children: list, *, times: bool, nested: bool, limit: int) -> str:
    def cut(s: str) -> str:
        return s if len(s) <= limit else s[:limit - 3] + "..."
    lines = [cut(f"[{record.time:.3f}] {record.summary}" if times else record.summary)]
    if nested:
        lines += [cut("  " * (c.depth - 1) + f"{c.layer}: {c.summary}") for c in children]
    return "\n".join(lines)


def _color(record) -> str:
    if record.layer == "error":
        return _COLORS["error"]
    if record.layer == "websocket":
        name = record.fields.get("opcode_name")
        if name == "CLOSE":
            return _COLORS["close"]
        if name in ("PING", "PONG"):
            return _COLORS["control"]
    return _COLORS.get(record.layer, "#000000")


def sequence_diagram(records: Iterable, *, times: bool = False, children: bool = True,
                     max_label: int = 60, title: str | None = None,
                     client: str = "client", server: str = "server") -> Figure:
    """Draw the records as a sequence diagram; returns a matplotlib ``Figure``.

    One arrow (an ``Annotation`` with an arrow) per message; error records are drawn as a red
    cross on the sender's lifeline with the error text.  ``children=True`` adds nested records
    (decoded packets) under the label; ``times=True`` prefixes the capture time.
    """
    items = arrows(records)
    heights = [1 + (len(kids) if children else 0) for _, kids in items]
    total = sum(heights) or 1
    fig = Figure(figsize=(9, 1.2 + 0.38 * total))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96 - (0.3 if title else 0.12) / (1.2 + 0.38 * total)))
    left, right = 0.12, 0.88
    ax.set_xlim(0, 1)
    ax.set_ylim(total + 0.5, -0.6)
    ax.axis("off")
    for x, name in ((left, client), (right, server)):
        ax.plot([x, x], [-0.2, total + 0.3], color="#999999", linewidth=1, linestyle="--")
        ax.text(x, -0.45, name, ha="center", va="center", fontsize=10, fontweight="bold",
                bbox={"boxstyle": "round", "facecolor": "#eeeeee", "edgecolor": "#666666"})
    y = 0.0
    for (record, kids), height in zip(items, heights):
        y += height
        label = _label(record, kids, times=times, nested=children, limit=max_label)
        color = _color(record)
        start, end = (left, right) if record.direction == "c2s" else (right, left)
        if record.layer == "error":
            ax.plot([start], [y], marker="x", color=color, markersize=9)
            ax.text(start + (0.02 if start == left else -0.02), y, label, fontsize=7,
                    ha="left" if start == left else "right", va="center", color=color,
                    family="monospace")
            continue
        ax.annotate("", xy=(end, y), xytext=(start, y),
                    arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1.2})
        ax.text((left + right) / 2, y - 0.12, label, ha="center", va="bottom", fontsize=7,
                color=color, family="monospace", linespacing=1.1)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def sequence_text(records: Iterable, *, width: int = 64, times: bool = False,
                  children: bool = False, client: str = "client", server: str = "server") -> str:
    """The sequence diagram as plain text, ``width`` characters wide: a label line (or more,
    with ``children``) and an arrow line per message."""
    inner = width - 4  # between the two lifelines: "  |" + inner + "|"
    lines = [client + server.rjust(width - len(client))]
    for record, kids in arrows(records):
        label = _label(record, kids, times=times, nested=children, limit=inner - 2)
        for text in label.split("\n"):
            if record.direction == "c2s":
                lines.append(f"  | {text.ljust(inner - 1)}|")
            else:
                lines.append(f"  |{text.rjust(inner - 1)} |")
        if record.layer == "error":
            arrow = "X".ljust(inner) if record.direction == "c2s" else "X".rjust(inner)
        elif record.direction == "c2s":
            arrow = "-" * (inner - 1) + ">"
        else:
            arrow = "<" + "-" * (inner - 1)
        lines.append(f"  |{arrow}|")
    return "\n".join(lines)
