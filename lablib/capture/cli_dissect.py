"""``python -m lablib dissect FILE.pcap``: the layered view of a capture, in a terminal.

For every TCP conversation in the file: a heading (client, server, bytes each way), then one
line per record (time, direction, layer, summary) as in :mod:`lablib.show.table`.  ``-v`` adds
every field under its record (like ``tshark -V``), ``-x`` a hexdump of the record's bytes with
the fields marked.

This module only defines the subcommand: ``lablib/__main__.py`` calls :func:`add_parser` and
dispatches to :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from ..errors import LablibError
from .dissect import Record, dissect
from .records import Capture

__all__ = ["add_parser", "run", "render", "format_fields"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``dissect`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "dissect", help="show a capture layer by layer (HTTP, WebSocket frames, ...)",
        description="Dissect a pcap file: HTTP upgrade, WebSocket frames with every header "
                    "field, and what registered decoders find inside.")
    parser.add_argument("file", metavar="FILE.pcap", help="capture file to read")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every field")
    parser.add_argument("-x", "--hex", action="store_true", help="hexdump each record's bytes")
    parser.add_argument("-c", "--conversation", type=int, action="append", metavar="ID",
                        help="only this conversation (repeatable)")
    parser.add_argument("-l", "--layer", action="append", metavar="NAME",
                        help="only these layers, e.g. -l websocket (repeatable)")
    parser.add_argument("--times", choices=("absolute", "relative", "none"), default="absolute",
                        help="time column: capture time (default), since the conversation "
                             "began, or none")
    parser.add_argument("--chunks", action="store_true",
                        help="also list the TCP chunks as captured (frames != segments)")
    parser.set_defaults(run=run)  # lablib/__main__.py dispatches with args.run(args)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Read the pcap named by ``args.file`` and print its dissection; returns the exit code."""
    out = out or sys.stdout
    try:
        from .pcap import read_pcap   # written alongside; imported late so this module loads
        capture = read_pcap(args.file)
    except (OSError, ValueError, LablibError) as exc:  # CaptureError is a LablibError
        print(f"lablib dissect: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    out.write(render(capture, verbose=args.verbose, hexdump=args.hex,
                     conversations=args.conversation, layers=args.layer, times=args.times,
                     chunks=args.chunks))
    return 0


def render(capture: Capture, *, verbose: bool = False, hexdump: bool = False,
           conversations: list[int] | None = None, layers: list[str] | None = None,
           times: str = "absolute", chunks: bool = False) -> str:
    """The whole terminal output for ``capture`` as one string (what :func:`run` prints)."""
    from ..show.table import conversation_table  # local: keep `import lablib.capture` light

    parts: list[str] = []
    if not len(capture):
        return "no TCP conversations in this capture\n"
    for conv in capture:
        if conversations and conv.id not in conversations:
            continue
        (ch, cp), (sh, sp) = conv.client, conv.server
        parts.append(f"=== conversation {conv.id}: {ch}:{cp} -> {sh}:{sp}  "
                     f"({conv.bytes_c2s} bytes c2s, {conv.bytes_s2c} bytes s2c)")
        records = [r for r in dissect(conv, chunks=chunks) if not layers or r.layer in layers]
        if times == "relative":
            records = [_shift(r, conv.start) for r in records]
        if not (verbose or hexdump):
            parts.append(conversation_table(records, times="none" if times == "none" else
                                            "absolute", width=None).text())
        else:
            for i, record in enumerate(records, 1):
                parts.append(_line(i, record, times))
                if verbose:
                    parts.extend("      " + line for line in format_fields(record))
                if hexdump and record.raw and record.depth == 0:
                    parts.extend("      " + line for line in _hex(record).splitlines())
        parts.append("")
    return "\n".join(parts) + "\n"


def _shift(record: Record, origin: float) -> Record:
    # Relative times: the same record with time measured from the connection's start.
    from dataclasses import replace
    return replace(record, time=record.time - origin)


def _line(i: int, record: Record, times: str) -> str:
    from ..show.table import ARROWS
    time = "" if times == "none" else f"{record.time:.6f}  "
    return (f"{i:4d}  {time}{ARROWS.get(record.direction, '?')}  {record.layer:<10} "
            f"{'  ' * record.depth}{record.summary}")


def format_fields(record: Record) -> list[str]:
    """``name = value`` lines for a record's fields (bytes in hex, long values cut)."""
    lines = [f"offset = {record.offset}, length = {record.length}"]
    for name, value in record.fields.items():
        if name == "headers":
            lines.append("headers:")
            lines.extend(f"  {k}: {v}" for k, v in value)
            continue
        lines.append(f"{name} = {_value(value)}")
    return lines


def _value(value: Any, limit: int = 64) -> str:
    if isinstance(value, (bytes, bytearray)):
        if len(value) > limit:
            return bytes(value[:limit]).hex(" ") + f" ... ({len(value)} bytes)"
        return bytes(value).hex(" ") or "(empty)"
    text = repr(value)
    return text if len(text) <= 2 * limit else text[:2 * limit - 3] + "..."


def _hex(record: Record) -> str:
    from ..show.hexdump import hexdump
    return hexdump(record).text()
