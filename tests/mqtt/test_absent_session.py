"""What a broker keeps for a persistent session while its client is away (MQTT 3.1.1 §3.1.2.4).

Chapter 12 measures delivery under relay cuts on the default broker; this checks the claim it makes:
a client with ``clean_session=0`` leaves, QoS 1/2 messages published meanwhile are kept and
delivered when it comes back; a QoS 0 message MAY be kept (mosquitto does not by default,
``queue_qos0_messages false``; amqtt does, see ``KEEPS_QOS0``).  amqtt keeps nothing for a client
it authenticated anonymously, which is why lablib starts it with a login (lablib.services.mqtt).
"""

from __future__ import annotations

import pytest

from lablib.mqtt.client import Client
from lablib.mqtt.errors import ConnectionRefused
from tests.aio_support import asyncio_test

pytestmark = pytest.mark.interop
asyncio_test = asyncio_test(timeout=30)


#: Whether the broker keeps a QoS 0 message for an absent session ("MAY", §3.1.2.4).  amqtt does,
#: as a side effect of its other deviation: it delivers at the subscription's QoS, not the minimum
#: of published and granted (§3.8.4; see test_broker), so the QoS 0 message goes to this QoS
#: 1/2 subscription as QoS 1/2 - and is kept like one.
KEEPS_QOS0 = {"amqtt": True, "mosquitto": False}


@pytest.mark.parametrize("qos", [1, 2])
@asyncio_test
async def test_messages_for_an_absent_persistent_session_are_kept(broker, qos):
    topic = f"absent/{qos}"
    away = Client(broker.ws_url, f"absent-{qos}", clean_session=False, **broker.credentials)
    await away.connect()
    await away.subscribe(topic, qos=qos)
    await away.disconnect()                       # DISCONNECT: the session stays (clean_session=0)
    async with Client(broker.ws_url, f"absent-pub-{qos}", **broker.credentials) as publisher:
        await publisher.publish(topic, b"m1", qos=qos)
        await publisher.publish(topic, b"zero", qos=0)   # QoS 0: the broker MAY keep it
        await publisher.publish(topic, b"m2", qos=qos)
        connected = await away.connect()
        assert connected.session_present
        await publisher.publish(topic, b"end", qos=qos)
        payloads = []
        while (message := await away.recv()).payload != b"end":
            payloads.append(message.payload)
    await away.disconnect()
    assert [p for p in payloads if p != b"zero"] == [b"m1", b"m2"]        # MUST, in order (§4.6)
    if broker.kind in KEEPS_QOS0:
        assert (b"zero" in payloads) is KEEPS_QOS0[broker.kind]


@pytest.mark.parametrize("login", [{}, {"username": "lab", "password": b"not-the-password"}],
                         ids=["anonymous", "wrong-password"])
@asyncio_test
async def test_the_lab_amqtt_refuses_a_client_without_its_login(broker, login):
    """No anonymous sessions on the lab's amqtt: CONNACK return code 5, not authorized (§3.2.2.3)."""
    if broker.username is None:
        pytest.skip(f"{broker.kind} runs without a login")
    with pytest.raises(ConnectionRefused) as refused:
        await Client(broker.ws_url, "intruder", **login).connect()
    assert refused.value.return_code == 5
