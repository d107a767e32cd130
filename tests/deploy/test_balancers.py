"""deploy/nginx.conf and deploy/haproxy.cfg in front of three lablib worker processes.

The real balancers from the distribution (Debian's ``nginx`` and ``haproxy``; CI installs them
when it runs as root) are started on a free port with the shipped templates, filled by
:func:`lablib.cluster.render_config`.  With the sticky lines every kind of client works -
long-polling, polling then the upgrade, WebSocket only - with lablib's and python-socketio's
clients; without them (the same file minus the lines marked ``# sticky``: round-robin) the
second request of a long-polling session reaches another worker and gets
``400 {"code":1,"message":"Session ID unknown"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from lablib.cluster import Cluster, render_config
from lablib.http import NEED_DATA, ResponseParser
from tests import aio_support
from tests.cluster_support import CLIENTS, UNKNOWN_SID, connection_errors, echo_round_trip, sio_client

asyncio_test = aio_support.asyncio_test(timeout=60)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def find(program: str) -> str | None:
    found = shutil.which(program)
    if found is None and os.access(f"/usr/sbin/{program}", os.X_OK):
        found = f"/usr/sbin/{program}"
    return found


BALANCERS = {
    "nginx": (find("nginx"), "nginx.conf"),
    "haproxy": (find("haproxy"), "haproxy.cfg"),
}
START_TIMEOUT = 30.0


def needs(name: str):
    return pytest.param(name, marks=pytest.mark.skipif(
        BALANCERS[name][0] is None,
        reason=f"{name} is not installed (Debian: apt-get install {name}; CI installs it as root)"))


ALL = [needs("nginx"), needs("haproxy")]


@pytest.fixture(scope="module")
def cluster():
    with Cluster(3) as running:
        yield running


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(name: str, program: str, config: Path, prefix: str) -> list[str]:
    if name == "nginx":   # -e: the error log before the configuration is read, too
        return [program, "-p", prefix, "-c", str(config), "-e", f"{prefix}/error.log"]
    return [program, "-f", str(config), "-db"]


@contextlib.contextmanager
def running_balancer(name: str, cluster: Cluster, sticky: bool = True):
    """Start ``name`` with its deploy/ template for ``cluster``; yield (port, its directory)."""
    program, template = BALANCERS[name]
    # not pytest's tmp_path: its parents are private to us, and nginx started as root runs its
    # workers as another user, who must be able to reach the temp directories
    prefix = tempfile.mkdtemp(prefix=f"lablib-{name}-")
    os.chmod(prefix, 0o755)
    port = free_port()
    config = Path(prefix, template)
    config.write_text(render_config((DEPLOY / template).read_text(), cluster.targets, port,
                                    prefix=prefix, sticky=sticky))
    log = open(Path(prefix, "output.log"), "wb")
    process = subprocess.Popen(command(name, program, config, prefix), stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}: "
                                     f"{Path(prefix, 'output.log').read_text()}"
                                     f"{_read(Path(prefix, 'error.log'))}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not listen on {port} within {START_TIMEOUT} s")
            time.sleep(0.05)
        yield port, Path(prefix)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(prefix, ignore_errors=True)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


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
    with running_balancer(name, cluster) as (port, prefix):
        url = f"http://127.0.0.1:{port}"
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
            for line in (prefix / "access.log").read_text().splitlines():
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
    with running_balancer(name, cluster, sticky=False) as (port, _):
        # by hand: the handshake, then the CONNECT packet of Socket.IO, as a client sends it
        handshake = await http(port, "GET", "/socket.io/?EIO=4&transport=polling")
        assert handshake.status == 200
        sid = json.loads(handshake.body[1:])["sid"]
        post = await http(port, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"40")
        # round-robin sends the second request to another worker
        assert (post.status, post.body) == (400, UNKNOWN_SID.encode())
        # and a real client cannot connect (while WebSocket-only clients can)
        url = f"http://127.0.0.1:{port}"
        for kind in CLIENTS:
            async with sio_client(kind) as client:
                with pytest.raises(connection_errors(kind)):
                    await echo_round_trip(client, url, transports=["polling"])
            async with sio_client(kind) as client:
                seen = await echo_round_trip(client, url, transports=["websocket"])
            assert seen["ack"] == "hello"
