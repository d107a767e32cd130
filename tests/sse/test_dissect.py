"""The dissector shows an event-stream response as its events, with lablib's own parser."""

from hypothesis import given, settings
from hypothesis import strategies as st

from lablib.capture.dissect import dissect_streams
from lablib.sse import EventReceived
from lablib.sse.dissect import decode_event_stream  # noqa: F401 -- registers the decoder
from lablib.sse.server import LAST_CHUNK, chunk

REQUEST = b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
BODY = b"retry: 10\n\n: ping\nid: 1\nevent: tick\ndata: a\ndata: b\n\ndata: c\r\n\r\n"


def sse(records):
    return [(r.kind, r.fields, r.raw) for r in records if r.layer == "sse"]


EXPECTED = [
    ("retry", {"retry": 10}, b"retry: 10\n"),
    ("comment", {"comment": " ping"}, b": ping\n"),
    ("event", {"event": "tick", "data": "a\nb", "id": "1", "data_lines": 2},
     b"id: 1\nevent: tick\ndata: a\ndata: b\n\n"),
    ("event", {"event": "message", "data": "c", "id": "1", "data_lines": 1},
     b"data: c\r\n\r\n"),
]


def test_a_chunked_event_stream_one_record_per_item():
    s2c = HEAD + chunk(BODY[:17]) + chunk(BODY[17:40]) + chunk(BODY[40:]) + LAST_CHUNK
    records = dissect_streams(REQUEST, s2c)
    assert sse(records) == EXPECTED
    response = next(r for r in records if r.kind == "response")
    assert response.summary == "HTTP/1.1 200 OK body=64B" and response.length == len(s2c)
    events = [r for r in records if r.kind == "event"]
    assert all(r.depth == 1 for r in events)
    assert events[0].obj == EventReceived("a\nb", "tick", "1")     # the parser's own object


def test_a_close_delimited_event_stream():
    s2c = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
           b"Connection: close\r\n\r\n" + BODY + b"data: never dispatched\n")
    records = sse(dissect_streams(REQUEST, s2c))
    assert records[:-1] == EXPECTED
    assert records[-1] == ("discarded", {"bytes": 23}, b"data: never dispatched\n")


def test_an_open_stream_is_shown_as_far_as_it_went():
    s2c = HEAD + chunk(BODY) + b"9\r\ndata"       # the next chunk is still arriving
    records = dissect_streams(REQUEST, s2c, eof=False)
    response = next(r for r in records if r.kind == "response")
    assert response.summary == "HTTP/1.1 200 OK body=68B so far, open"
    assert response.fields["complete"] is False and response.end == len(s2c)
    assert sse(records)[:-1] == EXPECTED
    assert sse(records)[-1] == ("pending", {"bytes": 4}, b"data")
    assert records[-1].layer == "sse"                  # no error: the stream is just open


def test_a_cut_stream_ends_with_a_truncated_record():
    s2c = HEAD + chunk(BODY) + b"9\r\ndata"
    records = dissect_streams(REQUEST, s2c)
    assert sse(records)[:-1] == EXPECTED
    assert records[-1].layer == "error" and records[-1].kind == "truncated"
    assert records[-1].offset == len(s2c) and records[-1].length == 0


def test_other_responses_are_untouched():
    plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ndata: x\n\n"
    assert sse(dissect_streams(REQUEST, plain)) == []
    cut_plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 99\r\n\r\nabc"
    assert [r.kind for r in dissect_streams(REQUEST, cut_plain)] == ["request", "truncated"]
    # the client's side is never an event stream, whatever its headers say
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: x\n\n"
    assert sse(dissect_streams(post, b"")) == []


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(HEAD + chunk(BODY) + LAST_CHUNK)), st.binary(max_size=60),
       st.booleans())
def test_cut_or_garbled_event_streams_never_raise(cut, garbage, eof):
    s2c = (HEAD + chunk(BODY) + LAST_CHUNK)[:cut] + garbage
    records = dissect_streams(REQUEST, s2c, eof=eof)
    assert not [r for r in records if r.kind in ("internal", "decoder")]
    s2c_records = [r for r in records if r.direction == "s2c" and r.depth == 0]
    assert max((r.end for r in s2c_records), default=0) == len(s2c)   # nothing silently dropped
