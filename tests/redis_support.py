"""Real ``redis-server`` processes for the Redis store's tests (never a mock).

``redis_server``: one server for the whole session (``--appendonly yes --appendfsync always``
on a free port, in a temporary directory), killed at the end. ``redis_url``: its URL with
the database emptied first, so each test starts from nothing. A test that kills or
restarts Redis starts its own with :meth:`RedisServer.start` instead.
"""

from __future__ import annotations

from typing import Iterator

import pytest
import redis

from benchmarks._redis import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis(port=redis_server.port)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


def raw(server: RedisServer) -> redis.Redis:
    """A plain client of *server*, for edits behind callsys's back (close it after use)."""
    return redis.Redis(port=server.port)
