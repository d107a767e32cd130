"""The error hierarchy: each error knows what the peer should be told, and whom it blames."""

import pytest

from lablib.errors import (InvalidUTF8, LocalProtocolError, PacketError, PayloadTooBig,
                           ProtocolError, RemoteProtocolError, WebSocketProtocolError)


def test_local_and_remote_errors_blame_different_parties():
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError) and issubclass(RemoteProtocolError, ProtocolError)


@pytest.mark.parametrize("error", [WebSocketProtocolError, InvalidUTF8, PayloadTooBig, PacketError])
def test_everything_a_peer_can_send_wrong_blames_the_peer(error):
    assert issubclass(error, RemoteProtocolError)


def test_only_websocket_errors_carry_a_close_code():
    """Engine.IO and Socket.IO have no close codes: their errors (and our own mistakes) carry none."""
    assert not hasattr(PacketError("empty packet"), "close_code")
    assert not hasattr(LocalProtocolError("send after close"), "close_code")
    assert not hasattr(RemoteProtocolError("bad"), "close_code")
    assert WebSocketProtocolError("reserved opcode 0x3").close_code == 1002
    assert WebSocketProtocolError("bad deflate data", close_code=1007).close_code == 1007
    assert InvalidUTF8("not UTF-8").close_code == 1007


def test_a_limit_says_how_each_carrier_refuses_it():
    error = PayloadTooBig("frame of 2000000 bytes exceeds the limit of 1000000")
    assert (error.close_code, error.http_status) == (1009, 413)


def test_reprs_show_the_close_code_only_where_there_is_one():
    assert repr(LocalProtocolError("cannot send data in state CLOSED")) == \
        "LocalProtocolError('cannot send data in state CLOSED')"
    assert repr(PacketError("empty packet")) == "PacketError('empty packet')"
    assert repr(InvalidUTF8("text message is not valid UTF-8")) == \
        "InvalidUTF8('text message is not valid UTF-8', close_code=1007)"


def test_mqtt_errors_blame_the_same_sides():
    from lablib.mqtt.errors import (InvalidPacket, MalformedPacket, MQTTError, MQTTProtocolError,
                                    PacketTooLarge, SessionError)
    for remote in (MalformedPacket, PacketTooLarge, MQTTProtocolError):
        assert issubclass(remote, RemoteProtocolError) and issubclass(remote, MQTTError), remote
    for local in (InvalidPacket, SessionError):
        assert issubclass(local, LocalProtocolError) and issubclass(local, MQTTError), local
    assert repr(MalformedPacket("bad Remaining Length")) == "MalformedPacket('bad Remaining Length')"
    assert not hasattr(MalformedPacket("x"), "close_code")
