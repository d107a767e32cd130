"""The event-stream codec against the WHATWG HTML standard §9.2.5-§9.2.6, byte by byte."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lablib.errors import LablibError, LocalProtocolError, PayloadTooBig
from lablib.sse.codec import BOM, EventStreamParser, encode, encode_comment, encode_event
from lablib.sse.events import CommentReceived, EventReceived, RetryReceived


def parse(data: bytes, **options) -> list:
    return EventStreamParser(**options).receive_data(data)


def events(data: bytes, **options) -> list[EventReceived]:
    return [e for e in parse(data, **options) if isinstance(e, EventReceived)]


# --- §9.2.6, field by field ---------------------------------------------------------------------

def test_data_lines_are_joined_with_lf_and_the_last_lf_removed():
    assert events(b"data: a\ndata: b\ndata\ndata:\n\n") == [EventReceived("a\nb\n\n")]


def test_one_space_after_the_colon_is_removed_only_one():
    assert events(b"data:x\n\ndata: x\n\ndata:  x\n\n") == [
        EventReceived("x"), EventReceived("x"), EventReceived(" x")]


def test_default_type_is_message_and_event_sets_it_for_one_event():
    assert events(b"event: tick\ndata: 1\n\ndata: 2\n\n") == [
        EventReceived("1", "tick"), EventReceived("2", "message")]


def test_empty_data_buffer_dispatches_nothing_but_resets_the_type():
    # The example of §9.2.6: the first block has no data, its type does not leak.
    assert events(b"event: x\n\ndata: y\n\n") == [EventReceived("y", "message")]
    assert events(b"\n\n\n") == []


def test_id_persists_and_an_empty_id_resets_it():
    assert events(b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n") == [
        EventReceived("a", last_event_id="7"), EventReceived("b", last_event_id="7"),
        EventReceived("c", last_event_id="")]


def test_id_with_null_is_ignored():
    assert events(b"id: 1\n\nid: 2\x003\ndata: d\n\n") == [EventReceived("d", last_event_id="1")]


def test_last_event_id_is_set_even_when_nothing_is_dispatched():
    parser = EventStreamParser()
    assert parser.receive_data(b"id: 42\n\n") == []
    assert parser.last_event_id == "42"


def test_id_without_dispatch_does_not_change_last_event_id():
    parser = EventStreamParser(last_event_id="1")
    parser.receive_data(b"id: 2\ndata: x\n")      # no empty line yet
    assert parser.last_event_id == "1"
    parser.receive_eof()                           # §9.2.5: pending data discarded
    assert parser.last_event_id == "1"


@pytest.mark.parametrize("value, retry", [
    (b"3000", 3000), (b"0", 0), (b"007", 7),
    (b"", None), (b"  10", None), (b" 10", 10), (b"10 ", None), (b"1e3", None), (b"-1", None),
    (b"\xc2\xb2", None), (b"\xd9\xa3", None),   # superscript two, Arabic-Indic three
])
def test_retry_accepts_ascii_digits_only(value, retry):
    parser = EventStreamParser()
    items = parser.receive_data(b"retry:" + value + b"\n")
    assert parser.retry == retry
    assert items == ([RetryReceived(retry)] if retry is not None else [])


def test_comments_and_unknown_fields():
    assert parse(b": keepalive\nfoo: bar\n:\ndata: x\n\n") == [
        CommentReceived(" keepalive"), CommentReceived(""), EventReceived("x")]


def test_a_line_without_colon_is_a_field_name_with_empty_value():
    assert events(b"data\n\n") == [EventReceived("")]
    assert events(b"event\ndata: x\n\n") == [EventReceived("x", "message")]


# --- §9.2.5: line endings, BOM, UTF-8, end of stream ---------------------------------------------

STREAM = b"event: a\r\ndata: 1\r\rdata: 2\n\ndata: 3\r\n\r\n"
EXPECTED = [EventReceived("1", "a"), EventReceived("2"), EventReceived("3")]


def test_crlf_lf_and_cr_all_end_a_line():
    assert events(STREAM) == EXPECTED


def test_a_cr_at_a_chunk_boundary_followed_by_lf():
    parser = EventStreamParser()
    assert parser.receive_data(b"data: x\r") == []
    assert parser.receive_data(b"\n\r") == [EventReceived("x")]
    assert parser.receive_data(b"\ndata: y\r\r") == [EventReceived("y")]


def test_the_lf_of_a_split_crlf_is_not_an_empty_line():
    parser = EventStreamParser()
    assert parser.receive_data(b"data: x\r") == []
    assert parser.receive_data(b"\ndata: y\r") == []
    assert parser.receive_data(b"\n\r\n") == [EventReceived("x\ny")]


def test_a_cr_cr_dispatches_at_once():
    # CR alone ends a line: no need to wait for a possible LF.
    assert EventStreamParser().receive_data(b"data: x\r\r") == [EventReceived("x")]


def test_a_leading_bom_is_dropped_once_even_split():
    parser = EventStreamParser()
    assert parser.receive_data(BOM[:1]) == []
    assert parser.receive_data(BOM[1:2]) == []
    assert parser.receive_data(BOM[2:] + b"data: x\n\n") == [EventReceived("x")]
    # A second BOM is part of the field name, which is then unknown.
    assert events(BOM + BOM + b"data: x\n\n") == []
    assert events(BOM + b"data: \xef\xbb\xbfx\n\n") == [EventReceived("\ufeffx")]


def test_invalid_utf8_becomes_replacement_characters():
    assert events(b"data: \xff\xc3\n\n") == [EventReceived("\ufffd\ufffd")]


def test_an_event_without_its_empty_line_is_not_dispatched_at_eof():
    parser = EventStreamParser()
    assert parser.receive_data(b"data: x\n") == []
    assert parser.pending == 8
    assert parser.receive_eof() == []


def test_spans_locate_the_bytes():
    data = b": hi\ndata: x\n\n"
    comment, event = parse(data)
    assert data[slice(*comment.span)] == b": hi\n"
    assert data[slice(*event.span)] == b"data: x\n\n"


# --- limits --------------------------------------------------------------------------------------

def test_a_line_longer_than_max_size_is_an_error_and_stays_one():
    parser = EventStreamParser(max_size=16)
    parser.receive_data(b"data: " + b"x" * 10)
    with pytest.raises(PayloadTooBig):
        parser.receive_data(b"x" * 10)
    with pytest.raises(PayloadTooBig):
        parser.receive_data(b"\n\n")


def test_an_event_larger_than_max_size_is_an_error():
    with pytest.raises(PayloadTooBig):
        EventStreamParser(max_size=16).receive_data(b"data: 12345678\n" * 3)


def test_many_small_events_never_hit_the_limit():
    assert len(events(b"data: x\n\n" * 1000, max_size=16)) == 1000


# --- the encoder, exact bytes ---------------------------------------------------------------------

def test_encode_exact_bytes():
    assert encode("hi") == b"data: hi\n\n"
    assert encode("a\r\nb\rc\nd", event="tick", id="7", retry=50) == (
        b"id: 7\nevent: tick\ndata: a\ndata: b\ndata: c\ndata: d\nretry: 50\n\n")
    assert encode(retry=10) == b"retry: 10\n\n"
    assert encode("", sep="\r\n") == b"data: \r\n\r\n"
    assert encode("x", comment="c1\nc2") == b":c1\n:c2\ndata: x\n\n"
    assert encode_comment() == b":\n"
    assert encode_event(EventReceived("é", "message", "")) == "data: é\n\n".encode()


@pytest.mark.parametrize("kwargs", [
    {"event": "a\nb"}, {"event": "a\rb"}, {"id": "1\n"}, {"id": "a\x00"}, {"retry": -1},
    {"retry": 1.5}, {"retry": True}, {"data": "\ud800"}, {"sep": "\n\n"},
])
def test_encode_rejects_what_cannot_be_sent(kwargs):
    with pytest.raises(LocalProtocolError):
        encode(**({"data": "x"} | kwargs))


# --- properties --------------------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
one_line = text.filter(lambda s: "\r" not in s and "\n" not in s)
sse_events = st.builds(EventReceived, text, one_line.filter(bool), one_line.filter(lambda s: "\x00" not in s))


def _normalize(data: str) -> str:
    return data.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(sse_events, max_size=8), st.sampled_from(["\n", "\r\n", "\r"]))
def test_encode_then_parse_round_trips(sent, sep):
    wire = b"".join(encode(e.data, event=e.event, id=e.last_event_id, sep=sep) for e in sent)
    assert events(wire) == [EventReceived(_normalize(e.data), e.event, e.last_event_id)
                            for e in sent]


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"data: x", b"data:y", b"id: 1", b"id", b"event: e",
                                 b"retry: 5", b": c", b"", b"\xef\xbb\xbf", b"\xc3\xa9", b"\xff",
                                 b"\r", b"\n", b"\r\n", b"\x00", b"data"]), max_size=30),
       st.lists(st.integers(0, 10_000), max_size=10))
def test_any_chunking_gives_the_same_items(pieces, cuts):
    stream = b"".join(pieces)
    whole = EventStreamParser()
    expected = whole.receive_data(stream)
    parser = EventStreamParser()
    got = [item for part in _chunked(stream, cuts) for item in parser.receive_data(part)]
    assert got == expected
    assert (parser.last_event_id, parser.retry) == (whole.last_event_id, whole.retry)
    bytewise = EventStreamParser()                 # every boundary at once: one byte a chunk
    assert [item for i in range(len(stream))
            for item in bytewise.receive_data(stream[i:i + 1])] == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 10_000), max_size=5))
def test_random_bytes_raise_only_lablib_errors(data, cuts):
    parser = EventStreamParser(max_size=32)
    try:
        for part in _chunked(data, cuts):
            parser.receive_data(part)
        parser.receive_eof()
    except LablibError:
        pass
