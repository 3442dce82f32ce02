"""Helpers for the API tests: a real server on 127.0.0.1 port 0 with API clients, and httpx over trio."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest
import trio

from callsys.hall import Hall, hall_from_mapping, read_toml
from conftest import CONFIG, SHANGHAI, merged
from server_support import START, start_server

KEY = "demo-integration-key"  # the demo hall's sample client ("demo")
OTHER_KEY = "other-client-key-0123456789"
SLOW_KEY = "slow-client-key-0123456789"
FAST_KEY = "fast-client-key-0123456789"
SLOT_1000 = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI).timestamp()  # a slot of the test day, not over yet


def api_hall(**overrides: Any) -> Hall:
    """The demo hall with three more clients: ``other``, ``slow`` (2 requests, then 429 for a
    long while: the limit is count-based in a test) and ``fast`` (no practical limit)."""
    data = merged(read_toml(CONFIG / "demo.toml"), {"integrations": {
        "other": {"key": OTHER_KEY},
        "slow": {"key": SLOW_KEY, "rate_per_s": 0.001, "burst": 2},
        "fast": {"key": FAST_KEY, "rate_per_s": 1e6, "burst": 1_000_000},
    }})
    return hall_from_mapping(merged(data, overrides), source="api-demo.toml")


@pytest.fixture
def hall_with_clients() -> Hall:
    return api_hall()


@pytest.fixture
async def api_server(nursery: trio.Nursery, hall_with_clients: Hall, tmp_path: Path):
    srv = await start_server(nursery, hall_with_clients, tmp_path / "hall.db")
    yield srv
    srv.shutdown()


@asynccontextmanager
async def api(server, key: str | None = KEY) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of *server*'s API (keep-alive), sending *key* unless None."""
    headers = {"x-api-key": key} if key is not None else {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}/api/v1", headers=headers,
                                 timeout=None) as http:
        yield http


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error body of *response*, checked to be *code* with *status*."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and isinstance(error["details"], dict)
    return error


__all__ = ["START", "api", "api_hall", "api_server", "error_of", "hall_with_clients"]
