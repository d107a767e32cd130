"""Several lablib server processes behind the relay's balancer: the failure without sticky
sessions and the fix, with lablib's and python-socketio's clients.

The workers are real processes (``lablib.cluster``), so a session opened in one is unknown to
the others, as in production.  Every test builds a fresh balancer, whose round-robin counter
starts at backend 0: the handshake lands on worker 0, and what follows is determined.
"""

from __future__ import annotations

import pytest

from lablib.capture.relay import Balancer
from lablib.cluster import Cluster
from tests import aio_support
from tests.cluster_support import CLIENTS, UNKNOWN_SID, connection_errors, echo_round_trip, sio_client

asyncio_test = aio_support.asyncio_test(timeout=40)


@pytest.fixture(scope="module")
def cluster():
    with Cluster(3) as running:
        yield running


def url(balancer: Balancer) -> str:
    return f"http://127.0.0.1:{balancer.port}"


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("workers", [2, 3])
@asyncio_test
async def test_polling_without_stickiness_fails_at_the_second_request(cluster, kind, workers):
    async with Balancer(cluster.targets[:workers], "round-robin") as lb:
        async with sio_client(kind) as client:
            with pytest.raises(connection_errors(kind)):
                await echo_round_trip(client, url(lb), transports=["polling"])
    first_failure = next(r for r in lb.routes if r.status == 400)
    print(f"{kind}, {workers} workers: request #{first_failure.number} fails\n{lb.table()}")
    # the handshake is answered by worker 0; the next request, whatever it is (the GET poll or
    # the POST with the CONNECT packet), goes to worker 1, which has never heard of that sid
    handshake = lb.routes[0]
    assert (handshake.method, handshake.sid, handshake.backend, handshake.status) == ("GET", None, 0, 200)
    assert first_failure.number == 2
    assert (first_failure.backend, first_failure.error) == (1, UNKNOWN_SID)
    assert first_failure.sid is not None
    answer = lb.capture.conversations[first_failure.conversation].data("s2c")
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(UNKNOWN_SID.encode())


@pytest.mark.parametrize("kind", CLIENTS)
@asyncio_test
async def test_websocket_only_clients_work_without_stickiness(cluster, kind):
    async with Balancer(cluster.targets, "round-robin") as lb:
        pids = []
        for _ in range(3):
            async with sio_client(kind) as client:
                seen = await echo_round_trip(client, url(lb), transports=["websocket"])
            assert (seen["ack"], seen["event"], seen["transport"]) == ("hello", "hello", "websocket")
            pids.append(seen["pid"])
    # one request per session - the WebSocket handshake - so there is nothing to get wrong
    assert [(r.backend, r.status) for r in lb.routes] == [(0, 101), (1, 101), (2, 101)]
    assert pids == cluster.pids


@pytest.mark.parametrize("kind", CLIENTS)
@asyncio_test
async def test_upgrade_fails_when_the_websocket_lands_on_another_process(cluster, kind):
    # polling requests stick to their sid, the WebSocket request goes round-robin
    async with Balancer(cluster.targets, "sid", upgrade_policy="round-robin") as lb:
        async with sio_client(kind) as client:
            seen = await echo_round_trip(client, url(lb))
    print(lb.table())
    assert (seen["ack"], seen["event"]) == ("hello", "hello")
    assert seen["transport"] == "polling"             # the upgrade failed; polling goes on
    assert seen["pid"] == cluster.pids[0]
    [upgrade] = [r for r in lb.routes if "transport=websocket" in r.target]
    assert (upgrade.backend, upgrade.reason, upgrade.status) == (1, "round-robin", 400)
    assert "Session ID unknown" in upgrade.error
    assert {r.backend for r in lb.routes if r is not upgrade} == {0}



@pytest.mark.parametrize("transports", [["polling"], None], ids=["polling", "upgrade"])
@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("policy", ["sid", "ip-hash", "cookie"])
@asyncio_test
async def test_with_stickiness_every_request_of_a_session_reaches_its_process(
        cluster, policy, kind, transports):
    headers = None
    if policy == "cookie" and kind == "lablib":
        # lablib's Engine.IO client keeps no cookie jar: it can only send a cookie it was given
        # (a browser, or python-socketio's aiohttp session, keeps the balancer's Set-Cookie)
        headers = {"Cookie": "SERVERID=s2"}
    async with Balancer(cluster.targets, policy) as lb:
        async with sio_client(kind) as client:
            seen = await echo_round_trip(client, url(lb), transports=transports, headers=headers)
    print(lb.table())
    assert (seen["ack"], seen["event"]) == ("hello", "hello")
    assert seen["transport"] == ("polling" if transports else "websocket")
    assert len(lb.routes) >= 2 and all(r.status in (200, 101) for r in lb.routes)
    [backend] = {r.backend for r in lb.routes}
    assert seen["pid"] == cluster.pids[backend]
    if headers:
        assert backend == 2 and {r.reason for r in lb.routes} == {"cookie"}
    elif policy != "ip-hash":
        assert lb.routes[0].reason == "round-robin" and {r.reason for r in lb.routes[1:]} == {policy}
