"""deploy/nginx.conf and deploy/haproxy.cfg in front of three lablib worker processes.

The real balancers from the distribution (Debian's ``nginx`` and ``haproxy``; CI installs them
when it runs as root) are started on a free port with the shipped templates
(:class:`lablib.cluster.ExternalBalancer`).  With the sticky lines every kind of client works -
long-polling, polling then the upgrade, WebSocket only - with lablib's and python-socketio's
clients; without them (the same file minus the lines marked ``# sticky``: round-robin) the
second request of a long-polling session reaches another worker and gets
``400 {"code":1,"message":"Session ID unknown"}``.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from lablib.cluster import Cluster, ExternalBalancer, find_program
from lablib.http import NEED_DATA, ResponseParser
from tests import aio_support
from tests.cluster_support import CLIENTS, UNKNOWN_SID, connection_errors, echo_round_trip, sio_client

asyncio_test = aio_support.asyncio_test(timeout=60)

def needs(name: str):
    return pytest.param(name, marks=pytest.mark.skipif(
        find_program(name) is None,
        reason=f"{name} is not installed (Debian: apt-get install {name}; CI installs it as root)"))


ALL = [needs("nginx"), needs("haproxy")]


@pytest.fixture(scope="module")
def cluster():
    with Cluster(3) as running:
        yield running


async def http(port: int, method: str, target: str, body: bytes = b""):
    """One request on a new connection (``Connection: close``); the parsed response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    fields = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if method == "POST":
        fields += ["Content-Type: text/plain;charset=UTF-8", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(fields) + "\r\n\r\n").encode() + body)
    parser = ResponseParser(method=method, target=target, headers=[("Host", "127.0.0.1")])
    try:
        while True:
            data = await reader.read(65536)
            response = parser.receive_data(data)
            if response is not NEED_DATA:
                return response
    finally:
        writer.close()


@pytest.mark.parametrize("name", ALL)
@asyncio_test
async def test_sticky_configuration_serves_polling_upgrade_and_websocket_clients(name, cluster):
    async with ExternalBalancer(name, cluster.targets) as lb:
        url, port = lb.url, lb.port
        outcomes = []
        for kind in CLIENTS:
            for transports, expected in ((["polling"], "polling"), (None, "websocket"),
                                         (["websocket"], "websocket")):
                async with sio_client(kind) as client:
                    seen = await echo_round_trip(client, url, transports=transports)
                outcomes.append((kind, transports, seen["ack"], seen["event"], seen["transport"]))
                assert (seen["ack"], seen["event"], seen["transport"]) == ("hello", "hello", expected)
                assert seen["pid"] in cluster.pids
        handshake = await http(port, "GET", "/socket.io/?EIO=4&transport=polling")
        assert handshake.status == 200 and handshake.body.startswith(b'0{"sid":')
        if name == "haproxy":   # the cookie that pins a browser to its server
            cookie = handshake.headers.get("set-cookie")
            assert cookie is not None and cookie.split(";")[0] in {"SERVERID=s0", "SERVERID=s1",
                                                                   "SERVERID=s2"}
        else:                   # nginx's access log (our format): one upstream per session
            upstreams: dict[str, set[str]] = {}
            for line in lb.access_log():
                method, uri, _, upstream, status = line.split()
                sid = parse_qs(urlsplit(uri).query).get("sid")
                if sid:
                    upstreams.setdefault(sid[0], set()).add(upstream)
                # 499: nginx's "client closed the request" (a held poll when a client left)
                assert status in ("200", "101", "499")
            assert upstreams and all(len(ups) == 1 for ups in upstreams.values())
    print(name, outcomes)


@pytest.mark.parametrize("name", ALL)
@asyncio_test
async def test_without_the_sticky_lines_long_polling_gets_session_id_unknown(name, cluster):
    async with ExternalBalancer(name, cluster.targets, sticky=False) as lb:
        port = lb.port
        # by hand: the handshake, then the CONNECT packet of Socket.IO, as a client sends it
        handshake = await http(port, "GET", "/socket.io/?EIO=4&transport=polling")
        assert handshake.status == 200
        sid = json.loads(handshake.body[1:])["sid"]
        post = await http(port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"40")
        # round-robin sends the second request to another worker
        assert (post.status, post.body) == (400, UNKNOWN_SID.encode())
        # and a real client cannot connect (while WebSocket-only clients can)
        url = lb.url
        for kind in CLIENTS:
            async with sio_client(kind) as client:
                with pytest.raises(connection_errors(kind)):
                    await echo_round_trip(client, url, transports=["polling"])
            async with sio_client(kind) as client:
                seen = await echo_round_trip(client, url, transports=["websocket"])
            assert seen["ack"] == "hello"
