"""Rooms: which sockets belong to which named group, and who receives a broadcast.

A *room* is a name the server gives to a set of sockets, so one call reaches all of them.  Rooms
live on the server only; clients never see them on the wire (a broadcast is just one EVENT
packet written to each member's connection).

**One adapter per namespace.**  Rooms are namespace-scoped: "lobby" in "/chat" and "lobby" in
"/admin" are unrelated, and a sid exists in one namespace only.  So, as in the reference server
(each ``Namespace`` has its own ``adapter``), the server keeps one adapter object per namespace
and the adapter knows nothing about namespaces.  The server creates them through a factory
(``adapter_factory(namespace) -> Adapter``), which is where a multi-process adapter (one that
publishes broadcasts through Redis, say) plugs in later.

**Each socket's own room.**  On connection the server puts every socket in a room named after its
sid, so "send to this sid" and "send to this room" are the same operation, and ``skip_sids``
just subtracts members.

The interface is deliberately narrow (:class:`Adapter`): join, leave, leave_all, rooms_of,
members, broadcast_targets.  Orders are stable (join order) so notebook output re-runs
identically.
"""

from __future__ import annotations

from typing import Iterable, Protocol

__all__ = ["Adapter", "InMemoryAdapter"]


class Adapter(Protocol):
    """What the server needs from a room registry (one instance per namespace)."""

    def join(self, sid: str, room: str) -> None:
        """Put ``sid`` in ``room`` (creating the room); joining twice changes nothing."""

    def leave(self, sid: str, room: str) -> None:
        """Take ``sid`` out of ``room`` (a room left empty disappears); no error if absent."""

    def leave_all(self, sid: str) -> None:
        """Take ``sid`` out of every room, its own included: the socket is gone."""

    def rooms_of(self, sid: str) -> list[str]:
        """The rooms ``sid`` is in, in the order it joined them (empty if unknown)."""

    def members(self, room: str) -> list[str]:
        """The sids in ``room``, in the order they joined (empty if no such room)."""

    def broadcast_targets(self, rooms: str | Iterable[str] | None = None,
                          skip_sids: str | Iterable[str] = ()) -> list[str]:
        """The sids a broadcast reaches: members of any of ``rooms`` (every sid known to the
        adapter if None), minus ``skip_sids``, each once."""


def _as_set(names: str | Iterable[str]) -> Iterable[str]:
    return (names,) if isinstance(names, str) else names


class InMemoryAdapter:
    """The single-process room registry: two dicts kept in step.

    ``_rooms[room]`` holds the room's sids and ``_sids[sid]`` the sid's rooms, both as dicts
    used as insertion-ordered sets.  A sid is *known* while it is in at least one room.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, None]] = {}
        self._sids: dict[str, dict[str, None]] = {}

    def join(self, sid: str, room: str) -> None:
        self._rooms.setdefault(room, {})[sid] = None
        self._sids.setdefault(sid, {})[room] = None

    def leave(self, sid: str, room: str) -> None:
        members = self._rooms.get(room)
        if members is not None and sid in members:
            del members[sid]
            if not members:
                del self._rooms[room]
        rooms = self._sids.get(sid)
        if rooms is not None and room in rooms:
            del rooms[room]
            if not rooms:
                del self._sids[sid]

    def leave_all(self, sid: str) -> None:
        for room in list(self._sids.get(sid, ())):
            self.leave(sid, room)

    def rooms_of(self, sid: str) -> list[str]:
        return list(self._sids.get(sid, ()))

    def members(self, room: str) -> list[str]:
        return list(self._rooms.get(room, ()))

    def rooms(self) -> list[str]:
        """Every room that has members (each sid's own room included)."""
        return list(self._rooms)

    def broadcast_targets(self, rooms: str | Iterable[str] | None = None,
                          skip_sids: str | Iterable[str] = ()) -> list[str]:
        skip = set(_as_set(skip_sids))
        if rooms is None:
            candidates: Iterable[str] = self._sids
        else:
            seen: dict[str, None] = {}
            for room in _as_set(rooms):
                seen.update(self._rooms.get(room, {}))
            candidates = seen
        return [sid for sid in candidates if sid not in skip]

    def __repr__(self) -> str:
        return f"InMemoryAdapter({ {room: list(m) for room, m in self._rooms.items()} })"
