"""The Engine.IO server's request router, sans-I/O: one parsed HTTP request in, one decision out.

:class:`EngineServerCore` owns the sessions (sid -> :class:`~lablib.engineio.server_session.ServerSession`)
and answers each request the way the spec and the reference server do.  It never touches a socket:
the asyncio driver parses the request (:class:`lablib.http.Request`), calls
:meth:`EngineServerCore.handle_request`, and acts on the :class:`RequestResult`::

    result.reply    HTTPReply        -> write it (format_response(...) via reply.to_bytes())
                    HoldPoll         -> keep this GET open; answer it on the session's AnswerPoll
                    AcceptWebSocket  -> do the RFC 6455 handshake, then feed result.session
    result.outputs                   -> the session's other outputs (events for the application,
                                        an AnswerPoll for a GET held earlier, WebSocket actions)

Checks, in the reference server's order (engine.io ``lib/server.ts``: the CORS middleware, then
``verify()``, then ``handshake()``).  A refused HTTP request gets ``{"code":N,"message":"..."}``
as ``application/json``, 403 for code 4 and 400 for the others (``abortRequest``); a refused
WebSocket request (``Upgrade: websocket``) gets what ``abortUpgrade`` writes: 400 whatever the
code, ``Content-Type: text/html``, the bare message, ``Connection: close``::

    path outside the prefix                        404 (not ours; the reference passes it on)
    Origin of another site (default same-origin)   403 code 4 "Forbidden", JSON even for a WebSocket
    OPTIONS with CORS enabled                      204 preflight
    transport not polling/websocket (or disabled)  400 code 0 "Transport unknown"
    sid given but unknown                          400 code 1 "Session ID unknown"
    sid given, other transport, not an upgrade     400 code 3 "Bad request" (e.g. polling after the upgrade)
    WebSocket for a session that has one           101, then a close frame without code (AcceptWebSocket(close_at_once))
    no sid, method is not GET                      400 code 2 "Bad handshake method"
    no sid, transport=websocket without Upgrade    400 code 3 "Bad request"
    no sid, allow_request refuses                  403 code 4, the hook's message or "Forbidden"
    no sid, EIO is not "4"                         400 code 5 "Unsupported protocol version"
    POST body longer than maxPayload               413, empty body (polling.ts); the session lives on
    POST body that does not parse                  400 code 3, the session closes ("parse error")
    method other than GET/POST on a session        405 code 3 "Method Not Allowed", Allow: GET, POST
                                                   (the reference: 500, empty body); the session lives on
    second GET while one is held                   400 code 3; the session closes (the reference: 500)

No request ever gets a 5xx: every refusal says what was wrong (tests/engineio: the hypothesis
test ``test_random_requests_never_get_a_5xx_and_leak_no_session``).
"""

from __future__ import annotations

import json
import random
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .._util import generate_sid
from ..errors import EngineIOError
from ..http import Request, format_response, same_origin
from . import http_compression as http_compression_
from .packets import Packet, encode_payload
from ..events import Action, Output
from .events import AnswerPoll, HoldPoll, RefuseRequest
from .server_session import EngineState, ServerSession
from .transport import Transport

__all__ = ["EngineServerCore", "HTTPReply", "AcceptWebSocket", "RequestResult", "generate_sid"]

TEXT_PLAIN = "text/plain; charset=UTF-8"  # polling bodies (polling.ts doWrite)


@dataclass(frozen=True, slots=True)
class HTTPReply(Action):
    """Answer the request at once: a complete HTTP answer: status, header fields (Content-Length included), body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return format_response(self.status, self.headers, self.body)

    def json(self) -> object:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class AcceptWebSocket(Action):
    """Complete the WebSocket handshake (RFC 6455 §4.2); the session then runs over it.

    ``close_at_once``: a WebSocket for a session that already has one (upgraded, or an upgrade
    in progress).  The spec says the server MUST close *this WebSocket*; the reference
    (engine.io ``server.ts`` ``onWebSocket``) completes the handshake and calls
    ``websocket.close()`` with no code, i.e. sends a close frame without a status code
    (``\x88\x00``).  The session and its WebSocket are not touched.
    """

    headers: tuple[tuple[str, str], ...] = ()  #: extra header fields for the 101 answer
    close_at_once: bool = False


@dataclass(frozen=True, slots=True)
class RequestResult:
    """What :meth:`EngineServerCore.handle_request` decided for one request.

    ``reply`` is the driver's action for the request itself: answer it now (:class:`HTTPReply`),
    hold it as the session's poll (:class:`~lablib.engineio.events.HoldPoll`), or complete the
    WebSocket handshake (:class:`AcceptWebSocket`); ``outputs`` are the session's outputs that
    came with it (a message in a POST, an answer to a poll held before).
    """

    reply: HTTPReply | HoldPoll | AcceptWebSocket
    session: ServerSession | None = None
    outputs: tuple[Output, ...] = ()


AllowRequest = Callable[[Request], "bool | str | None"]


class EngineServerCore:
    """The sans-I/O Engine.IO server: sessions plus the HTTP request router.

    ``ping_interval``/``ping_timeout``/``upgrade_timeout`` are milliseconds (the wire's unit);
    ``max_payload`` bytes.

    ``cors_allowed_origins`` guards against cross-site WebSocket hijacking (a page of another
    site opening a session with the user's cookies).  One setting for the WebSocket upgrade
    and the polling requests.  The default, None, is **same-origin**: a request whose
    ``Origin`` names this server (its host and port are those of the ``Host`` field) is
    accepted, one from any other origin is refused with 403 ``{"code":4,"message":"Forbidden"}``,
    and a request without ``Origin`` (not from a browser: the lablib, python-engineio and
    Node clients send none) is accepted.  ``"*"`` accepts every origin, a list (or one string)
    those origins as well, and both answer with CORS fields (``cors_credentials``).
    python-engineio has the same default (it refuses with 400 and a message); the Node server
    checks no origin at all.  ``allow_request(request)``
    vets handshakes: ``False`` or a string (the message) refuses with 403.  Sids come from
    :mod:`secrets` unless ``rng`` is given: pass ``random.Random(seed)`` for reproducible
    sessions (notebooks, tests), never in production.

    ``http_compression`` (on by default, like the Node server's ``httpCompression`` and
    python-engineio's ``http_compression``): a GET's answer of at least
    ``compression_threshold`` bytes (1024, both references' default) is sent gzip- or
    deflate-encoded when the request's ``Accept-Encoding`` accepts it (see
    :mod:`.http_compression`); the answer then says ``Content-Encoding`` (and, like the
    reference, no ``Vary``: every poll's URL is unique, ``t=...``).  Other answers are never
    compressed.
    """

    def __init__(self, *, path: str = "/engine.io/", ping_interval: int = 25000,
                 ping_timeout: int = 20000, max_payload: int = 1_000_000,
                 upgrade_timeout: int = 10000, transports: Sequence[str] = ("polling", "websocket"),
                 allow_upgrades: bool = True, cors_allowed_origins: str | Sequence[str] | None = None,
                 cors_credentials: bool = True, allow_request: AllowRequest | None = None,
                 max_buffered_packets: int = 10_000, rng: random.Random | None = None,
                 http_compression: bool = True,
                 compression_threshold: int = http_compression_.THRESHOLD) -> None:
        self.path = "/" + path.strip("/") + "/"
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_payload = max_payload
        self.upgrade_timeout = upgrade_timeout
        self.transports = tuple(Transport(t).value for t in transports)
        self.allow_upgrades = allow_upgrades
        self.cors_allowed_origins = cors_allowed_origins
        self.cors_credentials = cors_credentials
        self.allow_request = allow_request
        self.max_buffered_packets = max_buffered_packets
        self.http_compression = http_compression
        self.compression_threshold = compression_threshold
        self.rng = rng  #: None: sids from `secrets`
        self.sessions: dict[str, ServerSession] = {}

    # --- the router ------------------------------------------------------------------------

    def handles(self, request: Request) -> bool:
        """True if the request's path is under our prefix (``/engine.io/`` by default)."""
        return request.path == self.path.rstrip("/") or request.path.startswith(self.path)

    def handle_request(self, request: Request, now: float) -> RequestResult:
        if not self.handles(request):
            return RequestResult(plain_reply(404, "Not Found"))
        is_upgrade = "websocket" in request.headers.tokens("upgrade")
        refuse = self.upgrade_error_reply if is_upgrade else self.error_reply
        cors = self._cors_headers(request)
        if cors is None:  # a page of another site: 403 JSON, WebSocket or not
            reply = self.error_reply(EngineIOError(4))
            if is_upgrade:  # no WebSocket follows: this connection is over
                reply = HTTPReply(403, reply.headers + (("Connection", "close"),), reply.body)
            return RequestResult(reply)
        if request.method == "OPTIONS" and self.cors_allowed_origins is not None:
            return RequestResult(self._preflight(request, cors))
        query = _parse_query(request.query)
        transport = query.get("transport")
        if transport not in self.transports:
            return RequestResult(refuse(EngineIOError(0), cors))
        sid = query.get("sid")
        if sid is not None:
            return self._existing_session(request, sid, transport, is_upgrade, cors, now)
        if request.method != "GET":
            return RequestResult(refuse(EngineIOError(2), cors))
        if transport == "websocket" and not is_upgrade:
            return RequestResult(refuse(EngineIOError(3), cors))
        if self.allow_request is not None:
            verdict = self.allow_request(request)
            if verdict is False or isinstance(verdict, str):
                message = verdict if isinstance(verdict, str) else None
                return RequestResult(refuse(EngineIOError(4, message), cors))
        if query.get("EIO") != "4":
            return RequestResult(refuse(EngineIOError(5), cors))
        return self._handshake(Transport(transport), cors, now, request)

    def _handshake(self, transport: Transport, cors: list[tuple[str, str]], now: float,
                   request: Request) -> RequestResult:
        sid = generate_sid(self.rng)
        while sid in self.sessions:
            sid = generate_sid(self.rng)
        upgrades = ("websocket",) if (transport is Transport.POLLING and self.allow_upgrades
                                      and "websocket" in self.transports) else ()
        session = ServerSession(sid, now, transport=transport, ping_interval=self.ping_interval,
                                ping_timeout=self.ping_timeout, max_payload=self.max_payload,
                                upgrades=upgrades, upgrade_timeout=self.upgrade_timeout,
                                max_buffered_packets=self.max_buffered_packets)
        self.sessions[sid] = session
        if transport is Transport.WEBSOCKET:
            return RequestResult(AcceptWebSocket(), session, tuple(session.flush()))
        return self._poll(session, cors, now, request)

    def _existing_session(self, request: Request, sid: str, transport: str, is_upgrade: bool,
                          cors: list[tuple[str, str]], now: float) -> RequestResult:
        refuse = self.upgrade_error_reply if is_upgrade else self.error_reply
        session = self.sessions.get(sid)
        # the session's overdue timers run first: a request that comes after the pong
        # deadline finds the session gone, however late the driver's timer task is
        overdue = tuple(session.tick(now)) if session is not None else ()
        if session is None or session.state is EngineState.CLOSED:
            self.sessions.pop(sid, None)
            return RequestResult(refuse(EngineIOError(1), cors), session, overdue)
        result = self._route_to_session(request, session, transport, is_upgrade, cors, now)
        if overdue:
            result = RequestResult(result.reply, result.session, overdue + result.outputs)
        return result

    def _route_to_session(self, request: Request, session: ServerSession, transport: str,
                          is_upgrade: bool, cors: list[tuple[str, str]], now: float) -> RequestResult:
        refuse = self.upgrade_error_reply if is_upgrade else self.error_reply
        if transport == "websocket" and is_upgrade and request.method == "GET":
            if session.transport is not Transport.POLLING or session.state is not EngineState.OPEN:
                # already upgraded (or a WebSocket session), or an upgrade in progress: accept
                # this WebSocket and close it at once, as the reference does
                return RequestResult(AcceptWebSocket(close_at_once=True), session)
            return RequestResult(AcceptWebSocket(), session, tuple(session.attach_websocket(now)))
        if transport != session.transport.value:
            return RequestResult(refuse(EngineIOError(3), cors), session)
        if request.method == "GET":
            return self._poll(session, cors, now, request)
        if request.method == "POST":
            return self._post(request, session, cors, now)
        # the reference answers 500 and an empty body (polling.ts onRequest); nothing failed
        # on the server: the method is not allowed on a session (python-engineio: 405 too)
        reply = self.error_reply(EngineIOError(3, "Method Not Allowed", 405), cors)
        return RequestResult(HTTPReply(405, reply.headers + (("Allow", "GET, POST"),), reply.body), session)

    def _poll(self, session: ServerSession, cors: list[tuple[str, str]], now: float,
              request: Request) -> RequestResult:
        outputs = session.receive_poll(now)
        refusal = next((o for o in outputs if isinstance(o, RefuseRequest)), None)
        rest = [o for o in outputs if o is not refusal]
        self._forget_if_closed(session)
        if refusal is not None:
            return RequestResult(self._refusal_reply(refusal, cors), session, tuple(rest))
        # "hold this GET" immediately followed by "answer the held GET": answer it now
        if len(rest) >= 2 and isinstance(rest[0], HoldPoll) and isinstance(rest[1], AnswerPoll):
            reply = self.compress(self.poll_reply(rest[1].packets, cors), request)
            return RequestResult(reply, session, tuple(rest[2:]))
        return RequestResult(HoldPoll(), session, tuple(rest[1:]))

    def _post(self, request: Request, session: ServerSession, cors: list[tuple[str, str]],
              now: float) -> RequestResult:
        if len(request.body) > self.max_payload:
            # polling.ts onDataRequest: 413 and an empty body; the session is not closed.
            # python-engineio answers 400 and closes the session.
            return RequestResult(HTTPReply(413, (("Content-Length", "0"),) + tuple(cors)), session)
        content_type = request.headers.media_type()
        try:
            if content_type == "application/octet-stream":
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "v4 payloads are text")
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            outputs = session.fail("parse error")
            self._forget_if_closed(session)
            return RequestResult(self.error_reply(EngineIOError(3), cors), session, tuple(outputs))
        outputs = session.receive_payload(text, now)
        self._forget_if_closed(session)
        if session.close_reason == "parse error":
            # the reference destroys the POST's connection; a 400 says the same, politely
            return RequestResult(self.error_reply(EngineIOError(3), cors), session, tuple(outputs))
        # polling.ts onDataRequest: "ok" as text/html (python-engineio: "OK" as text/plain)
        reply = HTTPReply(200, (("Content-Type", "text/html"), ("Content-Length", "2")) + tuple(cors), b"ok")
        return RequestResult(reply, session, tuple(outputs))

    # --- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [t for s in self.sessions.values() if (t := s.next_deadline()) is not None]
        return min(times) if times else None

    def tick(self, now: float) -> dict[str, list[Output]]:
        """Run every session's due timers; closed sessions are forgotten."""
        results = {}
        for sid, session in list(self.sessions.items()):
            outputs = session.tick(now)
            if outputs:
                results[sid] = outputs
            self._forget_if_closed(session)
        return results

    def _forget_if_closed(self, session: ServerSession) -> None:
        if session.state is EngineState.CLOSED:
            self.sessions.pop(session.sid, None)

    # --- replies ---------------------------------------------------------------------------

    def poll_reply(self, packets: Iterable[Packet], cors: Sequence[tuple[str, str]] = ()) -> HTTPReply:
        """The 200 answer to a GET: the payload as ``text/plain; charset=UTF-8``."""
        body = encode_payload(packets).encode("utf-8")
        headers = (("Content-Type", TEXT_PLAIN), ("Content-Length", str(len(body)))) + tuple(cors)
        return HTTPReply(200, headers, body)

    def compress(self, reply: HTTPReply, request: Request) -> HTTPReply:
        """``reply`` (a poll's 200) gzip- or deflate-encoded if it has at least
        ``compression_threshold`` bytes and the GET's ``Accept-Encoding`` allows it (polling.ts
        ``doWrite``); else ``reply`` itself."""
        if not self.http_compression or len(reply.body) < self.compression_threshold:
            return reply
        encoding = http_compression_.choose_encoding(_accept_encoding(request))
        if encoding is None:
            return reply
        body = http_compression_.encode(reply.body, encoding)
        headers = [(name, str(len(body)) if name == "Content-Length" else value)
                   for name, value in reply.headers]
        headers.insert(1, ("Content-Encoding", encoding))  # after Content-Type, as Node writes
        return HTTPReply(reply.status, tuple(headers), body)

    def answer_held_poll(self, request: Request, packets: Iterable[Packet]) -> HTTPReply:
        """The reply for a GET held earlier (CORS and compression from that request)."""
        return self.compress(self.poll_reply(packets, self._cors_headers(request) or []), request)

    def error_reply(self, error: EngineIOError, cors: Sequence[tuple[str, str]] = ()) -> HTTPReply:
        """``{"code":N,"message":"..."}`` as application/json, 400 (403 for Forbidden)."""
        body = json.dumps(error.to_json(), separators=(",", ":")).encode("utf-8")
        headers = (("Content-Type", "application/json"), ("Content-Length", str(len(body)))) + tuple(cors)
        return HTTPReply(error.status, headers, body)

    def upgrade_error_reply(self, error: EngineIOError, cors: Sequence[tuple[str, str]] = ()) -> HTTPReply:
        """A refused WebSocket request: the reference (server.ts ``abortUpgrade``) writes 400
        whatever the code, ``text/html``, the bare message, and closes the connection."""
        body = error.message.encode("utf-8")
        return HTTPReply(400, (("Connection", "close"), ("Content-Type", "text/html"),
                               ("Content-Length", str(len(body)))), body)

    def _refusal_reply(self, refusal: RefuseRequest, cors: Sequence[tuple[str, str]]) -> HTTPReply:
        if refusal.error is not None:
            return self.error_reply(refusal.error, cors)
        return HTTPReply(refusal.status, (("Content-Length", "0"),) + tuple(cors))

    # --- CORS --------------------------------------------------------------------------------

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        if same_origin(origin, host):
            return True  # the page this server (or its proxy) served itself
        allowed = self.cors_allowed_origins
        if allowed == "*":
            return True
        if isinstance(allowed, str):
            return origin == allowed
        return origin in (allowed or ())

    def _cors_headers(self, request: Request) -> list[tuple[str, str]] | None:
        """The CORS fields for a reply; None if the request's Origin is refused.

        A request without ``Origin`` is not from a browser page (a browser always sends it on
        WebSocket requests and cross-origin fetches): nothing to check.  A page of this very
        origin needs no CORS fields.
        """
        origin = request.headers.get("origin")
        if origin is None:
            return []
        if not self._origin_allowed(origin, request.headers.get("host")):
            return None
        if self.cors_allowed_origins is None:
            return []
        headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if self.cors_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def _preflight(self, request: Request, cors: list[tuple[str, str]]) -> HTTPReply:
        headers = list(cors) + [("Access-Control-Allow-Methods", "GET, POST, OPTIONS")]
        asked = request.headers.get("access-control-request-headers")
        if asked:
            headers.append(("Access-Control-Allow-Headers", asked))
        return HTTPReply(204, tuple(headers))


def _accept_encoding(request: Request) -> str | None:
    """The request's ``Accept-Encoding`` field, its lines joined (RFC 9110 §5.3)."""
    values = request.headers.get_all("accept-encoding")
    return ", ".join(values) if values else None


def _parse_query(query: str) -> dict[str, str]:
    """The first value of each query parameter (``?EIO=4&transport=polling&t=N8hyd6w``)."""
    values: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        values.setdefault(key, value)
    return values


def plain_reply(status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> HTTPReply:
    """A short text/plain answer (404, 405, ...) with its Content-Length."""
    body = text.encode("utf-8")
    return HTTPReply(status, (("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body))), *headers), body)
