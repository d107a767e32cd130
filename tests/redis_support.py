"""A real Redis for the tests: the ``redis_url`` fixture.

It starts lablib's embedded server (:func:`lablib.services.redis.redis_server`) once per test
module, or uses ``REDIS_URL`` when that is set (CI points it at the distribution's
``redis-server`` too).  Import it where needed::

    from tests.redis_support import redis_url  # noqa: F401 (a fixture)
"""

from __future__ import annotations

import pytest

from lablib.services.redis import redis_server


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url
