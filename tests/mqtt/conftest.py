"""The real brokers the MQTT interop tests run against: the ``broker`` fixture.

Each test that asks for ``broker`` runs twice, against amqtt and against mosquitto (skipped,
saying how to get it, where it is not installed); one broker per test module and kind, started
by :func:`lablib.services.mqtt.start_broker`.
"""

from __future__ import annotations

import pytest

from lablib.services.mqtt import mosquitto_path, start_broker


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def broker(request):
    if request.param == "mosquitto" and mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto, or set LABLIB_MOSQUITTO)")
    with start_broker(request.param) as running:
        yield running
