"""lablib.cluster and ``python -m lablib serve``: worker processes start on free ports, answer,
and stop cleanly (SIGTERM -> exit code 0)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

import lablib.cluster
from lablib.cluster import Cluster, ClusterError, ExternalBalancer, load_app, render_config
from tests import aio_support
from tests.cluster_support import echo_round_trip, sio_client

asyncio_test = aio_support.asyncio_test(timeout=60)


@asyncio_test
async def test_workers_are_separate_processes_on_their_own_ports():
    cluster = Cluster(2)
    async with cluster:
        assert len(set(cluster.ports)) == 2 and len(set(cluster.pids)) == 2
        assert os.getpid() not in cluster.pids
        assert cluster.targets == [("127.0.0.1", port) for port in cluster.ports]
        for pid, url in zip(cluster.pids, cluster.urls):
            async with sio_client("lablib") as client:
                seen = await echo_round_trip(client, url, transports=["websocket"])
            assert (seen["ack"], seen["pid"]) == ("hello", pid)
        processes = list(cluster.processes)
    assert [p.returncode for p in processes] == [0, 0]     # SIGTERM: a clean exit
    assert cluster.processes == [] and cluster.ports == []


def test_a_worker_that_cannot_start_raises_a_clear_error():
    with pytest.raises(ClusterError, match="exited with code"):
        Cluster(2, app="no_such_module_here:app", start_timeout=60).start()


def test_load_app_takes_a_server_or_a_factory():
    server = load_app("lablib.cluster:demo_app")
    assert hasattr(server, "eio")
    with pytest.raises(ValueError, match="MODULE:ATTR"):
        load_app("lablib.cluster")
    with pytest.raises(ValueError, match="not a lablib Socket.IO Server"):
        load_app("os:getcwd")


@asyncio_test
async def test_cli_serve_runs_workers_behind_the_balancer_until_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "lablib", "serve", "--workers", "2",
                                "--balance", "sid"], stdout=subprocess.PIPE, text=True)
    try:
        # read in a thread, bounded: a blocking readline() would stall the event loop's guard
        lines = [await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 50)
                 for _ in range(3)]
        assert lines[0].startswith("worker ") and lines[1].startswith("worker ")
        assert lines[2].startswith("balancer (sid): http://127.0.0.1:")
        url = lines[2].split(": ", 1)[1].strip()
        pids = [int(line.split()[1].rstrip(":")) for line in lines[:2]]
        for kind in ("lablib", "python-socketio"):
            async with sio_client(kind) as client:
                seen = await echo_round_trip(client, url)
            assert seen["ack"] == "hello" and seen["transport"] == "websocket"
            assert seen["pid"] in pids
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "request(s) routed" in rest
    for pid in pids:                                       # the workers are gone too
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cli_serve_refuses_a_balancer_port_without_a_balancer():
    result = subprocess.run([sys.executable, "-m", "lablib", "serve", "--workers", "2",
                             "--balance", "none", "--port", "8000"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--port" in result.stderr


def test_render_config_repeats_backend_lines_and_drops_sticky_ones():
    template = ("listen {{LISTEN_PORT}};\n"
                "pid {{PREFIX}}/x.pid;\n"
                "ip_hash;   # sticky\n"
                "server {{NAME}} {{ADDRESS}};   # for each backend\n")
    backends = [("127.0.0.1", 1001), ("127.0.0.1", 1002)]
    assert render_config(template, backends, 8080, prefix="/srv/p") == (
        "listen 8080;\npid /srv/p/x.pid;\nip_hash;   # sticky\n"
        "server s0 127.0.0.1:1001;\nserver s1 127.0.0.1:1002;\n")
    assert "ip_hash" not in render_config(template, backends, 8080, sticky=False)


def test_a_missing_balancer_program_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(lablib.cluster, "find_program", lambda name: None)
    with pytest.raises(ClusterError, match="apt-get install haproxy"):
        ExternalBalancer("haproxy", [("127.0.0.1", 1)]).start()
    with pytest.raises(ValueError, match="nginx, haproxy"):
        ExternalBalancer("traefik", [("127.0.0.1", 1)])
