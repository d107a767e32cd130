"""The in-memory room registry: join/leave, each sid's own room, broadcast targets with skip_sids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lablib.socketio.adapter import Adapter, InMemoryAdapter


@pytest.fixture
def rooms():
    """Three connected sids, each in its own room, two of them in "lobby"."""
    adapter = InMemoryAdapter()
    for sid in ("A", "B", "C"):
        adapter.join(sid, sid)
    adapter.join("A", "lobby")
    adapter.join("C", "lobby")
    return adapter


def test_is_an_adapter(rooms):
    assert isinstance(rooms, InMemoryAdapter)
    adapter: Adapter = rooms   # the Protocol is satisfied (checked by type checkers)
    assert adapter.members("lobby") == ["A", "C"]


def test_membership(rooms):
    assert rooms.rooms_of("A") == ["A", "lobby"]
    assert rooms.rooms_of("B") == ["B"]
    assert rooms.members("B") == ["B"]
    assert rooms.members("nowhere") == []
    assert rooms.rooms_of("nobody") == []
    assert rooms.rooms() == ["A", "B", "C", "lobby"]


def test_broadcast_targets(rooms):
    assert rooms.broadcast_targets() == ["A", "B", "C"]                      # the namespace
    assert rooms.broadcast_targets("lobby") == ["A", "C"]                    # a room
    assert rooms.broadcast_targets("B") == ["B"]                             # one sid
    assert rooms.broadcast_targets(["lobby", "B", "A"]) == ["A", "C", "B"]   # each once
    assert rooms.broadcast_targets("lobby", skip_sids="A") == ["C"]          # skip the sender
    assert rooms.broadcast_targets(skip_sids=["A", "C"]) == ["B"]
    assert rooms.broadcast_targets("nowhere") == []
    assert rooms.broadcast_targets([]) == []


def test_join_twice_is_once(rooms):
    rooms.join("A", "lobby")
    assert rooms.members("lobby") == ["A", "C"]
    assert rooms.rooms_of("A") == ["A", "lobby"]


def test_leave(rooms):
    rooms.leave("A", "lobby")
    assert rooms.members("lobby") == ["C"]
    assert rooms.rooms_of("A") == ["A"]
    rooms.leave("C", "lobby")
    assert "lobby" not in rooms.rooms()   # an empty room disappears
    rooms.leave("C", "lobby")             # leaving again is harmless
    rooms.leave("nobody", "lobby")
    assert rooms.broadcast_targets() == ["A", "B", "C"]


def test_leave_all_forgets_the_sid(rooms):
    rooms.leave_all("A")
    assert rooms.rooms_of("A") == []
    assert rooms.members("lobby") == ["C"]
    assert rooms.broadcast_targets() == ["B", "C"]
    rooms.leave_all("A")


operations = st.lists(st.tuples(st.sampled_from(["join", "leave", "leave_all"]),
                                st.sampled_from("abcd"), st.sampled_from(["r1", "r2", "a", "b"])),
                      max_size=40)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_the_two_indexes_stay_consistent(ops):
    adapter = InMemoryAdapter()
    model: dict[str, set[str]] = {}
    for op, sid, room in ops:
        if op == "join":
            adapter.join(sid, room)
            model.setdefault(sid, set()).add(room)
        elif op == "leave":
            adapter.leave(sid, room)
            model.get(sid, set()).discard(room)
        else:
            adapter.leave_all(sid)
            model.pop(sid, None)
    model = {sid: rooms for sid, rooms in model.items() if rooms}
    assert {sid: set(adapter.rooms_of(sid)) for sid in "abcd" if adapter.rooms_of(sid)} == model
    for room in adapter.rooms():
        assert set(adapter.members(room)) == {sid for sid, rs in model.items() if room in rs}
    assert set(adapter.broadcast_targets()) == set(model)
