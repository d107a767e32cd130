"""The official Node socket.io for interop tests: the ``node_modules`` fixture.

It runs ``npm ci`` in ``interop/node/`` once (nothing when node_modules matches the lockfile)
and skips the test, with the reason, when Node is not installed::

    from tests.node_support import node_modules  # noqa: F401 (a fixture)

    @pytest.mark.node
    def test_x(node_modules): ...

and :class:`NodePeer`, the line protocol of the scripts in ``interop/node/``: commands as JSON
lines on stdin, what happens as JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time

import pytest

from lablib.services import ServiceUnavailable
from lablib.services.node import ensure_node_modules


@pytest.fixture(scope="session")
def node_modules():
    try:
        return ensure_node_modules()
    except ServiceUnavailable as exc:
        if exc.service in ("node", "npm"):
            pytest.skip(str(exc))
        raise


class NodePeer:
    """A Node script's stdout as a queue of JSON objects (each kept in :attr:`seen`); commands
    written to its stdin.  :attr:`guard` seconds without an expected line fail the test."""

    guard = 30.0

    def __init__(self, process) -> None:
        self.process = process
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def send(self, **command) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def expect(self, predicate) -> dict:
        """The next line that matches; fails on an error line, on exit or after :attr:`guard`."""
        deadline = time.monotonic() + self.guard
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the Node peer said nothing expected; saw {self.seen}")
            if line is None:
                raise AssertionError(f"the Node peer exited: {self.process.stderr.read()}")
            self.seen.append(line)
            if "error" in line:
                raise AssertionError(f"the Node peer failed: {line}")
            if predicate(line):
                return line


class AsyncNodePeer(NodePeer):
    """A :class:`NodePeer` whose :meth:`expect` is awaited (the wait runs in a thread, so the
    event loop that drives lablib's side keeps running)."""

    async def expect(self, predicate) -> dict:
        return await asyncio.to_thread(super().expect, predicate)
