"""The three kinds of value a sans-I/O core returns, shared by every layer.

Each protocol layer of lablib is a state machine that owns no socket and no clock.  Feed it
what happened (bytes that arrived, a call of the application, the time) and it returns a list
of *outputs*, in the order they must be handled:

* an :class:`Event` is news for the application: a message arrived, the peer closed, an ack
  came back.  An event that reports something the peer sent is named ``…Received``
  (``TextReceived``, ``MessageReceived``, ``EventReceived``); one that reports a state reached
  is named for it (``Accepted``, ``Upgraded``, ``Connected``, ``SessionClosed``), and MQTT's
  acknowledgements keep the spec's word (``PublishAcknowledged``).
* an :class:`Action` is work for the driver, the thin asyncio code around the core: answer this
  HTTP request, send these messages on the connection below, close it.

The WebSocket connection has no actions: everything it must send waits in
:meth:`~lablib.websocket.connection.Connection.data_to_send`, as in wsproto and h11.  Each
layer defines its own events and actions in its ``events`` module (:mod:`lablib.websocket.events`,
:mod:`lablib.engineio.events`, :mod:`lablib.socketio.events`, :mod:`lablib.sse.events`,
:mod:`lablib.mqtt.events`), all subclasses of the classes below.
"""

from __future__ import annotations

__all__ = ["Output", "Event", "Action"]


class Output:
    """Base class of everything a sans-I/O core returns."""

    __slots__ = ()


class Event(Output):
    """Something the application should hear about."""

    __slots__ = ()


class Action(Output):
    """Something the driver must do on the wire."""

    __slots__ = ()
