"""Server-Sent Events (WHATWG HTML §9.2): a sans-I/O ``text/event-stream`` codec
(:mod:`.codec`, :mod:`.events`) and thin asyncio drivers (:mod:`.server`, :mod:`.client`).

    async with lablib.sse.serve(handler, "127.0.0.1", 0) as server: ...
    async for event in lablib.sse.connect(f"http://127.0.0.1:{server.port}/"): ...
"""

from .client import EventSource, ReadyState, connect
from .codec import MEDIA_TYPE, EventStreamParser, encode, encode_comment, encode_event
from .events import CommentReceived, Event, EventReceived, RetryReceived
from .server import EventStream, Server, serve

__all__ = ["EventStreamParser", "encode", "encode_event", "encode_comment", "MEDIA_TYPE",
           "Event", "EventReceived", "RetryReceived", "CommentReceived",
           "serve", "Server", "EventStream", "connect", "EventSource", "ReadyState"]
