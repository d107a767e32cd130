"""Seeing the wire: record (relay / sniff / pcap) and dissect byte streams.

The record types live in :mod:`.records`; :mod:`.relay` records without privileges,
:mod:`.sniff` captures on the loopback interface as root, :mod:`.pcap` writes and reads pcap
files and :mod:`.tcp` turns TCP segments back into byte streams.  The relay's balancing mode
(:class:`.relay.Balancer`, with the routing decision in :mod:`.balancing`) spreads requests over
several servers and records which one got each.
"""

from .records import Capture, CaptureError, Chunk, Conversation, Direction

__all__ = ["Capture", "CaptureError", "Chunk", "Conversation", "Direction"]
