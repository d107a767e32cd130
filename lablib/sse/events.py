"""What the event-stream parser reports, one small frozen dataclass each.

The WHATWG HTML standard, section "Server-sent events" (§9.2), interprets a ``text/event-stream``
as lines of fields.  Only a *dispatch* (an empty line, §9.2.6) makes an event the page sees; a
``retry`` field changes the reconnection time at once, and a comment (a line starting with
``:``) is ignored by browsers.  The parser reports all three, so a learner (and the dissector)
sees the comments a server sends as keepalives.

``span`` is where the bytes that made the item sit in the stream fed to the parser (start,
end), for the dissector; it takes no part in ``==``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..events import Event

__all__ = ["Event", "EventReceived", "RetryReceived", "CommentReceived"]


@dataclass(frozen=True, slots=True)
class EventReceived(Event):
    """A dispatched event (§9.2.6 "dispatch the event"): what ``EventSource`` fires.

    ``event``: the type, ``"message"`` unless an ``event`` field set another (step 5).
    ``data``: the ``data`` fields joined by LF, the final LF removed (step 3).
    ``last_event_id``: the last event ID *string* at dispatch (step 1): the ``id`` of this
    event, or of an earlier one, since ``id`` persists until another ``id`` field changes it.
    """

    data: str
    event: str = "message"
    last_event_id: str = ""
    span: tuple[int, int] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RetryReceived(Event):
    """A valid ``retry`` field (§9.2.6: ASCII digits only): the new reconnection time, in ms."""

    retry: int
    span: tuple[int, int] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CommentReceived(Event):
    """A line starting with ``:`` (§9.2.6); the text after the colon.  Servers send them as
    keepalives: they keep proxies from timing out an idle connection."""

    comment: str
    span: tuple[int, int] | None = field(default=None, compare=False)
