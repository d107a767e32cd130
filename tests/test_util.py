"""lablib._util: what every layer shares."""

import asyncio

from lablib._util import Changes


def test_until_returns_when_a_pulse_follows_the_change():
    async def scenario():
        changes, box = Changes(), []
        waiting = asyncio.create_task(changes.until(lambda: bool(box)))
        await asyncio.sleep(0)
        changes.pulse()                  # nothing changed yet: it waits on
        await asyncio.sleep(0)
        assert not waiting.done()
        box.append(1)
        changes.pulse()
        return await waiting

    assert asyncio.run(scenario()) is True


def test_until_gives_false_on_timeout_and_true_at_once_when_the_condition_holds():
    async def scenario():
        changes = Changes()
        return await changes.until(lambda: False, timeout=0.01), await changes.until(lambda: True)

    assert asyncio.run(scenario()) == (False, True)
