"""socket.io-client's reconnection backoff: the formula, the defaults, the cap, seeded sequences."""

from __future__ import annotations

import random

import pytest

from lablib.socketio.backoff import Backoff, backoff_delay


@pytest.mark.parametrize("attempt, rand, expected", [
    # ms = 1000 * 2**attempt; deviation = floor(rand * 0.5 * ms); even floor(rand*10): minus
    (0, 0.0, 1000),
    (0, 0.25, 875),      # floor(2.5) = 2, even: 1000 - 125
    (0, 0.35, 1175),     # floor(3.5) = 3, odd:  1000 + 175
    (0, 0.999, 1499),    # odd: 1000 + floor(499.5)
    (1, 0.5, 2500),      # floor(5) = 5, odd: 2000 + 500
    (2, 0.95, 5000),     # 4000 + 1900 = 5900, capped
    (2, 0.05, 3900),     # 4000 - 100
    (3, 0.85, 4600),     # 8000 - 3400: below the cap even late on
    (3, 0.15, 5000),     # 8000 + 600, capped
    (5, 0.05, 5000),     # 32000 - 800, capped
])
def test_formula(attempt, rand, expected):
    assert backoff_delay(attempt, rand) == expected


def test_without_jitter_it_doubles_up_to_the_cap():
    b = Backoff(jitter=0, rng=random.Random(0))
    assert [b.duration() for _ in range(6)] == [1000, 2000, 4000, 5000, 5000, 5000]
    b.reset()
    assert b.duration() == 1000


def test_seeded_sequence_matches_the_formula_and_the_cap():
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.duration() for _ in range(40)]
    rands = random.Random(7)
    assert delays == [backoff_delay(n, rands.random()) for n in range(40)]
    assert backoff.attempts == 40
    assert 500 <= delays[0] <= 1500 and 1000 <= delays[1] <= 3000 and 2000 <= delays[2] <= 5000
    assert all(4000 <= d <= 5000 for d in delays[3:])
    assert max(delays) <= 5000


def test_seeded_sequences_repeat():
    a, b = Backoff(rng=random.Random(3)), Backoff(rng=random.Random(3))
    assert [a.duration() for _ in range(10)] == [b.duration() for _ in range(10)]


def test_very_many_attempts_stay_at_the_cap():
    # JavaScript's doubles reach Infinity after ~1014 attempts (and the reference then returns 0
    # for an "even" draw); the exact integer formula stays at the cap.
    assert backoff_delay(10_000, 0.05) == 5000
    assert backoff_delay(10_000, 0.95) == 5000


def test_custom_options():
    assert backoff_delay(0, 0.25, min_ms=100, max_ms=10_000, jitter=0.2) == 95
    assert backoff_delay(4, 0.0, min_ms=100, max_ms=10_000, factor=3) == 8100
    with pytest.raises(ValueError):
        Backoff(jitter=1.5)
    with pytest.raises(ValueError):
        Backoff(min_ms=0)
