"""RFC 6455 §4 — the opening handshake: the accept key, the client's request, both validations."""

from __future__ import annotations

import base64
import random

import pytest

from lablib.errors import HandshakeError
from lablib.http import Headers, Request, Response
from lablib.websocket.handshake import (NEED_DATA, ClientHandshake, ServerHandshake, accept_key,
                                        generate_key, validate_request, validate_response)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

GOOD_HEADERS = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request_bytes(headers=GOOD_HEADERS, request_line="GET /chat HTTP/1.1") -> bytes:
    lines = [request_line] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def replace(name: str, value: str | None) -> list[tuple[str, str]]:
    """GOOD_HEADERS with ``name`` set to ``value`` (or removed when None)."""
    headers = [(k, v) for k, v in GOOD_HEADERS if k != name]
    return headers if value is None else headers + [(name, value)]


def server_error(data: bytes, **kwargs) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        ServerHandshake(**kwargs).receive_data(data)
    return info.value


def answer(error: HandshakeError) -> tuple[bytes, list[bytes], bytes]:
    """Split the HTTP error answer into status line, header lines and body."""
    head, body = ServerHandshake.reject(error).split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.split(b"\r\n")
    return status_line, header_lines, body


# --- Sec-WebSocket-Key / Sec-WebSocket-Accept ------------------------------------------------

def test_accept_key_rfc_example():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_generate_key_is_16_random_bytes_base64():
    key = generate_key(random.Random(0))
    assert key == "zQcs2L5vn2KsTAnCggbn4w=="
    assert len(base64.b64decode(key)) == 16
    assert generate_key(random.Random(0)) == key  # seeded: reproducible
    assert generate_key(random.Random(1)) != key
    assert len(base64.b64decode(generate_key())) == 16  # unseeded: from the OS


# --- the client's request (§4.1) --------------------------------------------------------------

def test_seeded_client_request_exact_bytes():
    client = ClientHandshake(host="example.com", path="/chat", rng=random.Random(0))
    assert client.request_bytes() == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: zQcs2L5vn2KsTAnCggbn4w==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )


def test_client_request_with_subprotocols_origin_and_extra_headers():
    client = ClientHandshake(host="127.0.0.1:8765", path="/ws?room=1", subprotocols=["chat", "superchat"],
                             origin="http://example.com", extra_headers=[("X-Trace", "1")],
                             key=RFC_KEY)
    assert client.request_bytes() == (
        b"GET /ws?room=1 HTTP/1.1\r\n"
        b"Host: 127.0.0.1:8765\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Origin: http://example.com\r\n"
        b"X-Trace: 1\r\n"
        b"\r\n"
    )


def test_client_request_is_accepted_by_the_server():
    client = ClientHandshake(host="example.com", path="/chat", rng=random.Random(7))
    server = ServerHandshake()
    request = server.receive_data(client.request_bytes())
    assert request.method == "GET" and request.target == "/chat"
    assert server.key == client.key


# --- the server's validation (§4.2.1), each failure with its exact answer ---------------------

def test_valid_request_accepted_with_the_rfc_answer():
    server = ServerHandshake()
    request = server.receive_data(request_bytes())
    assert isinstance(request, Request)
    assert request.path == "/chat" and request.headers["host"] == "server.example.com"
    assert server.key == RFC_KEY
    assert server.accept() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n"
    )


def test_a_request_parsed_elsewhere_is_validated_without_parsing_again():
    # a server that also answers plain HTTP (Engine.IO's) has the Request already
    request = Request("GET", "/chat", Headers(GOOD_HEADERS))
    server = ServerHandshake()
    assert server.receive_request(request) is request
    assert server.key == RFC_KEY and server.trailing_data == b""
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in server.accept()
    with pytest.raises(HandshakeError) as info:
        ServerHandshake().receive_request(Request("GET", "/chat", Headers(replace("Sec-WebSocket-Key", "x"))))
    assert info.value.status == 400


def test_request_arriving_byte_by_byte():
    server = ServerHandshake()
    data = request_bytes()
    for i in range(len(data) - 1):
        assert server.receive_data(data[i:i + 1]) is NEED_DATA
    assert isinstance(server.receive_data(data[-1:]), Request)


def test_method_not_get_is_405_with_allow():
    error = server_error(request_bytes(request_line="POST /chat HTTP/1.1"))
    assert error.status == 405
    assert error.headers == [("Allow", "GET")]
    status, headers, body = answer(error)
    assert status == b"HTTP/1.1 405 Method Not Allowed"
    assert b"Allow: GET" in headers
    assert body == b"method POST not allowed: the handshake is a GET\n"


def test_http_10_is_400():
    error = server_error(request_bytes(request_line="GET /chat HTTP/1.0"))
    assert error.status == 400
    status, _, body = answer(error)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert body == b"HTTP/1.0 request: the handshake needs HTTP/1.1\n"


def test_missing_host_is_400():
    # h11 already refuses an HTTP/1.1 request without Host (RFC 9112 §3.2).
    error = server_error(request_bytes(replace("Host", None)))
    assert error.status == 400
    status, _, body = answer(error)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert b"Host" in body
    # validate_request says so itself when handed a request that skipped h11
    request = Request("GET", "/chat", Headers(replace("Host", None)))
    with pytest.raises(HandshakeError) as info:
        validate_request(request)
    assert info.value.status == 400
    assert info.value.reason == "missing Host header"


@pytest.mark.parametrize("upgrade", [None, "h2c", "websocket2", "", "web socket"])
def test_upgrade_missing_or_other_is_426(upgrade):
    error = server_error(request_bytes(replace("Upgrade", upgrade)))
    assert error.status == 426
    status, headers, body = answer(error)
    assert status == b"HTTP/1.1 426 Upgrade Required"
    assert b"Upgrade: websocket" in headers
    assert body == b"missing 'Upgrade: websocket' header: this is a WebSocket endpoint\n"


@pytest.mark.parametrize("upgrade", ["WebSocket", "WEBSOCKET", "websocket", "foo, websocket"])
def test_upgrade_is_case_insensitive(upgrade):
    assert isinstance(ServerHandshake().receive_data(request_bytes(replace("Upgrade", upgrade))), Request)


@pytest.mark.parametrize("connection", [None, "keep-alive", "close", "upgraded"])
def test_connection_without_upgrade_token_is_426(connection):
    error = server_error(request_bytes(replace("Connection", connection)))
    assert error.status == 426
    status, _, body = answer(error)
    assert status == b"HTTP/1.1 426 Upgrade Required"
    assert body == b"the Connection header must contain the 'upgrade' token\n"


@pytest.mark.parametrize("connection", ["keep-alive, Upgrade", "upgrade", "UPGRADE", "Upgrade,keep-alive"])
def test_connection_with_upgrade_token_accepted(connection):
    assert isinstance(ServerHandshake().receive_data(request_bytes(replace("Connection", connection))),
                      Request)


@pytest.mark.parametrize("key", [
    None,                                            # missing
    "",                                              # empty
    "not base64!",                                   # not base64
    base64.b64encode(b"x" * 15).decode(),            # 15 bytes
    base64.b64encode(b"x" * 17).decode(),            # 17 bytes
    "dGhlIHNhbXBsZSBub25jZQ",                        # padding missing
])
def test_key_not_base64_of_16_bytes_is_400(key):
    error = server_error(request_bytes(replace("Sec-WebSocket-Key", key)))
    assert error.status == 400
    status, _, body = answer(error)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert body == b"Sec-WebSocket-Key must be the base64 encoding of 16 bytes\n"


def test_two_keys_is_400():
    error = server_error(request_bytes(GOOD_HEADERS + [("Sec-WebSocket-Key", RFC_KEY)]))
    assert error.status == 400


@pytest.mark.parametrize("version, found", [(None, "none"), ("8", "8"), ("12", "12"), ("14", "14")])
def test_version_not_13_is_426_with_the_version_header(version, found):
    error = server_error(request_bytes(replace("Sec-WebSocket-Version", version)))
    assert error.status == 426
    assert error.headers == [("Sec-WebSocket-Version", "13")]
    status, headers, body = answer(error)
    assert status == b"HTTP/1.1 426 Upgrade Required"
    assert b"Sec-WebSocket-Version: 13" in headers
    assert body == f"unsupported Sec-WebSocket-Version ({found}); this server speaks 13\n".encode()


def test_error_answer_exact_bytes():
    error = server_error(request_bytes(replace("Sec-WebSocket-Version", "8")))
    assert ServerHandshake.reject(error) == (
        b"HTTP/1.1 426 Upgrade Required\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 61\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"unsupported Sec-WebSocket-Version (8); this server speaks 13\n"
    )


def test_origin_available_to_the_server():
    server = ServerHandshake()
    server.receive_data(request_bytes(GOOD_HEADERS + [("Origin", "http://example.com")]))
    assert server.origin == "http://example.com"


def test_origin_allow_list():
    allowed = ["http://good.example"]
    server = ServerHandshake(origins=allowed)
    assert isinstance(server.receive_data(request_bytes(GOOD_HEADERS + [("Origin", "http://good.example")])),
                      Request)
    error = server_error(request_bytes(GOOD_HEADERS + [("Origin", "http://evil.example")]), origins=allowed)
    assert error.status == 403
    status, _, body = answer(error)
    assert status == b"HTTP/1.1 403 Forbidden"
    assert body == b"origin 'http://evil.example' is not allowed\n"
    # no Origin header: refused unless None is in the list
    assert server_error(request_bytes(), origins=allowed).status == 403
    assert isinstance(ServerHandshake(origins=[None]).receive_data(request_bytes()), Request)


def test_malformed_http_is_400():
    error = server_error(b"GARBAGE\r\n\r\n")
    assert error.status == 400
    assert error.reason.startswith("malformed HTTP request")
    assert answer(error)[0] == b"HTTP/1.1 400 Bad Request"


def test_oversize_headers_are_431():
    error = server_error(b"GET /chat HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
    assert error.status == 431
    assert answer(error)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    # h11 bounds what it buffers while waiting for the end of the header block
    small = ServerHandshake(max_request_size=100)
    assert small.receive_data(request_bytes()[:100]) is NEED_DATA
    with pytest.raises(HandshakeError) as info:
        small.receive_data(b"X-Pad: " + b"p" * 20)
    assert info.value.status == 431


def test_reject_before_request_without_status_defaults_to_400():
    assert ServerHandshake.reject(HandshakeError(0, "no")).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_accept_before_a_valid_request_raises():
    with pytest.raises(HandshakeError):
        ServerHandshake().accept()


def test_trailing_data_after_the_request():
    server = ServerHandshake()
    server.receive_data(request_bytes() + b"\x81\x80abcd")
    assert server.trailing_data == b"\x81\x80abcd"


# --- subprotocols (§4.2.2 step 5.5, §4.1) ------------------------------------------------------

def test_server_picks_its_preferred_subprotocol():
    server = ServerHandshake(subprotocols=["superchat", "chat"])
    server.receive_data(request_bytes(GOOD_HEADERS + [("Sec-WebSocket-Protocol", "chat, superchat")]))
    assert server.offered_subprotocols == ["chat", "superchat"]
    assert server.subprotocol == "superchat"
    assert b"\r\nSec-WebSocket-Protocol: superchat\r\n" in server.accept()


def test_server_subprotocol_offers_over_several_headers():
    server = ServerHandshake(subprotocols=["b"])
    server.receive_data(request_bytes(GOOD_HEADERS + [("Sec-WebSocket-Protocol", "a"),
                                                      ("Sec-WebSocket-Protocol", "b")]))
    assert server.offered_subprotocols == ["a", "b"]
    assert server.subprotocol == "b"


def test_server_without_a_common_subprotocol_selects_none():
    server = ServerHandshake(subprotocols=["mqtt"])
    server.receive_data(request_bytes(GOOD_HEADERS + [("Sec-WebSocket-Protocol", "chat")]))
    assert server.subprotocol is None
    assert b"Sec-WebSocket-Protocol" not in server.accept()


def test_subprotocol_negotiation_end_to_end():
    client = ClientHandshake(host="x", subprotocols=["chat", "superchat"], rng=random.Random(3))
    server = ServerHandshake(subprotocols=["superchat"])
    server.receive_data(client.request_bytes())
    response = client.receive_data(server.accept())
    assert response.status == 101
    assert client.subprotocol == "superchat"


# --- the client's validation of the answer (§4.1) ---------------------------------------------

def response_bytes(headers, status_line="HTTP/1.1 101 Switching Protocols", body=b"") -> bytes:
    lines = [status_line] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


GOOD_RESPONSE = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", RFC_ACCEPT)]


def client_error(data: bytes, **kwargs) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        ClientHandshake(host="x", key=RFC_KEY, **kwargs).receive_data(data)
    return info.value


def test_client_accepts_a_valid_101():
    client = ClientHandshake(host="x", key=RFC_KEY)
    response = client.receive_data(response_bytes(GOOD_RESPONSE))
    assert isinstance(response, Response)
    assert response.status == 101
    assert client.subprotocol is None
    assert client.response is response


def test_client_accepts_a_101_in_pieces_and_keeps_trailing_frames():
    client = ClientHandshake(host="x", key=RFC_KEY)
    data = response_bytes(GOOD_RESPONSE) + b"\x81\x02hi"
    for byte in data[:40]:
        assert client.receive_data(bytes([byte])) is NEED_DATA
    assert client.receive_data(data[40:]).status == 101
    assert client.trailing_data == b"\x81\x02hi"


def test_client_accepts_mixed_case_upgrade_and_connection_lists():
    headers = [("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade"),
               ("Sec-WebSocket-Accept", RFC_ACCEPT)]
    assert ClientHandshake(host="x", key=RFC_KEY).receive_data(response_bytes(headers)).status == 101


def test_client_rejects_a_wrong_accept():
    wrong = [(k, accept_key("AAAAAAAAAAAAAAAAAAAAAA==") if k == "Sec-WebSocket-Accept" else v)
             for k, v in GOOD_RESPONSE]
    error = client_error(response_bytes(wrong))
    assert error.status == 101
    assert error.reason == "Sec-WebSocket-Accept does not match our key"
    missing = [h for h in GOOD_RESPONSE if h[0] != "Sec-WebSocket-Accept"]
    assert client_error(response_bytes(missing)).reason == "Sec-WebSocket-Accept does not match our key"


def test_client_rejects_a_101_without_upgrade():
    error = client_error(response_bytes([h for h in GOOD_RESPONSE if h[0] != "Upgrade"]))
    assert error.reason == "101 response without 'Upgrade: websocket'"
    error = client_error(response_bytes([("Upgrade", "h2c")] + GOOD_RESPONSE[1:]))
    assert error.reason == "101 response without 'Upgrade: websocket'"


def test_client_rejects_a_101_without_connection_upgrade():
    error = client_error(response_bytes([h for h in GOOD_RESPONSE if h[0] != "Connection"]))
    assert error.reason == "101 response without 'Connection: Upgrade'"


def test_client_rejects_an_unrequested_extension():
    error = client_error(response_bytes(GOOD_RESPONSE + [("Sec-WebSocket-Extensions", "permessage-deflate")]))
    assert "extension" in error.reason


def test_client_refuses_an_unoffered_subprotocol():
    error = client_error(response_bytes(GOOD_RESPONSE + [("Sec-WebSocket-Protocol", "chat")]))
    assert "subprotocol" in error.reason
    error = client_error(response_bytes(GOOD_RESPONSE + [("Sec-WebSocket-Protocol", "mqtt")]),
                         subprotocols=["chat"])
    assert "subprotocol" in error.reason


def test_client_refuses_two_subprotocols():
    headers = GOOD_RESPONSE + [("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "superchat")]
    assert "subprotocol" in client_error(response_bytes(headers), subprotocols=["chat", "superchat"]).reason


def test_client_validates_an_offered_subprotocol():
    client = ClientHandshake(host="x", key=RFC_KEY, subprotocols=["chat", "superchat"])
    client.receive_data(response_bytes(GOOD_RESPONSE + [("Sec-WebSocket-Protocol", "superchat")]))
    assert client.subprotocol == "superchat"


@pytest.mark.parametrize("status_line, status", [
    ("HTTP/1.1 403 Forbidden", 403), ("HTTP/1.1 404 Not Found", 404),
    ("HTTP/1.1 200 OK", 200), ("HTTP/1.1 426 Upgrade Required", 426),
])
def test_client_non_101_status_with_body(status_line, status):
    body = b"go away"
    error = client_error(response_bytes([("Content-Length", str(len(body)))], status_line, body))
    assert error.status == status
    assert error.reason == f"server rejected the WebSocket handshake: {status_line[9:]} (go away)"


def test_client_non_101_body_until_eof():
    client = ClientHandshake(host="x", key=RFC_KEY)
    assert client.receive_data(response_bytes([("Connection", "close")], "HTTP/1.1 403 Forbidden",
                                              b"nope")) is NEED_DATA
    with pytest.raises(HandshakeError) as info:
        client.receive_data(b"")  # EOF ends the body
    assert info.value.status == 403
    assert info.value.reason.endswith("(nope)")


def test_client_gets_the_server_rejection_of_lablib():
    """The full round trip: lablib's server refuses, lablib's client reports status and reason."""
    client = ClientHandshake(host="x", rng=random.Random(0), origin="http://evil.example")
    with pytest.raises(HandshakeError) as refused:
        ServerHandshake(origins=["http://good.example"]).receive_data(client.request_bytes())
    with pytest.raises(HandshakeError) as info:
        client.receive_data(ServerHandshake.reject(refused.value))
    assert info.value.status == 403
    assert "origin 'http://evil.example' is not allowed" in info.value.reason


@pytest.mark.parametrize("data", [b"NOT HTTP\r\n\r\n", b"HTTP/1.1 abc Nope\r\n\r\n",
                                  b"HTTP/1.1 101 Switching Protocols\r\nno colon here\r\n\r\n"])
def test_client_malformed_http_is_a_handshake_error(data):
    error = client_error(data)
    assert error.status == 0
    assert error.reason.startswith("malformed HTTP response")


def test_client_oversize_headers_are_a_handshake_error():
    error = client_error(b"HTTP/1.1 101 Switching Protocols\r\nX-Big: " + b"a" * 20_000)
    assert error.status == 0


def test_client_eof_before_the_answer():
    client = ClientHandshake(host="x", key=RFC_KEY)
    assert client.receive_data(b"HTTP/1.1 101 Swi") is NEED_DATA
    with pytest.raises(HandshakeError) as info:
        client.receive_data(b"")
    assert "closed" in info.value.reason


def test_validate_response_directly():
    headers = Headers(GOOD_RESPONSE + [("Sec-WebSocket-Protocol", "chat")])
    assert validate_response(Response(101, headers), RFC_KEY, ["chat"]) == "chat"
    with pytest.raises(HandshakeError):
        validate_response(Response(101, headers), "AAAAAAAAAAAAAAAAAAAAAA==", ["chat"])
