"""A streaming HTTP/1.1 response reader (h11): the head first, then the body piece by piece.

:class:`lablib.http.ResponseParser` returns a response once its whole body has arrived, which is
right for a handshake and wrong for an event stream, whose body never ends by design.  This
reader hands out the head as soon as it is complete, then each piece of body as h11 decodes it
(chunked or close-delimited), then :data:`END` (the body ended as its framing said) or
:data:`CUT` (the connection closed inside the body).

It belongs in :mod:`lablib.http` next to ResponseParser; it lives here until that module's
rewrite lands.
"""

from __future__ import annotations

from typing import Iterable

import h11

from ..errors import HandshakeError
from ..http import Headers, Response

__all__ = ["ResponseStream", "END", "CUT"]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = _Marker("END")   #: the body ended as its framing said (last chunk, or Content-Length)
CUT = _Marker("CUT")   #: the connection ended before the body did


class ResponseStream:
    """Client side: ``receive_data(bytes)`` -> a list of :class:`~lablib.http.Response` (the
    head, ``body`` empty), ``bytes`` (body pieces), :data:`END` or :data:`CUT`.

    ``receive_data(b"")`` says the connection closed.  A malformed head raises
    :class:`~lablib.errors.HandshakeError` (status 0: the answer was not valid HTTP).
    """

    def __init__(self, *, method: str = "GET", target: str = "/",
                 headers: Iterable[tuple[str, str]] = (("Host", "localhost"),),
                 max_header_size: int = 16 * 1024) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        # h11 must see the request go out to expect a response; the bytes themselves are ours.
        self._conn.send(h11.Request(method=method, target=target, headers=list(headers)))
        self._conn.send(h11.EndOfMessage())
        self.response: Response | None = None
        self.done = False

    def receive_data(self, data: bytes) -> list[Response | bytes | _Marker]:
        if self.done:
            return []
        self._conn.receive_data(data)
        out: list[Response | bytes | _Marker] = []
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self.response is not None and not data:   # EOF inside the body
                    self.done = True
                    return out + [CUT]
                self.done = True
                raise HandshakeError(0, f"malformed HTTP response: {exc}") from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return out
            if isinstance(event, h11.Response):
                self.response = Response(event.status_code, Headers(event.headers.raw_items()),
                                         event.reason.decode("latin-1"),
                                         event.http_version.decode("latin-1"))
                out.append(self.response)
            elif isinstance(event, h11.Data):
                out.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.done = True
                return out + [END]
            elif isinstance(event, h11.ConnectionClosed):
                self.done = True
                if self.response is None:
                    raise HandshakeError(0, "connection closed before a complete response")
                return out + [CUT]
            # 1xx informational responses are skipped
