"""The dissector learns Server-Sent Events: a ``text/event-stream`` response body, one record
per item, read by the same :class:`~lablib.sse.codec.EventStreamParser` the client uses.

::

    layer  kind       summary                                      fields
    http   response   HTTP/1.1 200 OK body=93B so far, cut         (chunked or not)
    sse    retry      retry: 10 ms                                 retry
    sse    event      event 'tick' id='1' data='hello'             event, data, id, data_lines
    sse    comment    comment ''  (a keepalive)                    comment
    sse    discarded  an event without its final empty line (9 bytes) is never dispatched

Each record's ``raw`` is the body bytes that made it (the chunk framing removed).  Its
``DECODER`` (listed in :mod:`lablib.capture.decoders`) names ``text/event-stream`` a streamed
type, so that a stream still open, or cut by the network, is dissected as far as it went.
"""

from __future__ import annotations

from ..capture.decoding import MAX_SIZE, Decoded, Decoder, Message
from .codec import MEDIA_TYPE, EventStreamParser
from .events import CommentReceived, EventReceived, RetryReceived

__all__ = ["decode_event_stream"]

def decode_event_stream(message: Message) -> list[Decoded] | None:
    """The items of an event-stream response body (None for any other message)."""
    if message.direction != "s2c" or message.headers is None:
        return None
    if message.headers.media_type() != MEDIA_TYPE:
        return None
    parser = EventStreamParser(max_size=MAX_SIZE)   # the body is already bounded by MAX_SIZE
    decoded = [_decoded(item, message.data) for item in parser.receive_data(message.data)]
    if parser.pending:
        summary = (f"{parser.pending} bytes of an unfinished event: never dispatched "
                   "(§9.2.5: pending data is discarded)" if message.complete else
                   f"{parser.pending} bytes of an event not finished when the body stopped")
        decoded.append(Decoded("sse", "discarded" if message.complete else "pending", summary,
                               {"bytes": parser.pending},
                               raw=message.data[len(message.data) - parser.pending:]))
    return decoded


#: What the dissector needs to know of this layer (listed in lablib.capture.decoders): an
#: event stream is read as it comes, even when the response has not ended.
DECODER = Decoder("sse", {"http"}, decode_event_stream, streamed_types={MEDIA_TYPE})


def _decoded(item, body: bytes) -> Decoded:
    raw = body[item.span[0]:item.span[1]]
    if isinstance(item, EventReceived):
        data = item.data if len(item.data) <= 40 else item.data[:37] + "..."
        summary = f"event {item.event!r} id={item.last_event_id!r} data={data!r}"
        return Decoded("sse", "event", summary,
                       {"event": item.event, "data": item.data, "id": item.last_event_id,
                        "data_lines": item.data.count("\n") + 1}, obj=item, raw=raw)
    if isinstance(item, RetryReceived):
        return Decoded("sse", "retry", f"retry: {item.retry} ms", {"retry": item.retry},
                       obj=item, raw=raw)
    assert isinstance(item, CommentReceived)
    return Decoded("sse", "comment", f"comment {item.comment!r}", {"comment": item.comment},
                   obj=item, raw=raw)
