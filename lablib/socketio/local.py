"""What a cluster adapter may do to the sockets of this process: the driver's side of an adapter.

A cluster adapter (:mod:`lablib.socketio.redis_adapter`) hears from other servers: "deliver this
packet to your members of room1", "which of your sockets are in room1?", "make them join room2".
It acts on this process's sockets through a :class:`LocalNamespace`, which the server hands to
each adapter it creates (``adapter.bind(local)``, the reference adapter's ``nsp``).  Local
delivery stays the core's decision: :meth:`LocalNamespace.deliver` turns the request into a
``core.emit`` and carries out the outputs like any broadcast (encoded once, queued to each member
without waiting for any).

Which sockets match ``opts`` (rooms, except) is the reference's rule (``apply`` in
socket.io-adapter): members of any room in ``opts.rooms`` (every connected socket if none),
minus the members of every room in ``opts.except_`` - a sid is a room, so ``except`` may name
sids too.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import parse_qs

from ..errors import LocalProtocolError
from .packets import Packet, PacketType
from .events import Undelivered
from .redis_protocol import BroadcastOptions, broadcast_targets

if TYPE_CHECKING:
    from .server import Server

__all__ = ["LocalNamespace"]

logger = logging.getLogger(__name__)
_STREAM_ID = re.compile(r"^[0-9]+-[0-9]+$")   # a recovery offset in Redis (a stream id)


class LocalNamespace:
    """One namespace of one :class:`~lablib.socketio.server.Server`, as its adapter sees it."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name

    # --- who matches -----------------------------------------------------------------------

    def sids(self, opts: BroadcastOptions) -> list[str]:
        """The connected sids ``opts`` selects, in order (socket.io-adapter's ``apply``)."""
        core = self.server.core
        adapter = core.adapter(self.name)
        return broadcast_targets(opts, adapter.members, core.sids(self.name))

    def _excluded(self, opts: BroadcastOptions) -> list[str]:
        members = self.server.core.adapter(self.name).members
        return [sid for room in opts.except_ for sid in members(room)]

    # --- delivering a packet from another server ---------------------------------------------

    @staticmethod
    def _event(packet: Packet) -> tuple[str, list[Any]] | None:
        data = packet.data
        if packet.type not in (PacketType.EVENT, PacketType.BINARY_EVENT) \
                or not isinstance(data, list) or not data or not isinstance(data[0], str):
            logger.warning("a broadcast from another server is not an event: %r", packet)
            return None
        return data[0], data[1:]

    async def deliver(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Deliver a broadcast published by another server to our members (as our own emit
        would: the core picks the targets, the packet is encoded once, nobody is waited on)."""
        event = self._event(packet)
        if event is None:
            return
        name, args = event
        offset = None
        if self.server.core.driver_store and args and isinstance(args[-1], str) \
                and _STREAM_ID.match(args[-1]):   # recovery through Redis: logged by its sender
            args, offset = args[:-1], args[-1]
        try:
            if offset is None:
                outputs = self._emit(name, args, opts, None)
            else:   # not while a restore reads the log (see Server._restore_session)
                async with self.server._store_lock(self.name):
                    outputs = self._emit(name, args, opts, offset)
        except LocalProtocolError as exc:   # e.g. a reserved event name
            logger.warning("a broadcast from another server was refused: %s", exc)
            return
        # Reaching nobody here is normal: the members may all be on other servers.
        await self.server._apply([o for o in outputs if not isinstance(o, Undelivered)],
                                 wait=False)

    def _emit(self, name: str, args: list, opts: BroadcastOptions, offset: str | None) -> list:
        return self.server.core.emit(name, args, namespace=self.name,
                                     to=list(opts.rooms) or None,
                                     skip_sids=self._excluded(opts), offset=offset)

    async def deliver_with_acks(self, packet: Packet, opts: BroadcastOptions,
                                timeout: float | None, on_ack: Callable[[Any], None]) -> int:
        """Deliver asking each member for an ack; ``on_ack(first argument)`` runs for each one
        that comes (the reference carries the first argument only).  Returns how many members
        were sent the packet (the reference's ``clientCount``)."""
        event = self._event(packet)
        if event is None:
            return 0
        server = self.server
        try:
            ack_id, reached, outputs = server.core.emit_with_acks(
                event[0], event[1], namespace=self.name, to=list(opts.rooms) or None,
                skip_sids=self._excluded(opts), timeout=timeout, now=server._now())
        except LocalProtocolError as exc:
            logger.warning("a broadcast with acks was refused: %s", exc)
            return 0

        def first(*args: Any) -> None:
            on_ack(args[0] if args else None)

        for sid in reached:
            server._acks[(self.name, sid, ack_id)] = first
        if timeout is not None:
            server._wake()
        await server._apply([o for o in outputs if not isinstance(o, Undelivered)], wait=False)
        return len(reached)

    # --- queries and remote operations -------------------------------------------------------

    def handshake(self, sid: str) -> dict[str, Any]:
        """What we know of ``sid``'s handshake, in the keys Node's ``socket.handshake`` uses:
        ``headers`` (lower-case names), ``url``, ``query`` and ``auth``.  (Node also sends
        time, address, xdomain, secure and issued, which this server does not record.)"""
        server = self.server
        conn = server._connections.get(server._eio_sid_of.get((self.name, sid), ""))
        request = conn.request if conn is not None else None
        headers: dict[str, str] = {}
        if request is not None:
            for key, value in request.headers.items():
                headers[key.lower()] = value
        query = {k: v[-1] for k, v in parse_qs(request.query).items()} if request else {}
        return {"headers": headers, "url": request.target if request else "",
                "query": query, "auth": server.core.auth_of(sid, self.name) or {}}

    def fetch(self, opts: BroadcastOptions) -> list[dict[str, Any]]:
        """``{"id", "handshake", "rooms", "data"}`` of each matching socket; ``data`` is the
        socket's session (python-socketio's ``get_session``, Node's ``socket.data``)."""
        server = self.server
        return [{"id": sid, "handshake": self.handshake(sid),
                 "rooms": server.core.rooms(sid, self.name),
                 "data": server._sessions.get((self.name, sid), {})}
                for sid in self.sids(opts)]

    def join(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        for sid in self.sids(opts):
            for room in rooms:
                self.server.core.enter_room(sid, room, self.name)

    def leave(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        for sid in self.sids(opts):
            for room in rooms:
                self.server.core.leave_room(sid, room, self.name)

    async def disconnect(self, opts: BroadcastOptions, close: bool) -> None:
        core = self.server.core
        for sid in self.sids(opts):
            if core.is_connected(sid, self.name):
                await self.server._apply(core.disconnect(sid, self.name, close=close))

    def server_side_event(self, data: list[Any], ack: Callable[[Any], None] | None) -> None:
        """An event another server sent to the servers (``serverSideEmit``): run our handler
        (``@sio.on_server_side(event)``), whose return value answers when ``ack`` is given."""
        self.server._server_side_event(self.name, data, ack)
