"""One event vocabulary across the layers: every sans-I/O core returns lablib.events outputs."""

import dataclasses
import inspect

import pytest

from lablib import events
from lablib.engineio import events as engineio_events
from lablib.mqtt import events as mqtt_events
from lablib.socketio import events as socketio_events
from lablib.sse import events as sse_events
from lablib.websocket import events as websocket_events

LAYERS = [websocket_events, engineio_events, socketio_events, sse_events, mqtt_events]


def outputs_of(module):
    return [obj for name, obj in vars(module).items()
            if inspect.isclass(obj) and obj.__module__ == module.__name__]


@pytest.mark.parametrize("module", LAYERS, ids=lambda m: m.__name__)
def test_every_output_of_every_layer_shares_one_base(module):
    classes = outputs_of(module)
    assert classes
    for cls in classes:
        assert issubclass(cls, (events.Event, events.Action)), cls
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls


def test_what_the_peer_sent_is_named_received():
    names = {cls.__name__ for module in LAYERS for cls in outputs_of(module)}
    assert {"TextReceived", "BinaryReceived", "PingReceived", "PongReceived", "CloseReceived",
            "MessageReceived", "EventReceived", "AckReceived", "ConnectReceived"} <= names
    assert not names & {"TextMessage", "BinaryMessage", "Ping", "Pong", "ConnectionClosed",
                        "ConnectRequested", "SendTo", "CloseConnection"}


def test_the_websocket_layer_has_events_only():
    assert all(issubclass(cls, events.Event) for cls in outputs_of(websocket_events))


def test_both_socketio_cores_name_the_engine_the_same_way():
    """The server has one engine per client and names it; the client has one and does not."""
    from lablib.socketio import ClientCore, ServerCore
    server = ServerCore()
    server.engine_opened("E1", 0.0)
    assert server.receive("E1", "0", 0.0)[0].eio_sid == "E1"
    client = ClientCore()
    assert client.connect("/") == [socketio_events.OpenEngine()]
    assert client.engine_opened(0.0) == [socketio_events.Send(("0",))]
    assert repr(socketio_events.Send(("0",))) == "Send(messages=('0',))"
    assert repr(socketio_events.Send(("0",), eio_sid="E1")) == "Send(eio_sid='E1', messages=('0',))"
    assert repr(socketio_events.CloseEngine("parse error", eio_sid="E1")) == \
        "CloseEngine(eio_sid='E1', reason='parse error')"
