"""The routing decision of a load balancer, sans-I/O: which backend gets this request?

A Socket.IO cluster is several server processes behind one address.  An Engine.IO session lives
in *one* process (its buffers, its timers, its sid); a long-polling client sends many HTTP
requests, each on whatever TCP connection it has, so every request of a session must reach the
process that holds it - or that process answers ``400 {"code":1,"message":"Session ID unknown"}``.
This module holds the policies a balancer may follow, with no sockets, so a notebook or a lab can
feed it requests by hand and look at the choices::

    router = Router(3, "sid")
    choice = router.choose(handshake_request, client_host="127.0.0.1")   # round-robin: 0
    router.learn(handshake_request, choice, handshake_response)  # reads sid "AbC" from "0{...}"
    router.choose(next_request_with_sid_AbC, "127.0.0.1").backend       # 0 again: sticky

Policies (``policy`` and, for requests that ask for a WebSocket, ``upgrade_policy``):

``round-robin``  backend 0, 1, 2, 0, ... whatever the request (one shared counter);
``random``       a backend drawn from ``rng`` (seed it for reproducible runs);
``sid``          the Engine.IO ``sid`` query parameter: a request without one (the handshake)
                 goes round-robin, and :meth:`Router.learn` reads the sid from the open packet
                 in its answer; a known sid goes where its handshake went.  An unknown sid
                 (learned by no one, e.g. after the balancer restarted) goes round-robin;
``cookie``       a cookie naming the backend (HAProxy's ``cookie SERVERID insert``): a request
                 without it goes round-robin, and the answer gets ``Set-Cookie`` with the name
                 of the backend that answered; the client's cookie jar does the rest;
``ip-hash``      the client's address, hashed: one address, one backend (nginx's ``ip_hash``
                 hashes only the first three bytes of an IPv4 address; we hash all of it).

The last three are *sticky*: every request of a session reaches the same backend.  Hashing the
sid itself (``hash $arg_sid``) is not a policy here because it cannot work: the handshake has
no sid yet, so it lands on one backend and the sid's hash points at another.
"""

from __future__ import annotations

import random
import zlib
from collections import OrderedDict
from http.cookies import CookieError, SimpleCookie
from typing import NamedTuple
from urllib.parse import parse_qs

from ..errors import LablibError
from ..http import Request, Response

__all__ = ["POLICIES", "STICKY_POLICIES", "Choice", "Router"]

POLICIES = ("round-robin", "random", "sid", "cookie", "ip-hash")
STICKY_POLICIES = ("sid", "cookie", "ip-hash")
DEFAULT_COOKIE = "SERVERID"   #: not "io": engine.io (Node) names its own sid cookie "io"


class Choice(NamedTuple):
    """Where one request goes, and why (a named tuple: ``backend, reason = choice``)."""

    backend: int   #: index into the balancer's list of backends
    reason: str    #: the rule that decided: "round-robin", "random", "sid", "cookie", "ip-hash"


def query_sid(request: Request) -> str | None:
    """The Engine.IO ``sid`` query parameter of a request, or None."""
    values = parse_qs(request.query).get("sid")
    return values[0] if values else None


def wants_websocket(request: Request) -> bool:
    """Does the request ask to switch to WebSocket (RFC 6455 §4.1: ``Upgrade: websocket``)?"""
    return "websocket" in request.headers.tokens("upgrade")


def open_packet_sid(response: Response) -> str | None:
    """The sid in a polling handshake's answer (``200``, body ``0{"sid":...}``), or None."""
    from ..engineio.packets import OpenInfo, PacketType, decode_payload
    if response.status != 200 or not response.body.startswith(b"0"):
        return None
    try:
        first = decode_payload(response.body.decode("utf-8"))[0]
        if first.type is not PacketType.OPEN:
            return None
        return OpenInfo.from_json(first.data).sid
    except (UnicodeDecodeError, LablibError, TypeError, ValueError):
        return None


class Router:
    """Chooses a backend for each request (:meth:`choose`) and learns from answers (:meth:`learn`).

    ``backends``: how many there are (they are numbered from 0).  ``max_sessions`` bounds the
    sid table of the ``sid`` policy (the oldest entries are forgotten first).  ``names`` are the
    cookie values naming each backend (default ``s0``, ``s1``, ...).
    """

    def __init__(self, backends: int, policy: str = "round-robin", *,
                 upgrade_policy: str | None = None, rng: random.Random | None = None,
                 cookie_name: str = DEFAULT_COOKIE, names: list[str] | None = None,
                 max_sessions: int = 100_000) -> None:
        if backends < 1:
            raise ValueError("a balancer needs at least one backend")
        for name in (policy, upgrade_policy or policy):
            if name not in POLICIES:
                raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
        self.backends = backends
        self.policy = policy
        self.upgrade_policy = upgrade_policy or policy
        self.rng = rng if rng is not None else random.Random()
        self.cookie_name = cookie_name
        self.names = names or [f"s{i}" for i in range(backends)]
        if len(self.names) != backends or len(set(self.names)) != backends:
            raise ValueError("one distinct cookie name per backend")
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[str, int] = OrderedDict()   #: sid -> backend (``sid``)
        self._next = 0   # the round-robin counter

    # --- choosing -------------------------------------------------------------------------------

    def choose(self, request: Request, client_host: str) -> Choice:
        """The backend for ``request`` from ``client_host``, by the policy that applies to it."""
        policy = self.upgrade_policy if wants_websocket(request) else self.policy
        return self._by(policy, request, client_host)

    def choose_connection(self, client_host: str) -> Choice:
        """The backend for a whole TCP connection (a balancer that does not read HTTP)."""
        if self.policy not in ("round-robin", "random", "ip-hash"):
            raise ValueError(f"policy {self.policy!r} reads HTTP requests; a TCP balancer "
                             "can only use round-robin, random or ip-hash")
        return self._by(self.policy, None, client_host)

    def _by(self, policy: str, request: Request | None, client_host: str) -> Choice:
        if policy == "sid":
            backend = self.sessions.get(query_sid(request) or "")
            if backend is not None:
                return Choice(backend, "sid")
        elif policy == "cookie":
            backend = self._cookie_backend(request)
            if backend is not None:
                return Choice(backend, "cookie")
        elif policy == "ip-hash":
            return Choice(zlib.crc32(client_host.encode()) % self.backends, "ip-hash")
        elif policy == "random":
            return Choice(self.rng.randrange(self.backends), "random")
        return self.round_robin()

    def round_robin(self) -> Choice:
        backend, self._next = self._next, (self._next + 1) % self.backends
        return Choice(backend, "round-robin")

    def _cookie_backend(self, request: Request) -> int | None:
        for header in request.headers.get_all("cookie"):
            jar = SimpleCookie()
            try:
                jar.load(header)
            except CookieError:
                continue
            morsel = jar.get(self.cookie_name)
            if morsel is not None and morsel.value in self.names:
                return self.names.index(morsel.value)
        return None

    # --- learning from the answer ------------------------------------------------------------------

    def learn(self, request: Request, choice: Choice, response: Response) -> list[tuple[str, str]]:
        """Take note of ``response`` (the backend's answer); return header fields to add to it.

        ``sid``: a handshake's open packet binds its sid to the backend that answered.
        ``cookie``: a request without our cookie gets one naming the backend.
        """
        policy = self.upgrade_policy if wants_websocket(request) else self.policy
        if policy == "sid" and query_sid(request) is None:
            sid = open_packet_sid(response)
            if sid is not None:
                self.sessions[sid] = choice.backend
                self.sessions.move_to_end(sid)
                while len(self.sessions) > self.max_sessions:
                    self.sessions.popitem(last=False)
        if policy == "cookie" and choice.reason != "cookie":
            value = f"{self.cookie_name}={self.names[choice.backend]}; Path=/; HttpOnly; SameSite=Lax"
            return [("Set-Cookie", value)]
        return []
