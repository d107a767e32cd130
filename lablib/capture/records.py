"""The one result type of every capture: conversations made of timestamped chunks.

A *chunk* is what one ``recv()`` (relay) or one TCP segment's new bytes (sniffer, after
reassembly) delivered in one direction.  TCP is a byte stream: chunk boundaries are an accident of
timing and never coincide with protocol messages; the dissector re-joins them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import LablibError

Direction = Literal["c2s", "s2c"]

__all__ = ["Chunk", "Conversation", "Capture", "Direction", "CaptureError"]


class CaptureError(LablibError):
    """A capture could not be made or read: a malformed pcap, missing privileges, ..."""


@dataclass(frozen=True, slots=True)
class Chunk:
    time: float          #: seconds since the start of the capture
    direction: Direction  #: "c2s" (client to server) or "s2c"
    data: bytes


@dataclass
class Conversation:
    """One TCP connection: who talked to whom, and every chunk in arrival order."""

    id: int
    client: tuple[str, int]
    server: tuple[str, int]
    chunks: list[Chunk] = field(default_factory=list)
    start: float = 0.0       #: capture-relative time of the connection's opening
    end: float | None = None  #: capture-relative time it was closed (None while open)
    #: Who closed first: the direction of the first FIN (or RST); None while open, or when the
    #: network cut both directions at once (a relay ``cut()``, RSTs both ways).
    closed_by: Direction | None = None
    reset: bool = False  #: True if the connection ended with RST (aborted) rather than FIN/FIN

    def data(self, direction: Direction) -> bytes:
        """All bytes sent in one direction, joined: the byte stream TCP delivered."""
        return b"".join(c.data for c in self.chunks if c.direction == direction)

    @property
    def bytes_c2s(self) -> int:
        return sum(len(c.data) for c in self.chunks if c.direction == "c2s")

    @property
    def bytes_s2c(self) -> int:
        return sum(len(c.data) for c in self.chunks if c.direction == "s2c")


@dataclass
class Capture:
    """Everything captured in one session: conversations in the order they opened."""

    conversations: list[Conversation] = field(default_factory=list)
    source: str = ""  #: "relay", "sniff" or "pcap:<file name>"

    def __iter__(self):
        return iter(self.conversations)

    def __len__(self) -> int:
        return len(self.conversations)
