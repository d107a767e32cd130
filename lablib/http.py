"""HTTP/1.1 helpers shared by every layer (RFC 9110/9112), parsing done by h11.

Parsing is h11's job: it enforces the message grammar, Content-Length, chunked bodies and header
size limits.  Serializing is written out here by hand (:func:`format_request`,
:func:`format_response`) because a learner should see exactly which bytes a request is made of,
and because an error answer must be producible even when the request could not be parsed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Iterable, Sequence

import h11

from ._util import NEED_DATA, NeedData
from .errors import HandshakeError

__all__ = [
    "Headers", "Request", "Response", "format_request", "format_response", "error_response",
    "RequestParser", "ResponseParser", "NEED_DATA", "same_origin", "ResponseStream", "END", "CUT",
    "HTTPConnection",
]


class Headers:
    """An ordered multi-dict of header fields with case-insensitive lookup (RFC 9110 §5.1)."""

    def __init__(self, items: Iterable[tuple[str | bytes, str | bytes]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(_text(k), _text(v)) for k, v in items]

    def media_type(self) -> str:
        """The Content-Type's media type without its parameters, lower-cased (RFC 9110 §8.3.1):
        ``text/plain`` for ``text/plain; charset=UTF-8``, ``""`` when there is no Content-Type."""
        return (self.get("content-type") or "").split(";")[0].strip().lower()

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self._items:
            if key.lower() == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._items if key.lower() == name]

    def tokens(self, name: str) -> list[str]:
        """The comma-separated list values of ``name``, stripped and lower-cased."""
        return [t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()]

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k.lower(), v) for k, v in self._items] == [(k.lower(), v) for k, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


@dataclass
class Request:
    method: str
    target: str
    headers: Headers
    http_version: str = "1.1"
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass
class Response:
    status: int
    headers: Headers
    reason: str = ""
    http_version: str = "1.1"
    body: bytes = b""


def format_request(method: str, target: str, headers: Iterable[tuple[str, str]],
                   body: bytes = b"") -> bytes:
    """Serialize a request: request line, header fields, empty line, body (RFC 9112 §3)."""
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def format_response(status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                    reason: str | None = None) -> bytes:
    """Serialize a response: status line, header fields, empty line, body (RFC 9112 §4)."""
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(status: int, message: str, headers: Iterable[tuple[str, str]] = (),
                   content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A complete error answer with a short body that says what was wrong, then close."""
    body = (message + "\n").encode("utf-8")
    # We close after an error; if the caller already has a Connection field (e.g. "Upgrade"
    # on a 426), "close" joins its token list instead of a second Connection field.
    all_headers = [(k, f"{v}, close" if k.lower() == "connection" else v) for k, v in headers]
    all_headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if not any(k.lower() == "connection" for k, _ in all_headers):
        all_headers.append(("Connection", "close"))
    return format_response(status, all_headers, body)


def _head_size(first_line: int, headers: Any) -> int:
    """The size of a header block as h11 parsed it (``headers``: h11's, with raw_items()):
    the first line's ``first_line`` bytes and CRLF, ``name: value`` CRLF per field, then the
    empty line.

    h11's ``max_incomplete_event_size`` only bounds a header block that is still arriving;
    one that arrives complete in a single read is never measured, so we measure it here.
    """
    return first_line + 2 + sum(len(name) + len(value) + 4
                                for name, value in headers.raw_items()) + 2


class RequestParser:
    """Sans-I/O server side: feed bytes, get one :class:`Request` (with its body) or NEED_DATA.

    Malformed input raises :class:`HandshakeError` with the status h11 suggests (400, 431, ...).
    After a request with ``Upgrade``, the bytes that followed it are in :attr:`trailing_data`.
    """

    def __init__(self, *, max_header_size: int = 16 * 1024, max_body_size: int = 1 << 20) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._request: Request | None = None
        self._body = bytearray()

    def receive_data(self, data: bytes) -> Request | NeedData:
        self._conn.receive_data(data)
        return self._step()

    def receive_eof(self) -> Request | NeedData:
        """The client closed its side: finish what is buffered (or raise for a cut request)."""
        self._conn.receive_data(b"")
        return self._step()

    def _step(self) -> Request | NeedData:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise HandshakeError(exc.error_status_hint, f"malformed HTTP request: {_h11_reason(exc)}") from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and self._request is not None:
                    return self._finish()
                return NEED_DATA
            if isinstance(event, h11.Request):
                request_line = len(event.method) + len(event.target) + 10  # 2 SP, "HTTP/1.1"
                if _head_size(request_line, event.headers) > self.max_header_size:
                    raise HandshakeError(431, f"request header fields exceed "
                                              f"{self.max_header_size} bytes")
                if not event.http_version.startswith(b"1."):  # h11 takes any HTTP/d.d
                    raise HandshakeError(505, f"HTTP/{event.http_version.decode()} is not "
                                              "supported: this server speaks HTTP/1.1")
                declared = _content_length(event.headers)
                if declared is not None and declared > self.max_body_size:
                    # refuse on the header block alone: never wait for a body we would drop
                    raise HandshakeError(413, f"request body of {declared} bytes exceeds "
                                              f"{self.max_body_size} bytes")
                self._request = Request(event.method.decode("latin-1"),
                                        event.target.decode("latin-1"), Headers(event.headers.raw_items()),
                                        event.http_version.decode("latin-1"))
            elif isinstance(event, h11.Data):
                if len(self._body) + len(event.data) > self.max_body_size:
                    raise HandshakeError(413, f"request body exceeds {self.max_body_size} bytes")
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return self._finish()
            elif isinstance(event, h11.ConnectionClosed):
                raise HandshakeError(400, "connection closed before a complete request")

    def _finish(self) -> Request:
        assert self._request is not None
        request, self._request = self._request, None
        request.body, self._body = bytes(self._body), bytearray()
        return request

    @property
    def trailing_data(self) -> bytes:
        return bytes(self._conn.trailing_data[0])

    def start_next_cycle(self) -> None:
        """Keep-alive: after a response was sent, get ready for the next request."""
        self._conn = _reuse(self._conn)


def _content_length(headers: Any) -> int | None:
    """The Content-Length h11 accepted (it checked the syntax), or None (chunked, or no body)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def same_origin(origin: str, host: str | None) -> bool:
    """Does the ``Origin`` field (RFC 6454 §7: ``scheme://host[:port]``) name the server that
    the ``Host`` field (RFC 9110 §7.2) addresses?  Host names compare without case, a missing
    port is the scheme's default.  ``null`` and anything malformed are not the same origin.
    """
    if host is None or "://" not in origin:
        return False
    scheme, _, authority = origin.partition("://")
    default = _DEFAULT_PORTS.get(scheme.lower())
    if default is None or not authority or "/" in authority:
        return False
    try:
        return _host_port(authority, default) == _host_port(host, default)
    except ValueError:
        return False


def _host_port(authority: str, default_port: int) -> tuple[str, int]:
    host, sep, port = authority.lower().rpartition(":")
    if not sep or "]" in port:  # no port (an IPv6 literal's colons are inside brackets)
        return authority.lower(), default_port
    return host, int(port) if port else default_port


def _h11_reason(exc: Exception) -> str:
    # h11's messages may end with a repr of the offending bytes ("...: bytearray(b'...')");
    # the peer gets the reason only, never a Python repr.
    return str(exc).split(": bytearray(")[0]


def _reuse(conn: h11.Connection) -> h11.Connection:
    # We serialize responses ourselves, so h11 never saw ours; a fresh parser fed with the
    # bytes it had not consumed is the honest way to start the next cycle.
    leftover = bytes(conn.trailing_data[0])
    fresh = h11.Connection(h11.SERVER, max_incomplete_event_size=conn._max_incomplete_event_size)
    if leftover:
        fresh.receive_data(leftover)
    return fresh


class ResponseParser:
    """Sans-I/O client side: feed bytes, get one :class:`Response` or NEED_DATA.

    ``request_method`` matters to h11 (a response to HEAD has no body).  For a ``101`` answer
    the bytes after the header block are in :attr:`trailing_data` (they belong to the new
    protocol).  Bodies larger than ``max_body_size`` raise HandshakeError.
    """

    def __init__(self, *, method: str = "GET", target: str = "/",
                 headers: Iterable[tuple[str, str]] = (("Host", "localhost"),),
                 max_header_size: int = 16 * 1024, max_body_size: int = 1 << 20) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        self.max_header_size = max_header_size
        # h11 must see the request go out to expect a response; the bytes themselves are ours.
        self._conn.send(h11.Request(method=method, target=target, headers=list(headers)))
        self._conn.send(h11.EndOfMessage())
        self.max_body_size = max_body_size
        self._response: Response | None = None
        self._body = bytearray()

    def receive_data(self, data: bytes) -> Response | NeedData:
        self._conn.receive_data(data)
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if not data and self._response is None:  # EOF with no answer at all
                    raise HandshakeError(0, "connection closed before a complete response") from None
                raise HandshakeError(0, f"malformed HTTP response: {_h11_reason(exc)}") from None
            if event is h11.NEED_DATA:
                return NEED_DATA
            if event is h11.PAUSED:
                if self._response is not None:
                    return self._response
                return NEED_DATA
            if isinstance(event, (h11.InformationalResponse, h11.Response)):
                status_line = 13 + len(event.reason)  # "HTTP/1.1 101 " + reason
                if _head_size(status_line, event.headers) > self.max_header_size:
                    raise HandshakeError(0, f"response header fields exceed "
                                            f"{self.max_header_size} bytes")
            if isinstance(event, h11.InformationalResponse):
                response = Response(event.status_code, Headers(event.headers.raw_items()),
                                    event.reason.decode("latin-1"), event.http_version.decode())
                if event.status_code == 101:
                    self._response = response
                    return response
                # other 1xx (e.g. 100 Continue) are skipped
            elif isinstance(event, h11.Response):
                self._response = Response(event.status_code, Headers(event.headers.raw_items()),
                                          event.reason.decode("latin-1"), event.http_version.decode())
            elif isinstance(event, h11.Data):
                if len(self._body) + len(event.data) > self.max_body_size:
                    raise HandshakeError(0, f"response body exceeds {self.max_body_size} bytes")
                self._body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                if self._response is None:
                    raise HandshakeError(0, "connection closed before a complete response")
                self._response.body = bytes(self._body)
                return self._response

    def receive_eof(self) -> Response | NeedData:
        return self.receive_data(b"")

    @property
    def trailing_data(self) -> bytes:
        return bytes(self._conn.trailing_data[0])


# --- a response read piece by piece (an event stream's body never ends) -----------------------

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

    :class:`ResponseParser` returns a response once its whole body has arrived, which is right
    for a handshake and wrong for an event stream, whose body never ends by design.  This
    reader hands out the head as soon as it is complete, then each piece of body as h11
    decodes it (chunked or close-delimited), then :data:`END` (the body ended as its framing
    said) or :data:`CUT` (the connection closed inside the body).

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


# --- a client connection on asyncio streams ---------------------------------------------------

class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before it answered."""


class HTTPConnection:
    """One keep-alive HTTP/1.1 connection carrying one request at a time (no pipelining).

    Serialising is :func:`lablib.http.format_request`, parsing is h11 via
    :class:`lablib.http.ResponseParser`.  The TCP connection opens on the first request and is
    reused until the server says ``Connection: close`` or closes it.  A server may close an idle
    keep-alive connection at any moment; if a *reused* connection ends before a single byte of
    the answer arrived, the request is sent again once on a fresh connection (what browsers do).
    """

    def __init__(self, host: str, port: int, *, max_body_size: int = 1 << 20) -> None:
        self.host, self.port = host, port
        self.max_body_size = max_body_size
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.requests_sent = 0      #: on this object, over all its TCP connections
        self.connections_opened = 0

    async def request(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                      body: bytes = b"") -> Response:
        """Send one request, return the complete response (body read)."""
        for attempt in (1, 2):
            reused = self._writer is not None
            if not reused:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                self.connections_opened += 1
            try:
                return await self._exchange(method, target, headers, body)
            except _StaleConnection:
                self.close()
                if not reused or attempt == 2:
                    raise ConnectionResetError("the server closed the connection without answering") from None
            except BaseException:
                self.close()  # cancelled or failed mid-request: the connection's state is unknown
                raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                        body: bytes) -> Response:
        assert self._reader is not None and self._writer is not None
        self._writer.write(format_request(method, target, headers, body))
        self.requests_sent += 1
        await self._writer.drain()
        # h11 checks the response against the request; it needs the Host field, not the body.
        parser = ResponseParser(method=method, target=target,
                                headers=[(k, v) for k, v in headers if k.lower() == "host"],
                                max_body_size=self.max_body_size)
        received = 0
        while True:
            data = await self._reader.read(65536)
            if not data:
                if received == 0:
                    raise _StaleConnection()
                result = parser.receive_eof()
                if result is NEED_DATA:
                    raise ConnectionResetError("the server closed the connection mid-response")
                self.close()
                return result
            received += len(data)
            result = parser.receive_data(data)
            if result is not NEED_DATA:
                assert isinstance(result, Response)
                if "close" in result.headers.tokens("connection") or result.http_version == "1.0":
                    self.close()
                return result

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
