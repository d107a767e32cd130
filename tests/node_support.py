"""The official Node socket.io for interop tests: the ``node_modules`` fixture.

It runs ``npm ci`` in ``interop/node/`` once (nothing when node_modules matches the lockfile)
and skips the test, with the reason, when Node is not installed::

    from tests.node_support import node_modules  # noqa: F401 (a fixture)

    @pytest.mark.node
    def test_x(node_modules): ...
"""

from __future__ import annotations

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
