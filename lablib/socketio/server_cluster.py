"""The Socket.IO server's cluster operations: what reaches the sockets of every server process.

With the default :class:`~lablib.socketio.adapter.InMemoryAdapter` the cluster is this process
and each method below acts on its sockets only.  With
:class:`~lablib.socketio.redis_adapter.RedisAdapter` (``Server(adapter_factory=
RedisAdapter.factory(url))``) they reach every server of the cluster, lablib's and Node's with
``@socket.io/redis-adapter`` alike, with the reference's request timeout (5 s by default):

=====================================  ==================================================
lablib                                 Node socket.io
=====================================  ==================================================
``await sio.fetch_sockets(to)``        ``io.in(to).fetchSockets()``
``await sio.sockets_join(rooms, to)``  ``io.in(to).socketsJoin(rooms)``
``await sio.sockets_leave(rooms, to)`` ``io.in(to).socketsLeave(rooms)``
``await sio.disconnect_sockets(to)``   ``io.in(to).disconnectSockets()``
``await sio.all_rooms()``              ``io.of("/").adapter.allRooms()``
``await sio.server_side_emit(e, *a)``  ``io.serverSideEmit(e, ...a)``
``await sio.server_side_emit_with_ack``  ``io.serverSideEmitWithAck(e, ...a)``
``@sio.on_server_side("e")``           ``io.on("e", ...)`` (events from other servers)
``await sio.emit_with_ack(e, d, to)``  ``io.to(to).timeout(ms).emitWithAck(e, d)``
=====================================  ==================================================

This module is a mixin of :class:`~lablib.socketio.server.Server`; it holds no protocol logic
(the adapter speaks to the other servers, the core to the clients).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .packets import Packet, PacketType
from .redis_protocol import BroadcastOptions

__all__ = ["ClusterMixin", "RemoteSocket", "AckTimeoutError"]

logger = logging.getLogger("lablib.socketio.server")


@dataclass(frozen=True)
class RemoteSocket:
    """A socket of any server of the cluster, as ``fetch_sockets`` describes it (Node's
    ``RemoteSocket``): its sid, the rooms it is in, its ``data`` (the session dict of a lablib
    socket, ``socket.data`` of a Node one) and what its handshake said."""

    id: str
    rooms: list[str]
    data: Any = None
    handshake: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> RemoteSocket:
        return cls(wire.get("id"), list(wire.get("rooms") or []), wire.get("data"),
                   wire.get("handshake") or {})


class AckTimeoutError(TimeoutError):
    """Not every client acknowledged in time; ``responses`` holds the acks that came."""

    def __init__(self, message: str, responses: list[Any]) -> None:
        super().__init__(message)
        self.responses = responses


def _as_list(names: str | Iterable[str] | None) -> tuple[str, ...]:
    if names is None:
        return ()
    return (names,) if isinstance(names, str) else tuple(names)


class ClusterMixin:
    """Cluster-wide operations of :class:`~lablib.socketio.server.Server` (see the module doc)."""

    def _opts(self, to: str | Iterable[str] | None, skip_sid: str | Iterable[str] | None,
              flags: dict[str, Any] | None = None) -> BroadcastOptions:
        return BroadcastOptions(_as_list(to), _as_list(skip_sid), flags if flags is not None
                                else {})

    async def fetch_sockets(self, to: str | Iterable[str] | None = None,
                            skip_sid: str | Iterable[str] | None = None,
                            namespace: str | None = None) -> list[RemoteSocket]:
        """The sockets of every server in ``to`` (a room, sids, several; all if None), this
        server's first.  TimeoutError if a server does not answer within the request timeout."""
        adapter = self.core.adapter(namespace or "/")
        return [RemoteSocket.from_wire(s) for s in
                await adapter.fetch_sockets(self._opts(to, skip_sid))]

    async def sockets_join(self, rooms: str | Iterable[str], to: str | Iterable[str] | None = None,
                           skip_sid: str | Iterable[str] | None = None,
                           namespace: str | None = None) -> None:
        """Make the sockets of ``to`` on every server join ``rooms`` (ours at once)."""
        await self.core.adapter(namespace or "/").add_sockets(self._opts(to, skip_sid),
                                                              _as_list(rooms))

    async def sockets_leave(self, rooms: str | Iterable[str], to: str | Iterable[str] | None = None,
                            skip_sid: str | Iterable[str] | None = None,
                            namespace: str | None = None) -> None:
        await self.core.adapter(namespace or "/").del_sockets(self._opts(to, skip_sid),
                                                              _as_list(rooms))

    async def disconnect_sockets(self, to: str | Iterable[str] | None = None,
                                 skip_sid: str | Iterable[str] | None = None,
                                 namespace: str | None = None, close: bool = False) -> None:
        """Disconnect the sockets of ``to`` on every server (``close``: their connections)."""
        await self.core.adapter(namespace or "/").disconnect_sockets(self._opts(to, skip_sid),
                                                                     close)

    async def all_rooms(self, namespace: str | None = None) -> set[str]:
        """Every room of every server (each socket's own room included)."""
        return await self.core.adapter(namespace or "/").all_rooms()

    async def server_side_emit(self, event: str, *args: Any, namespace: str | None = None) -> None:
        """Send ``event`` to the *other servers* of the cluster (their ``on_server_side``
        handlers); no client sees it."""
        await self.core.adapter(namespace or "/").server_side_emit([event, *args], ack=False)

    async def server_side_emit_with_ack(self, event: str, *args: Any,
                                        namespace: str | None = None) -> list[Any]:
        """:meth:`server_side_emit` and gather one answer per other server (what its handler
        returned).  TimeoutError (``.responses``: those that came) after the request timeout."""
        return await self.core.adapter(namespace or "/").server_side_emit([event, *args],
                                                                          ack=True)

    def on_server_side(self, event: str, handler: Callable[..., Any] | None = None,
                       namespace: str | None = None):
        """Register ``handler(*args)`` for ``event`` sent by another server; its return value
        answers a :meth:`server_side_emit_with_ack`.  Usable as a decorator."""
        namespace = namespace or "/"

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.core.add_namespace(namespace)
            self.server_handlers.setdefault(namespace, {})[event] = function
            return function

        return register(handler) if handler is not None else register

    def _server_side_event(self, namespace: str, data: list[Any],
                           ack: Callable[[Any], None] | None) -> None:
        if not data or not isinstance(data[0], str):
            return
        handler = self.server_handlers.get(namespace, {}).get(data[0])
        if handler is None:
            logger.debug("no server-side handler for %r in %s", data[0], namespace)
            return

        async def run() -> None:
            try:
                result = handler(*data[1:])
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                logger.exception("the server-side handler of %r failed", data[0])
                return
            if ack is not None:
                ack(result)

        self._start_task(run())

    async def emit_with_ack(self, event: str, data: Any = None,
                            to: str | Iterable[str] | None = None,
                            skip_sid: str | Iterable[str] | None = None,
                            namespace: str | None = None, timeout: float = 5.0) -> list[Any]:
        """Send ``event`` to every socket of ``to`` on every server and wait for all their acks.

        Returns one response per client (the first argument of its ack), as Node's
        ``io.to(room).timeout(ms).emitWithAck(...)``: complete once every server has said how
        many clients it sent the event to and that many acks came.  After ``timeout`` seconds,
        :class:`AckTimeoutError` with the responses that came.
        """
        from .server import _as_args   # (the driver's argument convention)

        namespace = namespace or "/"
        adapter = self.core.adapter(namespace)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        responses: list[Any] = []
        state = {"expected_servers": -1, "servers": 0, "clients": 0}

        def check() -> None:
            if not done.done() and state["expected_servers"] == state["servers"] \
                    and len(responses) == state["clients"]:
                done.set_result(None)

        def on_client_count(count: int) -> None:
            state["clients"] += count
            state["servers"] += 1
            check()

        def on_ack(value: Any) -> None:
            responses.append(value)
            check()

        args = list(_as_args(data))
        packet = Packet(PacketType.EVENT, namespace, [event, *args])
        opts = self._opts(to, skip_sid, {"timeout": int(timeout * 1000)})
        await adapter.publish_with_ack(packet, opts, on_client_count, on_ack, timeout)
        on_client_count(await adapter.local.deliver_with_acks(packet, opts, timeout, on_ack)
                        if adapter.local is not None else 0)
        state["expected_servers"] = await adapter.server_count()
        check()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(done)
        except TimeoutError:
            raise AckTimeoutError("operation has timed out", list(responses)) from None
        return responses
