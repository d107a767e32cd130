"""The dissector's MQTT layer: one record per MQTT packet inside WebSocket frames."""

from lablib.capture.dissect import Record, dissect_streams
from lablib.http import format_request, format_response
from lablib.mqtt.packets import Connack, Connect, Pingreq, Puback, Publish, Subscribe, encode
from lablib.websocket.frames import Opcode, encode_frame
from lablib.websocket.handshake import accept_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"


def websocket(c2s_messages: list[bytes], s2c_messages: list[bytes],
              opcode: Opcode = Opcode.BINARY) -> list[Record]:
    request = format_request("GET", "/mqtt", [
        ("Host", "127.0.0.1:8080"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "mqtt")])
    response = format_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                     ("Sec-WebSocket-Accept", accept_key(KEY)),
                                     ("Sec-WebSocket-Protocol", "mqtt")])
    c2s = request + b"".join(encode_frame(opcode, m, masking_key=MASK) for m in c2s_messages)
    s2c = response + b"".join(encode_frame(opcode, m) for m in s2c_messages)
    return dissect_streams(c2s, s2c)


def mqtt(records, direction=None):
    return [r for r in records if r.layer == "mqtt" and (direction is None or r.direction == direction)]


CONNECT = encode(Connect("sub", keep_alive=30))
PUBLISH = encode(Publish("t/a", b"21.5", qos=1, dup=True, packet_id=7))


def test_one_record_per_packet_with_fields():
    records = websocket([CONNECT, PUBLISH], [encode(Connack()), encode(Puback(7))])
    c2s, s2c = mqtt(records, "c2s"), mqtt(records, "s2c")
    assert [r.summary for r in c2s] == [
        "CONNECT client_id='sub' clean_session=1 keep_alive=30",
        "PUBLISH topic='t/a' payload=b'21.5' qos=1 retain=0 dup=1 packet_id=7"]
    assert [r.summary for r in s2c] == ["CONNACK session_present=0 return_code=0",
                                        "PUBACK packet_id=7"]
    publish = c2s[1]
    assert publish.fields["type_name"] == "PUBLISH"
    assert publish.fields["flags"] == 0b1010            # DUP=1, QoS=01, RETAIN=0
    assert publish.fields["remaining_length"] == 11
    assert (publish.fields["topic"], publish.fields["packet_id"], publish.fields["dup"]) == ("t/a", 7, True)
    assert publish.raw == PUBLISH
    assert publish.depth == 1                           # inside its WebSocket frame
    assert not [r for r in records if r.layer == "error"]


def test_packets_split_across_and_packed_into_messages():
    """§6 [MQTT-6.0.0-2]: packets and WebSocket messages need not line up."""
    stream = CONNECT + PUBLISH + encode(Pingreq())
    records = websocket([stream[:5], stream[5:20], stream[20:]], [])
    c2s = mqtt(records, "c2s")
    assert [r.fields["type_name"] for r in c2s] == ["CONNECT", "PUBLISH", "PINGREQ"]
    assert [r.raw for r in c2s] == [CONNECT, PUBLISH, encode(Pingreq())]


def test_subscribe_record():
    records = websocket([CONNECT, encode(Subscribe(1, (("t/#", 2),)))], [])
    assert mqtt(records)[1].fields["topics"] == (("t/#", 2),)


def test_malformed_packet_is_an_error_record_and_ends_that_direction():
    records = websocket([CONNECT, b"\x62\x02\x00\x00", encode(Pingreq())], [])
    errors = [r for r in records if r.layer == "error"]
    assert len(errors) == 1 and "Packet Identifier 0" in errors[0].summary
    assert [r.fields["type_name"] for r in mqtt(records)] == ["CONNECT"]


def test_not_mqtt_when_the_first_message_is_not_a_connect():
    assert mqtt(websocket([b"\x10\x02ab", PUBLISH], [])) == []
    assert mqtt(websocket([b"hello"], [], Opcode.TEXT)) == []


def test_a_connect_password_is_in_the_fields_but_not_in_the_summary():
    """Tables and notebooks print summaries: the password shows as its length only."""
    login = encode(Connect("sub", keep_alive=30, username="lab", password=b"s3cret"))
    [record] = mqtt(websocket([login], []), "c2s")
    assert record.summary == (
        "CONNECT client_id='sub' clean_session=1 keep_alive=30 username='lab' password=<6 bytes>")
    assert (record.fields["username"], record.fields["password"]) == ("lab", b"s3cret")
