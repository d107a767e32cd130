"""The one result type of every capture: conversations made of timestamped chunks.

A *chunk* is what one ``recv()`` (relay) or one TCP segment's new bytes (sniffer, after
reassembly) delivered in one direction.  TCP is a byte stream: chunk boundaries are an accident of
timing and never coincide with protocol messages; the dissector re-joins them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["c2s", "s2c"]

__all__ = ["Chunk", "Conversation", "Capture", "Direction"]


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
