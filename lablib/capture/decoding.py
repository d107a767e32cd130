"""What the dissector hands to the layers above it, and what they give back.

:func:`lablib.capture.dissect.dissect` reads HTTP and WebSocket itself; every layer above
(Engine.IO, Socket.IO, MQTT, Server-Sent Events, the Socket.IO Redis adapter) is a *message
decoder* kept in that layer's own package (``lablib/engineio/dissect.py``, ...).  A decoder is a
function that receives a :class:`Message` (a complete WebSocket message, an HTTP body, or
something another decoder unwrapped) and returns a list of :class:`Decoded` items - or ``None``
/ ``[]`` when the message is not its business.  The layer describes it with a :class:`Decoder`::

    from lablib.capture.decoding import Decoded, Decoder, Message

    def decode_engineio(message: Message) -> list[Decoded] | None:
        if "EIO=4" not in (message.target or ""):
            return None                      # not an Engine.IO connection
        packet = lablib.engineio.packets.decode(message.text)   # the layer's own parser
        return [Decoded("engineio", "packet", f"{packet.type.name} {packet.data!r}",
                        {"type": packet.type.name, "data": packet.data}, obj=packet,
                        inner=Message("engineio", ..., target=message.target))]

    DECODER = Decoder("engineio", {"websocket", "http"}, decode_engineio)

:mod:`lablib.capture.decoders` lists the decoders the dissector uses by default, importing each
layer's module by name; ``dissect(..., decoders=[...])`` chooses explicitly.  This module imports
none of them, and none of them imports the dissector: the imports go one way only
(``decoding`` <- each layer's decoder <- ``decoders`` <- ``dissect``).

Layers stack through ``inner``: a :class:`Decoded` with an ``inner`` message is handed on to
every decoder whose ``carriers`` contain ``inner.carrier``.  Engine.IO returns, for each packet
of type "message", ``inner=Message("engineio", data, text, ...)``; Socket.IO's decoder reads the
``engineio`` carrier - neither knows the other.  An HTTP polling body holding several packets
gives one :class:`Decoded` per packet, each with its own ``raw`` slice.  Each level is a record
one ``depth`` deeper than its carrier, with the carrier's time, direction and offset.  A decoder
that raises produces an ``error`` record, never an exception.

Decoders that remember (per conversation)
-----------------------------------------
A decoder sees one message at a time.  One that must connect messages - Socket.IO joins the
binary attachments that follow a BINARY_EVENT back to it - is a *factory* with
``per_conversation=True``: the dissector calls it once for each conversation it dissects and
uses what it returns (a function or callable object) for that conversation's messages, so the
state lives exactly as long as one TCP connection and never leaks into the next dissection::

    class SocketIODecoder:
        def __init__(self): ...                       # fresh state for one conversation
        def __call__(self, message): ...              # -> list[Decoded] | None

    DECODER = Decoder("socketio", {"engineio"}, SocketIODecoder, per_conversation=True)

Messages reach a decoder in stream order within each direction (one direction may be handed
over entirely before the other), so keep state per ``message.direction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..http import Headers
from .records import Direction

__all__ = ["MAX_SIZE", "Message", "Decoded", "Decoder", "preview"]

#: Largest HTTP body or inflated WebSocket message the dissector will hold (memory stays bounded).
MAX_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Message:
    """A complete application payload handed to decoders.

    ``carrier`` is the layer that delivered it: ``"websocket"`` (a whole message, reassembled
    and inflated), ``"http"`` (a non-empty request or response body) or a decoder's layer.
    ``text`` is the UTF-8 text when the payload is text (WebSocket TEXT, or a body that decodes),
    else ``None``.  ``target`` is the request target of the HTTP exchange the message belongs
    to (for WebSocket: the upgrade request's), which tells e.g. Engine.IO traffic apart.
    """

    carrier: str
    data: bytes
    text: str | None
    direction: Direction
    target: str | None = None
    headers: Headers | None = None    #: for an HTTP body: the message's headers
    obj: Any = None                   #: the carrier's object (Request, Response, Frame, packet)
    complete: bool = True             #: False: an HTTP body that has not ended (see Decoder.streamed_types)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a decoder returns for each unit it found in a :class:`Message`.

    ``raw`` is the unit's own bytes when the message holds several (e.g. the packets of an
    Engine.IO polling payload); by default the record shows the whole message.  ``inner`` is the
    payload this unit carries, to be offered to the next layer's decoders.
    """

    layer: str
    kind: str
    summary: str
    fields: dict[str, Any] = field(default_factory=dict)
    obj: Any = None
    raw: bytes | None = None
    inner: Message | None = None


@dataclass(frozen=True, slots=True)
class Decoder:
    """A named message decoder and the carriers (layers) whose messages it reads.

    ``carriers`` and ``streamed_types`` may be given as any iterable of names; they are kept
    as frozensets.

    With ``per_conversation`` True, ``decode`` is a factory (called without arguments) that
    returns a fresh decode function for each conversation: see :meth:`for_conversation`.
    """

    name: str
    carriers: frozenset[str]
    decode: Callable[..., Any]
    per_conversation: bool = False
    #: Media types whose body is a stream of self-delimited messages (``text/event-stream``):
    #: a response of such a type whose body has not ended - still open, or cut - is shown
    #: with its head and handed to the decoders with the body so far (``Message.complete``
    #: False).  Any other unfinished response is only a ``truncated`` error.
    streamed_types: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "carriers", frozenset(self.carriers))
        object.__setattr__(self, "streamed_types", frozenset(self.streamed_types))

    def for_conversation(self) -> Decoder:
        """The decoder to use for one conversation (itself, unless it keeps state)."""
        if not self.per_conversation:
            return self
        return Decoder(self.name, self.carriers, self.decode(), False, self.streamed_types)


def preview(data: bytes, text: str | None, limit: int = 40) -> str:
    """A short, printable glimpse: the text quoted, or the first bytes in hex."""
    if text is not None:
        return repr(text if len(text) <= limit else text[:limit - 3] + "...")
    shown = data[:16].hex(" ")
    return shown + (" ..." if len(data) > 16 else "")
