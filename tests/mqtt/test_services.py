"""lablib.services.mqtt: how the broker is chosen, and a clear error when it cannot start."""

import pytest

from lablib.services.mqtt import BrokerUnavailable, start_broker


def test_mqtt_url_points_at_an_existing_broker_and_starts_nothing(monkeypatch):
    monkeypatch.setenv("MQTT_URL", "ws://broker.example:8080/mqtt")
    with start_broker() as broker:
        assert (broker.kind, broker.ws_url, broker.process) == ("external", "ws://broker.example:8080/mqtt", None)
        assert (broker.host, broker.ws_port, broker.ws_path) == ("broker.example", 8080, "/mqtt")
        assert broker.credentials == {}


def test_the_userinfo_of_mqtt_url_is_the_login_and_leaves_the_url(monkeypatch):
    monkeypatch.setenv("MQTT_URL", "ws://ann%40lab:p%3Ass@broker.example:8080/mqtt")
    with start_broker() as broker:
        assert broker.ws_url == "ws://broker.example:8080/mqtt"
        assert broker.credentials == {"username": "ann@lab", "password": b"p:ss"}


def test_missing_mosquitto_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("MQTT_URL", raising=False)
    monkeypatch.setenv("LABLIB_MOSQUITTO", str(tmp_path / "no-such-mosquitto"))
    with pytest.raises(BrokerUnavailable, match="apt-get install mosquitto"):
        start_broker("mosquitto")


def test_unknown_kind(monkeypatch):
    monkeypatch.delenv("MQTT_URL", raising=False)
    with pytest.raises(BrokerUnavailable, match="unknown broker kind"):
        start_broker("rabbit")
