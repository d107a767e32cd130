"""The asyncio client against a scripted peer (a lablib WebSocket server that misbehaves on purpose).

Interop with real brokers is in test_broker.py; here a script decides every byte the "broker"
sends, to check what the client does with bad input: a clear lablib error, the connection
closed, nothing left hanging.
"""

from __future__ import annotations

import asyncio

import pytest

from lablib.errors import ConnectionClosed
from lablib.mqtt.client import Client
from lablib.mqtt.errors import ConnectionRefused, MalformedPacket, MQTTProtocolError
from lablib.mqtt.packets import Connack, PacketParser, Publish, Puback, encode
from lablib.websocket.server import serve
from tests.aio_support import asyncio_test, until


def scripted(*answers: bytes | str, subprotocols=("mqtt",)):
    """A server that reads the client's first message, then sends ``answers`` and waits."""
    received: list[bytes] = []

    async def handler(ws):
        received.append(await ws.recv())
        for answer in answers:
            await ws.send(answer)
        async for message in ws:
            received.append(message)

    return serve(handler, "127.0.0.1", 0, subprotocols=list(subprotocols)), received


@asyncio_test
async def test_connack_and_a_message_split_across_websocket_messages():
    stream = encode(Connack()) + encode(Publish("t", b"hello", qos=1, packet_id=3))
    server, received = scripted(stream[:3], stream[3:9], stream[9:])
    async with server as s:
        client = Client(f"ws://127.0.0.1:{s.port}/mqtt", "c1")
        assert (await client.connect()).session_present is False
        message = await client.recv()
        assert (message.topic, message.payload, message.qos) == ("t", b"hello", 1)
        await client.disconnect()
    packets = PacketParser().receive_data(b"".join(received))
    assert packets[0].client_id == "c1"
    assert packets[1] == Puback(3)


@asyncio_test
async def test_the_url_userinfo_is_the_login_and_goes_in_connect():
    """ws://user:pass@host/...: MQTT carries the login in CONNECT (§3.1.3.4-5), not in HTTP."""
    server, received = scripted(encode(Connack()))
    async with server as s:
        client = Client(f"ws://lab%40home:p%3Ass@127.0.0.1:{s.port}/mqtt", "c1")
        assert client.url == f"ws://127.0.0.1:{s.port}/mqtt"
        await client.connect()
        await client.disconnect()
    connect = PacketParser().receive_data(b"".join(received))[0]
    assert (connect.username, connect.password) == ("lab@home", b"p:ss")


@asyncio_test
async def test_refused_connection_raises_connection_refused():
    server, _ = scripted(encode(Connack(return_code=4)))
    async with server as s:
        with pytest.raises(ConnectionRefused, match="bad user name or password"):
            await Client(f"ws://127.0.0.1:{s.port}/mqtt", "c").connect()


@asyncio_test
async def test_malformed_connack_fails_the_connection():
    server, _ = scripted(b"\x20\x02\x00\x06")
    async with server as s:
        client = Client(f"ws://127.0.0.1:{s.port}/mqtt", "c")
        with pytest.raises(MalformedPacket, match="return code 6 is reserved"):
            await client.connect()
        await client.wait_closed()
        assert client.ws.state.name == "CLOSED"


@asyncio_test
async def test_text_frame_is_a_protocol_error():
    server, _ = scripted(encode(Connack()), "not binary")
    async with server as s:
        client = Client(f"ws://127.0.0.1:{s.port}/mqtt", "c")
        await client.connect()
        await client.wait_closed()
        assert isinstance(client.error, MQTTProtocolError)
        assert "[MQTT-6.0.0-1]" in client.error.reason


@asyncio_test
async def test_server_without_the_mqtt_subprotocol_is_refused():
    server, _ = scripted(subprotocols=())
    async with server as s:
        with pytest.raises(MQTTProtocolError, match="MQTT-6.0.0-4"):
            await Client(f"ws://127.0.0.1:{s.port}/mqtt", "c").connect()


@asyncio_test
async def test_a_publish_waiting_for_its_ack_fails_when_the_connection_drops():
    server, _ = scripted(encode(Connack()))
    async with server as s:
        client = Client(f"ws://127.0.0.1:{s.port}/mqtt", "c", clean_session=False)
        await client.connect()
        publishing = asyncio.create_task(client.publish("t", b"x", qos=1))
        await until(lambda: client.session.inflight == (1,))     # sent, waiting for PUBACK
        client.drop()
        with pytest.raises(ConnectionClosed):
            await publishing
        assert client.session.inflight == (1,)   # kept: it goes out again on reconnect


@asyncio_test
async def test_a_server_that_never_sends_connack_gives_a_timeout_not_a_hang():
    server, received = scripted()            # reads CONNECT, answers nothing
    async with server as s:
        client = Client(f"ws://127.0.0.1:{s.port}/mqtt", "c", open_timeout=0.2)
        with pytest.raises(TimeoutError, match="no CONNACK"):
            await client.connect()
        assert client.ws.transport.is_closing()
