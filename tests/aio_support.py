"""Asyncio scaffolding shared by the tests (the project does not depend on pytest-asyncio).

* :func:`asyncio_test` turns ``async def test_x(...)`` into a plain pytest test that runs the
  scenario in a fresh event loop under a guard timeout (``@asyncio_test`` or
  ``@asyncio_test(timeout=20)``);
* :func:`run_guarded` is that runner on its own;
* :func:`until` waits for a condition by polling it;
* :func:`aiohttp_site` serves an aiohttp application (python-engineio's or python-socketio's
  ``async_mode="aiohttp"`` servers) on an ephemeral port of 127.0.0.1.

Every timeout here is a guard against a hang that turns it into a failure, never a
measurement: a passing test does not depend on how long anything took.

Import with ``from tests.aio_support import asyncio_test, until`` (pyproject.toml puts the
repository root on pytest's ``pythonpath``; ``tests`` is a namespace package on purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

GUARD_TIMEOUT = 10.0   #: a scenario that hangs fails after this many seconds
CLEANUP_TIMEOUT = 1.0  #: how long each clean-up step may take once the scenario is over


def run_guarded(coro, timeout: float = GUARD_TIMEOUT):
    """Like ``asyncio.run(coro)``, but a scenario that hangs fails the test instead.

    Unlike ``asyncio.wait_for``, this also gives up on a scenario that hangs while being
    cancelled (e.g. in an ``async with`` exit), and every clean-up step - cancelling the tasks
    left over, closing asynchronous generators, shutting down the default executor - is
    bounded too, so one stuck test cannot hang the whole run.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # as asyncio.run does (subprocesses, get_event_loop())
    try:
        task = loop.create_task(coro)
        loop.run_until_complete(asyncio.wait({task}, timeout=timeout))
        if not task.done():
            task.cancel()
            loop.run_until_complete(asyncio.wait({task}, timeout=CLEANUP_TIMEOUT))
            raise TimeoutError(f"the scenario did not finish within {timeout} s")
        _cancel_leftovers(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(asyncio.wait({loop.create_task(loop.shutdown_default_executor())},
                                             timeout=CLEANUP_TIMEOUT))
        return task.result()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks the scenario left running; report those that failed meanwhile."""
    leftovers = asyncio.all_tasks(loop)
    if not leftovers:
        return
    for leftover in leftovers:
        leftover.cancel()
    loop.run_until_complete(asyncio.wait(leftovers, timeout=CLEANUP_TIMEOUT))
    for leftover in leftovers:
        if leftover.done() and not leftover.cancelled() and leftover.exception() is not None:
            loop.call_exception_handler({"message": "a task left over by the scenario failed",
                                         "exception": leftover.exception(), "task": leftover})


def asyncio_test(scenario=None, *, timeout: float = GUARD_TIMEOUT):
    """Run ``async def test_x(...)`` in a fresh event loop, as a plain (sync) pytest test.

    ``@asyncio_test`` guards with :data:`GUARD_TIMEOUT`; ``@asyncio_test(timeout=20)`` with
    another guard.  A module whose scenarios all need a longer guard can say so once:
    ``asyncio_test = aio_support.asyncio_test(timeout=15)`` (the result is used the same way).
    """
    if scenario is None:
        return functools.partial(asyncio_test, timeout=timeout)

    @functools.wraps(scenario)  # keeps the signature: fixtures and parametrize still work
    def test(*args, **kwargs):
        return run_guarded(scenario(*args, **kwargs), timeout)

    return test


async def until(condition, timeout: float = 5.0, interval: float = 0.005) -> None:
    """Wait until ``condition()`` holds, checking every ``interval`` seconds.

    Raises :class:`TimeoutError` if it still does not hold after ``timeout`` seconds.
    """
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def aiohttp_site(app, **runner_options):
    """Serve the aiohttp ``app`` on 127.0.0.1, an ephemeral port; yields the port.

    ``runner_options`` go to ``aiohttp.web.AppRunner`` (e.g. ``handler_cancellation=True``).
    """
    from aiohttp import web  # only the tests that talk to python-engineio/-socketio need it

    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
