"""The sans-I/O client session: flows of §4.3, retransmission on reconnect (§4.4), keep alive."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lablib.errors import LablibError

from lablib.mqtt.errors import ConnectionRefused, MQTTProtocolError, SessionError
from lablib.mqtt.events import (Connected, MessageReceived, PongReceived, PublishAcknowledged,
                                SubscribeAcknowledged, UnsubscribeAcknowledged)
from lablib.mqtt.packets import (Connack, Connect, Disconnect, PacketParser, Pingreq, Pingresp,
                                 Puback, Pubcomp, Publish, Pubrec, Pubrel, Suback, Subscribe,
                                 Unsuback, Unsubscribe, encode)
from lablib.mqtt.session import ClientSession, KeepaliveTimeout, MQTTState


def sent(session):
    return PacketParser().receive_data(session.data_to_send())


def connected(clean_session=True, session_present=False, **options):
    session = ClientSession("c", clean_session=clean_session, **options)
    session.connect(now=0)
    assert sent(session) == [Connect("c", clean_session, options.get("keep_alive", 60))]
    events = session.receive_data(encode(Connack(session_present)), now=0)
    assert events == [Connected(session_present)]
    return session


def test_connect_then_connack():
    session = connected()
    assert session.state is MQTTState.CONNECTED


def test_connack_refused_raises_with_the_return_code():
    session = ClientSession("c")
    session.connect(now=0)
    with pytest.raises(ConnectionRefused, match="not authorized") as info:
        session.receive_data(b"\x20\x02\x00\x05", now=0)
    assert info.value.return_code == 5
    assert session.state is MQTTState.DISCONNECTED


def test_first_packet_must_be_connack():
    session = ClientSession("c")
    session.connect(now=0)
    with pytest.raises(MQTTProtocolError, match="before CONNACK"):
        session.receive_data(encode(Pingresp()), now=0)


@pytest.mark.parametrize("packet", [Connack(), Connect("x"), Subscribe(1, (("a", 0),)), Pingreq(),
                                    Disconnect(), Unsubscribe(1, ("a",))])
def test_packets_a_server_must_not_send_now(packet):
    session = connected()
    with pytest.raises(MQTTProtocolError):
        session.receive_data(encode(packet), now=0)


def test_publish_qos0_is_fire_and_forget():
    session = connected()
    assert session.publish("t", b"x", now=1) is None
    assert session.data_to_send() == b"\x30\x04\x00\x01tx"
    assert session.inflight == ()


def test_publish_qos1_flow():
    session = connected()
    packet_id = session.publish("t", b"x", now=1, qos=1)
    assert sent(session) == [Publish("t", b"x", 1, packet_id=packet_id)]
    assert session.inflight == (packet_id,)
    assert session.receive_data(encode(Puback(packet_id)), now=2) == [PublishAcknowledged(packet_id, 1)]
    assert session.inflight == ()


def test_publish_qos2_flow():
    session = connected()
    packet_id = session.publish("t", b"x", now=1, qos=2)
    sent(session)
    assert session.receive_data(encode(Pubrec(packet_id)), now=2) == []
    assert sent(session) == [Pubrel(packet_id)]
    assert session.receive_data(encode(Pubcomp(packet_id)), now=3) == [PublishAcknowledged(packet_id, 2)]
    assert session.inflight == ()


def test_receive_qos1_acks_and_delivers_every_copy():
    session = connected()
    publish = Publish("t", b"x", 1, packet_id=9)
    assert session.receive_data(encode(publish), now=1) == [MessageReceived(publish)]
    assert sent(session) == [Puback(9)]


def test_receive_qos2_delivers_once_even_when_resent():
    """§4.3.3 method B: the id is remembered until PUBREL; a DUP PUBLISH is acked, not delivered."""
    session = connected()
    publish = Publish("t", b"x", 2, packet_id=9)
    assert session.receive_data(encode(publish), now=1) == [MessageReceived(publish)]
    again = Publish("t", b"x", 2, dup=True, packet_id=9)
    assert session.receive_data(encode(again), now=1) == []
    assert sent(session) == [Pubrec(9), Pubrec(9)]
    session.receive_data(encode(Pubrel(9)), now=2)
    assert sent(session) == [Pubcomp(9)]
    # After PUBREL the id is free: a new message with it is delivered.
    assert session.receive_data(encode(publish), now=3) == [MessageReceived(publish)]


def test_subscribe_and_unsubscribe():
    session = connected()
    packet_id = session.subscribe([("a/+", 1), ("b", 2)], now=1)
    assert sent(session) == [Subscribe(packet_id, (("a/+", 1), ("b", 2)))]
    assert session.receive_data(encode(Suback(packet_id, (1, 0x80))), now=2) == [
        SubscribeAcknowledged(packet_id, (1, 0x80))]
    unsub_id = session.unsubscribe(["a/+"], now=3)
    assert sent(session) == [Unsubscribe(unsub_id, ("a/+",))]
    assert session.receive_data(encode(Unsuback(unsub_id)), now=4) == [UnsubscribeAcknowledged(unsub_id)]


def test_suback_with_the_wrong_number_of_codes():
    session = connected()
    packet_id = session.subscribe([("a", 1)], now=1)
    with pytest.raises(MQTTProtocolError, match="2 return codes for 1 filters"):
        session.receive_data(encode(Suback(packet_id, (1, 1))), now=2)


def test_packet_ids_skip_those_in_use_and_wrap():
    session = connected(max_inflight=3)
    session._next_id = 0xFFFF
    first = session.publish("t", b"", now=0, qos=1)
    second = session.publish("t", b"", now=0, qos=1)
    assert (first, second) == (0xFFFF, 1)
    session._next_id = 1          # 1 is in flight: the next id skips it
    assert session.publish("t", b"", now=0, qos=1) == 2


def test_inflight_window_is_bounded():
    session = connected(max_inflight=2)
    ids = [session.publish("t", b"", now=0, qos=1) for _ in range(2)]
    assert not session.window_open
    with pytest.raises(SessionError, match="max_inflight"):
        session.publish("t", b"", now=0, qos=2)
    session.publish("t", b"", now=0, qos=0)        # QoS 0 is not in flight: never blocked
    session.receive_data(encode(Puback(ids[0])), now=1)
    assert session.window_open


def test_persistent_session_resends_publish_with_dup_and_pubrel_in_order():
    """§4.4 [MQTT-4.4.0-1]: original ids, PUBLISH with DUP=1 (§3.3.1.1), PUBREL for released QoS 2."""
    session = connected(clean_session=False)
    q1 = session.publish("t", b"one", now=1, qos=1)
    q2 = session.publish("t", b"two", now=1, qos=2)
    q2_released = session.publish("t", b"three", now=1, qos=2)
    session.receive_data(encode(Pubrec(q2_released)), now=2)
    session.data_to_send()
    session.connection_lost()
    session.connect(now=5)
    assert sent(session) == [Connect("c", clean_session=False)]
    events = session.receive_data(encode(Connack(session_present=True)), now=6)
    assert events == [Connected(True, resent=(q1, q2, q2_released))]
    assert session.data_to_send() == (
        b"\x3a\x08\x00\x01t\x00\x01one"          # QoS 1, DUP: 0x30 | 0x08 | 0x02
        b"\x3c\x08\x00\x01t\x00\x02two"          # QoS 2, DUP: 0x30 | 0x08 | 0x04
        b"\x62\x02\x00\x03")                     # PUBREL 3 (never the PUBLISH again)
    session.receive_data(encode(Puback(q1)) + encode(Pubcomp(q2_released)), now=7)
    assert session.inflight == (q2,)


def test_incoming_qos2_state_survives_a_reconnect():
    session = connected(clean_session=False)
    publish = Publish("t", b"x", 2, packet_id=4)
    session.receive_data(encode(publish), now=1)
    session.connection_lost()
    session.connect(now=2)
    session.receive_data(encode(Connack(True)), now=2)
    # The server re-sends the PUBLISH (its PUBREC was lost): acknowledged, not delivered again.
    assert session.receive_data(encode(Publish("t", b"x", 2, dup=True, packet_id=4)), now=3) == []


def test_session_present_0_discards_our_session_state():
    """A client with session state that gets Session Present 0 discards it (§3.2.2.2)."""
    session = connected(clean_session=False)
    packet_id = session.publish("t", b"x", now=1, qos=1)
    session.connection_lost()
    session.connect(now=2)
    session.data_to_send()
    assert session.receive_data(encode(Connack(False)), now=3) == [
        Connected(False, discarded=(packet_id,))]
    assert session.data_to_send() == b""
    assert session.inflight == ()


def test_clean_session_forgets_everything_on_disconnect():
    session = connected(clean_session=True)
    session.publish("t", b"x", now=1, qos=1)
    session.connection_lost()
    assert session.inflight == ()


def test_keepalive_pings_when_idle_and_times_out_without_pingresp():
    session = connected(keep_alive=10, ping_timeout=5)
    assert session.next_deadline() == 10
    session.publish("t", b"", now=4)                # sending anything resets the timer
    assert session.next_deadline() == 14
    session.data_to_send()
    session.tick(now=13.9)
    assert session.data_to_send() == b""
    session.tick(now=14)
    assert session.data_to_send() == b"\xc0\x00"    # PINGREQ
    assert session.next_deadline() == 19
    assert session.receive_data(b"\xd0\x00", now=15) == [PongReceived()]
    assert session.next_deadline() == 24
    session.tick(now=24)
    session.data_to_send()
    with pytest.raises(KeepaliveTimeout):
        session.tick(now=29)


def test_keepalive_zero_is_off():
    session = connected(keep_alive=0)
    assert session.next_deadline() is None
    session.tick(now=10_000)
    assert session.data_to_send() == b""


def test_calls_while_disconnected_are_refused():
    session = ClientSession("c")
    with pytest.raises(SessionError, match="publish"):
        session.publish("t", b"", now=0)
    session.connect(now=0)
    with pytest.raises(SessionError, match="connect"):
        session.connect(now=0)


def test_disconnect_sends_disconnect():
    session = connected()
    session.disconnect(now=1)
    assert session.data_to_send() == b"\xe0\x00"
    assert session.state is MQTTState.DISCONNECTED


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_into_a_connected_session_raise_only_lablib_errors(data):
    session = connected()
    try:
        session.receive_data(data, now=1)
    except LablibError:
        pass
