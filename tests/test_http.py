"""lablib.http: header multi-dict, hand-written serialization, h11-based sans-I/O parsers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lablib.errors import HandshakeError, LablibError
from lablib.http import (NEED_DATA, Headers, Request, RequestParser, Response, ResponseParser,
                         error_response, format_request, format_response)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UPGRADE_HEADERS = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]


# --- Headers ---------------------------------------------------------------------------------

def test_headers_lookup_is_case_insensitive_and_ordered():
    headers = Headers([("Host", "example.com"), ("X-A", "1"), ("x-a", "2"), (b"Raw", b"\xe9")])
    assert headers.get("host") == "example.com"
    assert headers["HOST"] == "example.com"
    assert headers.get("X-A") == "1"  # the first one
    assert headers.get_all("x-A") == ["1", "2"]
    assert headers.get("raw") == "é"  # bytes are decoded as latin-1
    assert headers.get("missing") is None
    assert headers.get("missing", "default") == "default"
    assert headers.get_all("missing") == []
    assert "HOST" in headers and "missing" not in headers and 42 not in headers
    assert len(headers) == 4
    assert headers.items() == [("Host", "example.com"), ("X-A", "1"), ("x-a", "2"), ("Raw", "é")]
    assert list(headers) == headers.items()
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_tokens():
    headers = Headers([("Connection", "keep-alive, Upgrade"), ("connection", " ,CLOSE ,"),
                       ("Upgrade", "WebSocket")])
    assert headers.tokens("Connection") == ["keep-alive", "upgrade", "close"]
    assert headers.tokens("upgrade") == ["websocket"]
    assert headers.tokens("missing") == []


def test_headers_add_and_repr():
    headers = Headers()
    headers.add("A", "1")
    assert headers.items() == [("A", "1")]
    assert repr(headers) == "Headers([('A', '1')])"


def test_request_path_and_query():
    request = Request("GET", "/socket.io/?EIO=4&transport=polling", Headers())
    assert request.path == "/socket.io/"
    assert request.query == "EIO=4&transport=polling"
    assert Request("GET", "/", Headers()).query == ""


# --- serialization ---------------------------------------------------------------------------

def test_format_request_exact_bytes():
    assert format_request("GET", "/chat", [("Host", "x"), ("Upgrade", "websocket")]) == (
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    assert format_request("POST", "/p", [("Host", "x"), ("Content-Length", "2")], b"hi") == (
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")


def test_format_response_exact_bytes():
    assert format_response(101, [("Upgrade", "websocket")]) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert format_response(200, [("Content-Length", "2")], b"ok") == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert format_response(204) == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert format_response(599) == b"HTTP/1.1 599 \r\n\r\n"  # no standard reason phrase
    assert format_response(200, reason="Fine") == b"HTTP/1.1 200 Fine\r\n\r\n"


def test_error_response_exact_bytes():
    assert error_response(404, "no such path", [("X-Why", "test")]) == (
        b"HTTP/1.1 404 Not Found\r\n"
        b"X-Why: test\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 13\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"no such path\n")
    assert error_response(400, "é").endswith(b"Content-Length: 3\r\nConnection: close\r\n\r\n\xc3\xa9\n")
    assert b"Content-Type: application/json\r\n" in error_response(400, "{}", content_type="application/json")


def test_serialized_messages_parse_back():
    request = RequestParser().receive_data(format_request("PUT", "/x?y=1", [("Host", "h"), ("Content-Length", "3")],
                                                          b"abc"))
    assert (request.method, request.target, request.body) == ("PUT", "/x?y=1", b"abc")
    assert request.headers["content-length"] == "3"
    response = ResponseParser().receive_data(error_response(403, "nope"))
    assert (response.status, response.reason, response.body) == (403, "Forbidden", b"nope\n")


# --- RequestParser ---------------------------------------------------------------------------

def test_request_in_one_chunk_and_byte_by_byte():
    data = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Test: 1\r\n\r\n"
    request = RequestParser().receive_data(data)
    assert isinstance(request, Request)
    assert (request.method, request.target, request.http_version) == ("GET", "/a?b=c", "1.1")
    assert request.headers.get("X-Test") == "1" and request.body == b""
    parser = RequestParser()
    for i in range(len(data) - 1):
        assert parser.receive_data(data[i:i + 1]) is NEED_DATA
    again = parser.receive_data(data[-1:])
    assert (again.method, again.target, again.headers.items()) == ("GET", "/a?b=c", request.headers.items())


def test_request_bodies():
    parser = RequestParser()
    assert parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel") is NEED_DATA
    assert parser.receive_data(b"lo").body == b"hello"
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
    assert RequestParser().receive_data(chunked).body == b"hello"


def test_request_body_too_large_is_413():
    parser = RequestParser(max_body_size=4)
    with pytest.raises(HandshakeError) as info:
        parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert info.value.status == 413


def test_a_content_length_over_the_limit_is_413_before_the_body():
    # refused on the header block alone: no need to read (or wait for) a body we would drop
    parser = RequestParser(max_body_size=4)
    with pytest.raises(HandshakeError) as info:
        parser.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    assert info.value.status == 413
    at_the_limit = RequestParser(max_body_size=4)
    assert at_the_limit.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n") is NEED_DATA


def test_http_10_request_is_parsed():
    request = RequestParser().receive_data(b"GET / HTTP/1.0\r\n\r\n")
    assert request.http_version == "1.0"


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",                        # HTTP/1.1 without Host
    b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    b"\x00\x01\x02\r\n\r\n",
])
def test_malformed_request_is_400(data):
    with pytest.raises(HandshakeError) as info:
        RequestParser().receive_data(data)
    assert info.value.status == 400
    assert info.value.reason.startswith("malformed HTTP request")


def test_oversize_request_headers_are_431():
    parser = RequestParser(max_header_size=1024)
    assert parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n") is NEED_DATA
    with pytest.raises(HandshakeError) as info:
        parser.receive_data(b"X-Big: " + b"a" * 2000)
    assert info.value.status == 431


def test_oversize_request_headers_in_one_chunk_are_431():
    """h11 bounds a header block while it is incomplete; one that arrives whole in a single
    read is measured by RequestParser itself."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    with pytest.raises(HandshakeError) as info:
        RequestParser(max_header_size=1024).receive_data(request)
    assert info.value.status == 431
    assert RequestParser(max_header_size=len(request)).receive_data(request).method == "GET"
    with pytest.raises(HandshakeError):
        RequestParser(max_header_size=len(request) - 1).receive_data(request)


def test_oversize_response_headers_in_one_chunk_are_refused():
    response = (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nX-Big: "
                + b"a" * 2000 + b"\r\n\r\n")
    with pytest.raises(HandshakeError, match="response header fields exceed 1024 bytes"):
        ResponseParser(max_header_size=1024).receive_data(response)
    assert ResponseParser(max_header_size=len(response)).receive_data(response).status == 403


def test_eof_before_a_complete_request():
    parser = RequestParser()
    assert parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n") is NEED_DATA
    with pytest.raises(HandshakeError) as info:
        parser.receive_eof()
    assert info.value.status == 400


def test_upgrade_request_keeps_the_bytes_that_follow():
    parser = RequestParser()
    data = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    request = parser.receive_data(data + b"\x81\x80abcd")
    assert request.target == "/chat"
    assert parser.trailing_data == b"\x81\x80abcd"


def test_keep_alive_next_cycle():
    parser = RequestParser()
    first = parser.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo")
    assert first.target == "/a"
    assert parser.trailing_data == b"GET /b HTTP/1.1\r\nHo"
    parser.start_next_cycle()
    assert parser.receive_data(b"st: x\r\n\r\n").target == "/b"
    parser.start_next_cycle()
    assert parser.receive_data(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n").target == "/c"


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
@FAST
def test_request_parser_raises_only_lablib_errors(data, cuts):
    parser = RequestParser(max_header_size=200, max_body_size=50)
    bounds = [0] + sorted({min(c, len(data)) for c in cuts if c > 0}) + [len(data)]
    try:
        for a, b in zip(bounds, bounds[1:]):
            if a < b:
                parser.receive_data(data[a:b])
    except LablibError as exc:
        assert isinstance(exc, HandshakeError)
        assert 400 <= exc.status < 500


# --- ResponseParser --------------------------------------------------------------------------

def test_response_101_with_trailing_frames():
    parser = ResponseParser(headers=UPGRADE_HEADERS)
    data = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            b"\x81\x02hi")
    for i in range(30):
        assert parser.receive_data(data[i:i + 1]) is NEED_DATA
    response = parser.receive_data(data[30:])
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (101, "Switching Protocols")
    assert response.headers.get("upgrade") == "websocket"
    assert parser.trailing_data == b"\x81\x02hi"


def test_response_with_content_length_body():
    parser = ResponseParser()
    assert parser.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no") is NEED_DATA
    response = parser.receive_data(b"k")
    assert (response.status, response.reason, response.body) == (200, "OK", b"ok")


def test_response_with_chunked_body():
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1\r\n!\r\n0\r\n\r\n"
    assert ResponseParser().receive_data(data).body == b"ok!"


def test_response_body_until_eof():
    parser = ResponseParser()
    assert parser.receive_data(b"HTTP/1.1 200 OK\r\n\r\nabc") is NEED_DATA
    assert parser.receive_eof().body == b"abc"


def test_response_100_continue_is_skipped():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    assert ResponseParser().receive_data(data).status == 204


def test_response_to_head_has_no_body():
    response = ResponseParser(method="HEAD").receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    assert response.body == b""


def test_response_body_too_large():
    with pytest.raises(HandshakeError) as info:
        ResponseParser(max_body_size=1).receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert info.value.status == 0


def test_response_eof_before_complete():
    parser = ResponseParser()
    assert parser.receive_data(b"HTTP/1.1 200 OK\r\n") is NEED_DATA
    with pytest.raises(HandshakeError) as info:
        parser.receive_eof()
    assert info.value.status == 0


@pytest.mark.parametrize("data", [b"NOT HTTP\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"])
def test_malformed_response(data):
    with pytest.raises(HandshakeError) as info:
        ResponseParser().receive_data(data)
    assert info.value.status == 0
    assert info.value.reason.startswith("malformed HTTP response")


def test_unexpected_101_is_a_handshake_error():
    # a 101 to a request that did not ask to upgrade is malformed for h11
    with pytest.raises(HandshakeError):
        ResponseParser().receive_data(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")


def test_oversize_response_headers():
    parser = ResponseParser(max_header_size=1024)
    with pytest.raises(HandshakeError):
        parser.receive_data(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2000)


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10), st.booleans())
@FAST
def test_response_parser_raises_only_lablib_errors(data, cuts, eof):
    parser = ResponseParser(headers=UPGRADE_HEADERS, max_header_size=200, max_body_size=50)
    bounds = [0] + sorted({min(c, len(data)) for c in cuts if c > 0}) + [len(data)]
    try:
        result = NEED_DATA
        for a, b in zip(bounds, bounds[1:]):
            if a < b and result is NEED_DATA:
                result = parser.receive_data(data[a:b])
        if eof and result is NEED_DATA:
            parser.receive_eof()
    except LablibError as exc:
        assert isinstance(exc, HandshakeError)


def test_an_http_version_other_than_1_x_gets_505():
    # RFC 9110 §15.6.6: h11 parses any HTTP/d.d; we answer only 1.x.
    with pytest.raises(HandshakeError) as info:
        RequestParser().receive_data(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n")
    assert info.value.status == 505


@pytest.mark.parametrize("value, media_type", [
    ("text/plain; charset=UTF-8", "text/plain"),
    ("Text/Event-Stream", "text/event-stream"),
    (" application/octet-stream ;x=1", "application/octet-stream"),
    (None, ""),
])
def test_the_media_type_of_a_content_type(value, media_type):
    headers = Headers([("Content-Type", value)] if value is not None else [])
    assert headers.media_type() == media_type
