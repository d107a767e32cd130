"""The sans-I/O server and client cores wired back to back: no sockets, no clock, exact messages."""

from __future__ import annotations

import random
from collections import deque

import pytest

from lablib.engineio.server_core import generate_sid
from lablib.errors import LocalProtocolError
from lablib.socketio.backoff import backoff_delay
from lablib.socketio.client_core import ClientCore, ManagerState, NamespaceState
from lablib.socketio.events import (AckCancelled, AckReceived, AckTimedOut, CloseEngine,
                                    ConnectError, Connected, ConnectReceived, Disconnected,
                                    EventReceived, OpenEngine, ReconnectAttempt, Reconnected,
                                    ReconnectError, ReconnectFailed, ReconnectScheduled, Send,
                                    Undelivered)
from lablib.events import Event
from lablib.socketio.server_core import ServerCore


class Harness:
    """Routes the server's Send to the right client core and each client's Send to the server.

    Every message crossing is logged in ``wire`` as ``(direction, client name, message)``.
    ``decide(request)`` answers ConnectReceived: True accepts, ``(message, data)`` refuses,
    None leaves it pending.  OpenEngine opens a new Engine.IO connection (E1, E2, ...) at once
    unless ``fail_opens`` holds an error to report instead.
    """

    def __init__(self, server: ServerCore, decide=lambda request: True) -> None:
        self.server = server
        self.decide = decide
        self.now = 0.0
        self.clients: dict[str, ClientCore] = {}
        self.eio_of: dict[str, str] = {}
        self.name_of: dict[str, str] = {}
        self.server_events: list[Event] = []
        self.client_events: dict[str, list[Event]] = {}
        self.wire: list[tuple[str, str, str | bytes]] = []
        self.pending: list[ConnectReceived] = []
        self.fail_opens: deque[str] = deque()
        self._eio_count = 0
        self._queue: deque = deque()

    def client(self, name: str, **options) -> ClientCore:
        options.setdefault("rng", random.Random(99))
        self.clients[name] = ClientCore(**options)
        self.client_events[name] = []
        return self.clients[name]

    # --- driving ---------------------------------------------------------------------------

    def c(self, name: str, outputs) -> list:
        """Run a client core call's outputs to quiescence; returns that client's new events."""
        before = len(self.client_events[name])
        self._queue.append(("client", name, outputs))
        self._drain()
        return self.client_events[name][before:]

    def s(self, outputs) -> list:
        """Run a server core call's outputs; returns the server's new events."""
        before = len(self.server_events)
        self._queue.append(("server", None, outputs))
        self._drain()
        return self.server_events[before:]

    def _drain(self) -> None:
        while self._queue:
            side, name, outputs = self._queue.popleft()
            for output in outputs:
                if side == "client":
                    self._client_output(name, output)
                else:
                    self._server_output(output)

    def _client_output(self, name: str, output) -> None:
        client = self.clients[name]
        if isinstance(output, Send):
            eio = self.eio_of[name]
            for message in output.messages:
                self.wire.append(("c>s", name, message))
                self._queue.append(("server", None, self.server.receive(eio, message, self.now)))
        elif isinstance(output, OpenEngine):
            if self.fail_opens:
                self._queue.append(("client", name, client.engine_failed(self.fail_opens.popleft(), self.now)))
                return
            self._eio_count += 1
            eio = f"E{self._eio_count}"
            self.eio_of[name], self.name_of[eio] = eio, name
            self._queue.append(("server", None, self.server.engine_opened(eio, self.now)))
            self._queue.append(("client", name, client.engine_opened(self.now)))
        elif isinstance(output, CloseEngine):
            eio = self.eio_of.pop(name, None)
            if eio is not None:
                self.name_of.pop(eio)
                self._queue.append(("server", None,
                                    self.server.engine_closed(eio, "transport close", self.now)))
        else:
            self.client_events[name].append(output)

    def _server_output(self, output) -> None:
        if isinstance(output, Send):
            name = self.name_of.get(output.eio_sid)
            if name is None:
                return
            for message in output.messages:
                self.wire.append(("s>c", name, message))
                self._queue.append(("client", name, self.clients[name].receive(message, self.now)))
        elif isinstance(output, CloseEngine):
            self.server_events.append(output)
            name = self.name_of.pop(output.eio_sid, None)
            if name is not None:
                self.eio_of.pop(name)
                self._queue.append(("client", name,
                                    self.clients[name].engine_closed("transport close", self.now)))
        elif isinstance(output, ConnectReceived):
            self.server_events.append(output)
            answer = self.decide(output)
            if answer is True:
                self._queue.append(("server", None, self.server.accept(output.eio_sid, output.namespace)))
            elif answer is None:
                self.pending.append(output)
            else:
                message, data = answer
                self._queue.append(("server", None,
                                    self.server.refuse(output.eio_sid, output.namespace, message, data)))
        else:
            self.server_events.append(output)

    def cut(self, name: str, reason: str = "transport close") -> list:
        """The connection dies under both ends (as when the relay drops it)."""
        eio = self.eio_of.pop(name)
        self.name_of.pop(eio)
        self.s(self.server.engine_closed(eio, reason, self.now))
        return self.c(name, self.clients[name].engine_closed(reason, self.now))

    def advance(self, name: str, seconds: float) -> list:
        self.now += seconds
        self.s(self.server.tick(self.now))
        return self.c(name, self.clients[name].tick(self.now))

    def sent(self, name: str, direction: str) -> list:
        return [m for d, n, m in self.wire if n == name and d == direction]


def sids(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [generate_sid(rng) for _ in range(count)]


@pytest.fixture
def h():
    return Harness(ServerCore(namespaces=("/", "/admin"), rng=random.Random(1)))


def connected(h: Harness, name: str = "alice", namespaces=("/",), auth=None) -> ClientCore:
    client = h.client(name) if name not in h.clients else h.clients[name]
    for ns in namespaces:
        h.c(name, client.connect(ns, auth))
    assert all(client.namespace_state(ns) is NamespaceState.CONNECTED for ns in namespaces)
    return client


# --- connecting to a namespace ----------------------------------------------------------------------

def test_connect_with_auth_accepted(h):
    client = h.client("alice")
    assert client.connect("/", {"token": "abc"}) == [OpenEngine()]
    h.c("alice", [OpenEngine()])
    sid = sids(1, 1)[0]
    assert h.sent("alice", "c>s") == ['0{"token":"abc"}']
    assert h.sent("alice", "s>c") == ['0{"sid":"%s"}' % sid]
    assert h.server_events == [ConnectReceived("E1", "/", sid, {"token": "abc"})]
    assert h.client_events["alice"] == [Connected("/", sid)]
    assert client.sid("/") == sid
    assert h.server.sids("/") == [sid]
    assert h.server.rooms(sid) == [sid]   # its own room
    assert h.server.auth_of(sid) == {"token": "abc"}
    assert h.server.eio_sid_of(sid) == "E1"


def test_connect_without_auth_sends_a_bare_connect(h):
    connected(h)
    assert h.sent("alice", "c>s") == ["0"]


def test_connect_refused_with_message_and_data():
    h = Harness(ServerCore(rng=random.Random(1)), decide=lambda r: ("Not authorized", {"retry": False}))
    client = h.client("alice")
    events = h.c("alice", client.connect("/", {"token": "bad"}))
    assert h.sent("alice", "s>c") == ['4{"message":"Not authorized","data":{"retry":false}}']
    assert events == [ConnectError("/", "Not authorized", {"retry": False})]
    # the only namespace was refused: the connection closes, no reconnection
    assert client.state is ManagerState.CLOSED and client.next_deadline() is None
    assert client.namespace_state("/") is NamespaceState.IDLE
    assert h.eio_of == {} and h.server.sids("/") == []


def test_refusal_without_data_leaves_it_out():
    h = Harness(ServerCore(rng=random.Random(1)), decide=lambda r: ("Connection rejected by server", None))
    h.c("alice", h.client("alice").connect())
    assert h.sent("alice", "s>c") == ['4{"message":"Connection rejected by server"}']


def test_unknown_namespace(h):
    client = connected(h)
    events = h.c("alice", client.connect("/nope"))
    assert h.sent("alice", "s>c")[-1] == '4/nope,{"message":"Invalid namespace"}'
    assert events == [ConnectError("/nope", "Invalid namespace")]
    assert client.namespace_state("/") is NamespaceState.CONNECTED   # "/" is unaffected


def test_any_namespace_with_star():
    h = Harness(ServerCore(namespaces="*", rng=random.Random(1)))
    connected(h, namespaces=("/whatever",))
    assert h.server.sids("/whatever") == sids(1, 1)


def test_two_namespaces_share_one_engineio_connection(h):
    client = h.client("alice")
    assert client.connect("/", {"a": 1}) == [OpenEngine()]
    assert client.connect("/admin", {"b": 2}) == []     # the connection is already being opened
    h.c("alice", [OpenEngine()])
    root, admin = sids(1, 2)
    assert h.sent("alice", "c>s") == ['0{"a":1}', '0/admin,{"b":2}']
    assert h.sent("alice", "s>c") == ['0{"sid":"%s"}' % root, '0/admin,{"sid":"%s"}' % admin]
    assert h.client_events["alice"] == [Connected("/", root), Connected("/admin", admin)]
    assert h.eio_of == {"alice": "E1"}
    assert h.server.eio_sid_of(root) == h.server.eio_sid_of(admin, "/admin") == "E1"
    # events are kept apart by namespace
    h.c("alice", client.emit("hi", ["admin"], namespace="/admin"))
    assert h.sent("alice", "c>s")[-1] == '2/admin,["hi","admin"]'
    assert h.server_events[-1] == EventReceived("/admin", admin, "hi", ("admin",))
    h.s(h.server.emit("news", ["all admins"], namespace="/admin"))
    assert h.sent("alice", "s>c")[-1] == '2/admin,["news","all admins"]'
    assert h.client_events["alice"][-1] == EventReceived("/admin", admin, "news", ("all admins",))
    # leaving one namespace keeps the connection for the other
    h.c("alice", client.disconnect("/admin"))
    assert h.sent("alice", "c>s")[-1] == "1/admin,"
    assert h.eio_of == {"alice": "E1"} and h.server.sids("/") == [root]


def test_connect_again_on_the_same_connection_is_refused(h):
    connected(h)
    eio = h.eio_of["alice"]
    events = h.s(h.server.receive(eio, "0", h.now))
    assert events == []
    assert h.sent("alice", "s>c")[-1] == '4{"message":"Already connected"}'


def test_a_pending_connect_can_be_answered_later():
    h = Harness(ServerCore(rng=random.Random(1)), decide=lambda r: None)
    client = h.client("alice")
    h.c("alice", client.connect())
    (request,) = h.pending
    assert client.namespace_state() is NamespaceState.CONNECTING
    h.c("alice", client.emit("early"))                       # buffered until connected
    assert client.buffered() == 1
    h.s(h.server.accept(request.eio_sid, request.namespace))
    assert h.sent("alice", "c>s") == ["0", '2["early"]']
    assert h.server.accept(request.eio_sid, request.namespace) == []   # answered already
    assert h.server.refuse("E9", "/") == []                             # no such connection


# --- events and acknowledgements -------------------------------------------------------------------

def test_events_both_ways(h):
    client = connected(h)
    sid = client.sid()
    h.c("alice", client.emit("hello", ["world", 1, {"x": [True, None]}]))
    assert h.sent("alice", "c>s")[-1] == '2["hello","world",1,{"x":[true,null]}]'
    assert h.server_events[-1] == EventReceived("/", sid, "hello", ("world", 1, {"x": [True, None]}))
    h.s(h.server.emit("hey", ["Jude"], to=sid))
    assert h.sent("alice", "s>c")[-1] == '2["hey","Jude"]'
    assert h.client_events["alice"][-1] == EventReceived("/", sid, "hey", ("Jude",))


def test_binary_attachments_both_ways(h):
    client = connected(h)
    sid = client.sid()
    h.c("alice", client.emit("upload", [{"name": "a", "parts": [b"\x01\x02", b"\x03"]}]))
    assert h.sent("alice", "c>s")[-3:] == [
        '52-["upload",{"name":"a","parts":[{"_placeholder":true,"num":0},'
        '{"_placeholder":true,"num":1}]}]', b"\x01\x02", b"\x03"]
    assert h.server_events[-1] == EventReceived(
        "/", sid, "upload", ({"name": "a", "parts": [b"\x01\x02", b"\x03"]},))
    h.s(h.server.emit("blob", [b"\xff"], to=sid))
    assert h.sent("alice", "s>c")[-2:] == ['51-["blob",{"_placeholder":true,"num":0}]', b"\xff"]
    assert h.client_events["alice"][-1] == EventReceived("/", sid, "blob", (b"\xff",))


def test_client_asks_server_acknowledges(h):
    client = connected(h)
    sid = client.sid()
    ack_id, out = client.emit_with_ack("add", [2, 3])
    h.c("alice", out)
    assert ack_id == 0
    assert h.sent("alice", "c>s")[-1] == '20["add",2,3]'
    assert h.server_events[-1] == EventReceived("/", sid, "add", (2, 3), ack_id=0)
    h.s(h.server.ack(sid, 0, [5]))
    assert h.sent("alice", "s>c")[-1] == "30[5]"
    assert h.client_events["alice"][-1] == AckReceived("/", sid, 0, (5,))
    assert client.emit_with_ack("again")[0] == 1          # ids count up per namespace


def test_server_asks_client_acknowledges_with_binary(h):
    client = connected(h)
    sid = client.sid()
    ack_id, out = h.server.emit_with_ack(sid, "ping", ["?"])
    h.s(out)
    assert ack_id == 0
    assert h.sent("alice", "s>c")[-1] == '20["ping","?"]'
    assert h.client_events["alice"][-1] == EventReceived("/", sid, "ping", ("?",), ack_id=0)
    h.c("alice", client.ack(0, ["pong", b"\x00"]))
    assert h.sent("alice", "c>s")[-2:] == ['61-0["pong",{"_placeholder":true,"num":0}]', b"\x00"]
    assert h.server_events[-1] == AckReceived("/", sid, 0, ("pong", b"\x00"))


def test_server_ack_ids_count_per_namespace_from_zero(h):
    a = connected(h, "alice")
    b = connected(h, "bob")
    assert h.server.emit_with_ack(a.sid(), "x")[0] == 0
    assert h.server.emit_with_ack(b.sid(), "x")[0] == 1
    assert h.server.emit_with_ack(a.sid(), "x")[0] == 2


def test_unknown_ack_is_ignored(h):
    client = connected(h)
    assert h.s(h.server.receive(h.eio_of["alice"], "37[]", h.now)) == []
    assert h.c("alice", client.receive("37[]", h.now)) == []


def test_ack_timeout_on_the_server_with_a_fake_clock(h):
    client = connected(h)
    sid = client.sid()
    ack_id, out = h.server.emit_with_ack(sid, "slow", timeout=5.0, now=h.now)
    h.s(out)
    assert h.server.next_deadline() == 5.0
    assert h.advance("alice", 4.999) == [] and h.server_events[-1] != AckTimedOut("/", sid, 0)
    h.advance("alice", 0.001)
    assert h.server_events[-1] == AckTimedOut("/", sid, ack_id)
    assert h.server.next_deadline() is None
    h.c("alice", client.ack(ack_id, ["late"]))               # a late ACK is ignored
    assert h.server_events[-1] == AckTimedOut("/", sid, ack_id)


def test_ack_timeout_on_the_client_with_a_fake_clock(h):
    client = connected(h)
    sid = client.sid()
    ack_id, out = client.emit_with_ack("slow", timeout=2.5, now=h.now)
    h.c("alice", out)
    assert client.next_deadline() == 2.5
    assert h.advance("alice", 2.5) == [AckTimedOut("/", sid, ack_id)]
    h.s(h.server.ack(sid, ack_id, ["late"]))                 # a late ACK is ignored
    assert h.sent("alice", "s>c")[-1] == '30["late"]'
    assert h.client_events["alice"][-1] == AckTimedOut("/", sid, ack_id)


def test_answered_ack_cancels_its_timeout(h):
    client = connected(h)
    sid = client.sid()
    ack_id, out = h.server.emit_with_ack(sid, "quick", timeout=1.0, now=h.now)
    h.s(out)
    h.c("alice", client.ack(ack_id, []))
    assert h.server_events[-1] == AckReceived("/", sid, ack_id, ())
    assert h.server.next_deadline() is None
    assert h.server.tick(10.0) == []


def test_reserved_event_names_cannot_be_emitted(h):
    client = connected(h)
    with pytest.raises(LocalProtocolError, match="reserved"):
        client.emit("disconnect")
    with pytest.raises(LocalProtocolError, match="reserved"):
        h.server.emit("connect")


# --- rooms and broadcast ----------------------------------------------------------------------------

def test_rooms_with_three_clients(h):
    a, b, c = (connected(h, name) for name in ("alice", "bob", "carol"))
    for client in (a, c):
        h.server.enter_room(client.sid(), "lobby")
    assert h.server.rooms(a.sid()) == [a.sid(), "lobby"]
    h.s(h.server.emit("msg", ["to the lobby"], to="lobby"))
    received = {name: [e for e in h.client_events[name] if isinstance(e, EventReceived)]
                for name in ("alice", "bob", "carol")}
    assert [len(received[n]) for n in ("alice", "bob", "carol")] == [1, 0, 1]
    h.s(h.server.emit("msg", ["not the sender"], to="lobby", skip_sids=a.sid()))
    assert h.sent("carol", "s>c")[-1] == '2["msg","not the sender"]'
    assert h.sent("alice", "s>c")[-1] == '2["msg","to the lobby"]'
    outputs = h.server.emit("msg", ["everyone but bob"], skip_sids=[b.sid()])
    assert [o.eio_sid for o in outputs] == [h.eio_of["alice"], h.eio_of["carol"]]
    assert outputs[0].messages is outputs[1].messages            # encoded once
    h.server.leave_room(c.sid(), "lobby")
    assert h.server.adapter().members("lobby") == [a.sid()]
    h.c("alice", a.disconnect())
    assert h.server.adapter().members("lobby") == []             # gone from every room


# --- disconnection ---------------------------------------------------------------------------------

def test_client_disconnects(h):
    client = connected(h)
    sid = client.sid()
    ack_id, out = h.server.emit_with_ack(sid, "question")
    h.s(out)
    events = h.c("alice", client.disconnect())
    assert h.sent("alice", "c>s")[-1] == "1"
    assert events == [Disconnected("/", sid, "io client disconnect")]
    assert h.server_events[-2:] == [AckCancelled("/", sid, ack_id, "client namespace disconnect"),
                                    Disconnected("/", sid, "client namespace disconnect")]
    assert client.state is ManagerState.CLOSED and h.eio_of == {}   # last namespace: closed
    assert client.next_deadline() is None                          # and no reconnection


def test_server_disconnects(h):
    client = connected(h)
    sid = client.sid()
    ack_id, out = client.emit_with_ack("question")
    h.c("alice", out)
    server_events = h.s(h.server.disconnect(sid))
    assert h.sent("alice", "s>c")[-1] == "1"
    assert server_events == [Disconnected("/", sid, "server namespace disconnect")]
    assert h.client_events["alice"][-2:] == [AckCancelled("/", sid, ack_id, "io server disconnect"),
                                             Disconnected("/", sid, "io server disconnect")]
    assert client.state is ManagerState.CLOSED and client.next_deadline() is None


def test_server_disconnects_and_closes(h):
    client = connected(h, namespaces=("/", "/admin"))
    root, admin = client.sid("/"), client.sid("/admin")
    events = h.s(h.server.disconnect(root, close=True))
    assert h.sent("alice", "s>c")[-2:] == ["1", "1/admin,"]
    assert events == [Disconnected("/", root, "server namespace disconnect"),
                      Disconnected("/admin", admin, "server namespace disconnect"),
                      CloseEngine(eio_sid="E1", reason="forced server close")]
    assert client.state is ManagerState.CLOSED


# --- what the server does with bad input --------------------------------------------------------------

def test_garbage_closes_the_connection(h):
    client = connected(h)
    sid = client.sid()
    events = h.s(h.server.receive("E1", "2{not json", h.now))
    assert events == [Disconnected("/", sid, "parse error"), CloseEngine(eio_sid="E1", reason="parse error")]


def test_first_packet_must_be_connect(h):
    h.s(h.server.engine_opened("X", h.now))
    assert h.s(h.server.receive("X", '2["early"]', h.now)) == [CloseEngine(eio_sid="X", reason="protocol error")]


def test_connect_error_from_a_client_closes_it(h):
    connected(h)
    events = h.s(h.server.receive("E1", '4{"message":"?"}', h.now))
    assert events[-1] == CloseEngine(eio_sid="E1", reason="protocol error")


def test_packets_for_a_namespace_not_joined_are_ignored(h):
    connected(h)
    assert h.s(h.server.receive("E1", '2/admin,["x"]', h.now)) == []
    assert h.s(h.server.receive("E1", "1/admin,", h.now)) == []


def test_connect_timeout(h):
    h.s(h.server.engine_opened("X", 0.0))
    assert h.server.next_deadline() == 45.0
    assert h.server.tick(44.9) == []
    assert h.server.tick(45.0) == [CloseEngine(eio_sid="X", reason="connect timeout")]


def test_messages_after_close_are_ignored(h):
    assert h.server.receive("nobody", "0", 0.0) == []
    assert h.server.engine_closed("nobody", "transport close", 0.0) == []


# --- reconnection ----------------------------------------------------------------------------------

def test_reconnection_after_the_connection_is_cut(h):
    client = connected(h, auth={"token": "t"})
    sid1 = client.sid()
    lost_ack, out = client.emit_with_ack("sent before the cut")
    h.c("alice", out)
    events = h.cut("alice")
    delay = backoff_delay(0, random.Random(99).random())
    assert events == [AckCancelled("/", sid1, lost_ack, "transport close"),
                      Disconnected("/", sid1, "transport close"),
                      ReconnectScheduled(1, delay)]
    assert client.next_deadline() == pytest.approx(delay / 1000)
    # emits while disconnected wait in the send buffer; volatile ones are dropped
    h.c("alice", client.emit("buffered", [1]))
    kept_ack, out = client.emit_with_ack("buffered with ack", [2])
    h.c("alice", out)
    h.c("alice", client.emit("volatile", volatile=True))
    assert client.buffered() == 2
    assert h.advance("alice", delay / 1000 - 0.001) == []
    events = h.advance("alice", 0.001)
    sid2 = client.sid()
    assert events == [ReconnectAttempt(1), Reconnected(1), Connected("/", sid2)]
    assert sid2 != sid1
    assert h.eio_of["alice"] == "E2"
    assert h.sent("alice", "c>s")[-3:] == ['0{"token":"t"}', '2["buffered",1]',
                                          '21["buffered with ack",2]']
    assert client.buffered() == 0
    h.s(h.server.ack(sid2, kept_ack, ["ok"]))
    assert h.client_events["alice"][-1] == AckReceived("/", sid2, kept_ack, ("ok",))


def test_reconnection_attempts_back_off_and_give_up(h):
    client = connected(h)
    client.reconnection_attempts = 3
    h.fail_opens.extend(["refused", "refused", "refused"])
    rands = random.Random(99)
    expected = [backoff_delay(n, rands.random()) for n in range(3)]
    events = h.cut("alice")
    assert events[-1] == ReconnectScheduled(1, expected[0])
    seen = []
    for attempt in (1, 2, 3):
        seen += h.advance("alice", client.next_deadline() - h.now)
    assert seen == [
        ReconnectAttempt(1), ConnectError("/", "refused"), ReconnectError(1, "refused"),
        ReconnectScheduled(2, expected[1]),
        ReconnectAttempt(2), ConnectError("/", "refused"), ReconnectError(2, "refused"),
        ReconnectScheduled(3, expected[2]),
        ReconnectAttempt(3), ConnectError("/", "refused"), ReconnectError(3, "refused"),
        ReconnectFailed(),
    ]
    assert client.state is ManagerState.CLOSED and client.next_deadline() is None
    # connect() starts over: the namespace still wants to be connected
    assert h.c("alice", client.connect())[-1] == Connected("/", client.sid())


def test_backoff_is_reset_by_a_successful_reconnection(h):
    client = connected(h)
    h.fail_opens.append("refused")
    h.cut("alice")
    h.advance("alice", client.next_deadline() - h.now)            # attempt 1 fails
    events = h.advance("alice", client.next_deadline() - h.now)   # attempt 2 succeeds
    assert events[:2] == [ReconnectAttempt(2), Reconnected(2)]
    assert client.backoff.attempts == 0
    assert h.cut("alice")[-1].attempt == 1                        # a new outage starts over


def test_no_reconnection_when_disabled(h):
    client = h.client("alice", reconnection=False)
    h.c("alice", client.connect())
    assert h.cut("alice")[-1] == Disconnected("/", client_sid(h, "alice"), "transport close")
    assert client.next_deadline() is None and client.state is ManagerState.CLOSED
    h.c("alice", client.emit("kept"))
    assert client.connect() == [OpenEngine()]                     # reconnect by hand
    h.c("alice", [OpenEngine()])
    assert h.sent("alice", "c>s")[-2:] == ["0", '2["kept"]']


def test_first_connection_failure_is_retried_like_socket_io_client(h):
    client = h.client("alice")
    h.fail_opens.append("connection refused")
    events = h.c("alice", client.connect())
    assert events == [ConnectError("/", "connection refused"),
                      ReconnectScheduled(1, backoff_delay(0, random.Random(99).random()))]
    events = h.advance("alice", client.next_deadline())
    assert events[:3] == [ReconnectAttempt(1), Reconnected(1), Connected("/", client.sid())]


def client_sid(h: Harness, name: str) -> str:
    return next(e.sid for e in reversed(h.client_events[name]) if isinstance(e, Connected))


def test_server_parse_error_makes_the_client_reconnect(h):
    client = connected(h)
    events = h.c("alice", client.receive("2[broken", h.now))
    assert isinstance(events[-1], ReconnectScheduled)
    assert Disconnected("/", client_sid(h, "alice"), "parse error") in events
    assert h.eio_of == {}                                          # CloseEngine reached the server


def test_disconnect_while_waiting_to_reconnect_stops_it(h):
    client = connected(h)
    h.cut("alice")
    assert client.state is ManagerState.RECONNECT_WAIT
    assert h.c("alice", client.disconnect()) == []
    assert client.state is ManagerState.CLOSED and client.next_deadline() is None


def test_buffered_emit_withdrawn_when_its_ack_times_out(h):
    client = connected(h)
    h.cut("alice")
    ack_id, out = client.emit_with_ack("never sent", timeout=0.1, now=h.now)
    assert client.buffered() == 1
    assert AckTimedOut("/", "", ack_id) in h.advance("alice", 0.1)
    assert client.buffered() == 0


def test_send_buffer_is_bounded(h):
    client = h.client("alice", max_send_buffer=2)
    h.c("alice", client.connect())
    h.cut("alice")
    client.emit("a")
    client.emit("b")
    with pytest.raises(LocalProtocolError, match="full"):
        client.emit("c")


def test_client_ignores_connect_without_sid(h):
    client = h.client("alice")
    h.decide = lambda r: None
    h.c("alice", client.connect())
    assert h.c("alice", client.receive("0{}", h.now)) == [ConnectError("/", "CONNECT answer without a sid")]
    assert client.namespace_state() is NamespaceState.CONNECTING


def test_connect_error_as_a_string_from_python_socketio(h):
    client = h.client("alice")
    h.decide = lambda r: None
    h.c("alice", client.connect("/"))
    events = h.c("alice", client.receive('4"Unable to connect"', h.now))
    assert events == [ConnectError("/", "Unable to connect")]


# --- a CONNECT waiting for the application's decision ----------------------------------------------

def pending_connection(**options) -> tuple[ServerCore, str, str]:
    """A server core with connection E1 whose CONNECT to "/" waits for accept/refuse."""
    server = ServerCore(rng=random.Random(1), **options)
    server.engine_opened("E1", 0.0)
    (request,) = server.receive("E1", "0", 0.0)
    assert isinstance(request, ConnectReceived)
    return server, "E1", request.sid


def test_packets_right_behind_a_connect_are_held_until_it_is_accepted():
    """``0`` and ``21["echo","x"]`` in one read: the event is handled after the CONNECT answer
    (it used to be dropped: the namespace was not joined yet)."""
    server, eio, sid = pending_connection()
    assert server.receive(eio, '21["echo","x"]', 0.0) == []
    assert server.receive(eio, '22["echo","y"]', 0.0) == []
    assert server.accept(eio) == [
        Send(eio_sid=eio, messages=('0{"sid":"%s"}' % sid,)),
        EventReceived("/", sid, "echo", ("x",), 1),
        EventReceived("/", sid, "echo", ("y",), 2),
    ]


def test_packets_behind_a_refused_connect_are_dropped_with_it():
    server, eio, sid = pending_connection()
    server.receive(eio, '21["echo","x"]', 0.0)
    assert server.refuse(eio, "/", "no") == [Send(eio_sid=eio, messages=('4{"message":"no"}',))]
    assert server.receive(eio, '22["echo","y"]', 0.0) == []   # not joined: ignored


def test_a_held_disconnect_ends_the_socket_and_what_follows_is_ignored():
    server, eio, sid = pending_connection()
    server.receive(eio, "1", 0.0)
    server.receive(eio, '21["echo","x"]', 0.0)
    assert server.accept(eio) == [Send(eio_sid=eio, messages=('0{"sid":"%s"}' % sid,)),
                                  Disconnected("/", sid, "client namespace disconnect")]


def test_the_hold_is_bounded():
    server, eio, sid = pending_connection(max_held_packets=2)
    server.receive(eio, '2["a"]', 0.0)
    server.receive(eio, '2["b"]', 0.0)
    assert server.receive(eio, '2["c"]', 0.0) == [CloseEngine(eio_sid=eio, reason="protocol error")]
    assert server.accept(eio) == []


def test_emits_and_rooms_from_the_connect_handler_follow_the_connect_answer():
    """What a connect handler emits to its client (by sid, or by a room it just entered) goes
    out right after the CONNECT answer; a namespace-wide broadcast does not reach it yet."""
    server, eio, sid = pending_connection()
    server.enter_room(sid, "lobby")
    assert server.rooms(sid) == [sid, "lobby"]
    assert server.emit("welcome", ["you"], to=sid) == []
    assert server.emit("news", ["lobby"], to="lobby") == []
    assert server.emit("everyone", []) == []          # nobody connected, and not it
    ack_id, reached, outputs = server.emit_with_acks("ready?", [], to=sid, timeout=5.0, now=0.0)
    assert (ack_id, reached, outputs) == (0, [sid], [])
    assert server.accept(eio) == [
        Send(eio_sid=eio, messages=('0{"sid":"%s"}' % sid,)),
        Send(eio_sid=eio, messages=('2["welcome","you"]',)),
        Send(eio_sid=eio, messages=('2["news","lobby"]',)),
        Send(eio_sid=eio, messages=('20["ready?"]',)),
    ]
    assert server.rooms(sid) == [sid, "lobby"]
    assert server.receive(eio, "30[true]", 0.0) == [AckReceived("/", sid, 0, (True,))]


def test_emits_kept_for_a_refused_connect_are_reported_undelivered():
    server, eio, sid = pending_connection()
    server.emit("welcome", [], to=sid)
    server.emit_with_acks("ready?", [], to=sid, timeout=5.0, now=0.0)
    assert server.refuse(eio) == [
        Send(eio_sid=eio, messages=('4{"message":"Connection rejected by server"}',)),
        Undelivered("/", sid, "connection refused"),
        Undelivered("/", sid, "connection refused"),
        AckCancelled("/", sid, 0, "connection refused"),
    ]
    assert server.tick(10.0) == []   # its ack deadline is gone with it


def test_an_emit_to_nobody_is_reported():
    server = ServerCore(rng=random.Random(1))
    assert server.emit("x", [], to="gone-sid") == [Undelivered("/", "gone-sid", "no socket in 'gone-sid'")]
    assert server.emit("x", [], to=["a", "b"]) == [Undelivered("/", "a,b", "no socket in 'a,b'")]
    assert server.emit("x", []) == []   # a broadcast to an empty namespace is not an error


def test_one_encoding_one_ack_id_for_a_room(h):
    alice, bob = connected(h, "alice"), connected(h, "bob")
    a, b = h.server.sids("/")
    h.server.enter_room(a, "r")
    h.server.enter_room(b, "r")
    ack_id, reached, outputs = h.server.emit_with_acks("q", [1], to="r")
    assert reached == [a, b]
    assert [o.messages for o in outputs] == [('20["q",1]',)] * 2
    assert outputs[0].messages is outputs[1].messages   # encoded once
    assert h.server.receive(outputs[1].eio_sid, "30[2]", 0.0) == [AckReceived("/", b, 0, (2,))]
    assert h.server.receive(outputs[0].eio_sid, "30[1]", 0.0) == [AckReceived("/", a, 0, (1,))]
