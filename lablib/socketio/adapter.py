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

**Two halves: the room registry (sync) and the cluster (async).**  The sans-I/O core calls the
registry methods above, synchronously: it decides local delivery.  The asyncio driver calls the
*cluster* methods, which are coroutines because another implementation talks to other server
processes (:class:`lablib.socketio.redis_adapter.RedisAdapter`, over Redis)::

    bind(local)                      the driver hands over this process's namespace (Node: nsp)
    start() / close()                connect, subscribe / unsubscribe
    publish(packet, opts)            a broadcast's remote half: tell the other servers (the
                                     local half is the core's emit, done before)
    publish_with_ack(packet, opts, on_client_count, on_ack, timeout)
                                     the remote half of a broadcast that gathers acks
    server_count()                   servers in the cluster, this one included
    fetch_sockets(opts)              every matching socket of the cluster (id, rooms, data,
                                     handshake), this process's first
    add_sockets / del_sockets(opts, rooms), disconnect_sockets(opts, close)
    server_side_emit(data, ack)      an event for the other servers (ack: gather their answers)
    all_rooms()                      every room of the cluster

``opts`` is a :class:`lablib.socketio.redis_protocol.BroadcastOptions` (rooms, except,
flags), as the reference's adapters take it.  :class:`InMemoryAdapter` is the single-process
implementation: the cluster is this process, so the remote halves do nothing and the queries
answer from the bound namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

if TYPE_CHECKING:   # only for annotations: the registry itself needs none of these
    from .local import LocalNamespace
    from .packets import Packet
    from .redis_protocol import BroadcastOptions

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

    # The cluster half (driver-level, see the module docstring): bind, start, close, publish,
    # publish_with_ack, server_count, fetch_sockets, add_sockets, del_sockets,
    # disconnect_sockets, server_side_emit, all_rooms.  An adapter without them (a registry
    # only) is still accepted by the server, which then treats it as single-process.


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

    # --- the cluster half: here the cluster is this one process -------------------------------

    #: False: no other server to tell (the driver skips building what :meth:`publish` takes).
    clustered = False
    local: LocalNamespace | None = None

    def bind(self, local: LocalNamespace) -> None:
        """The driver's handle on this namespace's sockets (done once, when created)."""
        self.local = local

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect from."""

    async def publish(self, packet: Packet, opts: BroadcastOptions) -> None:
        """No other server: the core's local delivery was the whole broadcast."""

    async def publish_with_ack(self, packet: Packet, opts: BroadcastOptions,
                               on_client_count: Callable[[int], None],
                               on_ack: Callable[[Any], None], timeout: float | None) -> None:
        """No other server: no client count, no ack will come from elsewhere."""

    async def server_count(self) -> int:
        return 1

    def _local(self) -> LocalNamespace:
        if self.local is None:
            raise RuntimeError("the adapter is not bound to a server's namespace yet")
        return self.local

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[dict[str, Any]]:
        """``{"id", "handshake", "rooms", "data"}`` of each matching socket (Node's shape)."""
        return self._local().fetch(opts)

    async def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        self._local().join(opts, rooms)

    async def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        self._local().leave(opts, rooms)

    async def disconnect_sockets(self, opts: BroadcastOptions, close: bool = False) -> None:
        await self._local().disconnect(opts, close)

    async def server_side_emit(self, data: list[Any], ack: bool = False) -> list[Any] | None:
        """No other server to tell: no answers (``[]`` when they were asked for)."""
        return [] if ack else None

    async def all_rooms(self) -> set[str]:
        return set(self._rooms)

    def __repr__(self) -> str:
        return f"InMemoryAdapter({ {room: list(m) for room, m in self._rooms.items()} })"
