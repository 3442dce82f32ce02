"""A standby serves the hall's clients (issue 12, item 2): two servers of one hall on one real
redis-server, in this process — the first owns the hall, the second follows it.

Displays, LEDs and phones on the standby see the owner's calls live; commands sent to the
standby are forwarded to the owner and answered as the owner answers them (``ok`` with the
owner's ``seq``, typed errors that change nothing); the HTTP API's writes are forwarded to
the owner too; ``/healthz`` and ``/readyz`` name the role; when the owner stops, the standby takes
over in place and its clients stay connected. (Killing the owner with SIGKILL, with real
processes: ``tests/test_redis_standby.py``.)
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from dataclasses import replace
from functools import partial

import httpx
import pytest
import trio

from api_support import KEY
from benchmarks._redis import free_port
from callsys.client import RequestFailed, connect_device
from callsys.clock import ScaledClock
from callsys.hall import Integration
from callsys.server import ServerSettings, serve_callsys
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from server_support import SECRET, START, TOKENS, client, guard, push_of, state_of
from test_webhooks import HOOK_SECRET, Receiver


async def start(nursery: trio.Nursery, hall, store: str):
    """A server of *hall* on *store* (port 0), the way ``callsys serve`` runs it."""
    return await nursery.start(partial(serve_callsys, hall, store, port=0, clock=ScaledClock(START), secret=SECRET,
                                       settings=ServerSettings(phone_refresh_s=math.inf)))


@pytest.fixture
async def pair(nursery, demo_hall, redis_url, tmp_path, monkeypatch):
    """``(owner, standby)``: two servers of the demo hall on one Redis."""
    monkeypatch.chdir(tmp_path)  # the files beside a Redis store (var/audio...): the test's own
    owner = await start(nursery, demo_hall, redis_url)
    second = await start(nursery, demo_hall, redis_url)
    assert owner.owning and not second.owning
    while second.owner_url is None:  # the standby's follow task reads who owns the hall
        await second.owner_change()
    yield owner, second
    second.shutdown()
    owner.shutdown()


@guard(60)
async def test_displays_leds_and_phones_on_the_standby_see_the_owners_calls(pair):
    owner, second = pair
    assert second.owner_url == owner.url == owner.owner_url
    async with client(second, "display", subscribe={"floors": [1]}) as board, \
            client(second, "display", subscribe={"windows": [7]}) as led, \
            client(second, "kiosk") as kiosk:
        assert len((await board.next_push())["windows"]) == 10
        assert [w["window"] for w in (await led.next_push())["windows"]] == [7]
        ticket = await kiosk.request("take_number", service="SOC")  # forwarded to the owner
        async with client(second, "phone", ticket=ticket["ticket"], secret=ticket["secret"]) as phone:
            hello = await phone.next_push()
            assert (hello["number"], hello["status"], hello["event"]) == (ticket["number"], "waiting", "hello")
            async with client(owner, "clerk", window=7) as clerk:  # the clerk works on the owner
                await clerk.request("open_window")
                called = await clerk.request("call_next")
            for display in (board, led):
                opened = await push_of(display, "window_update")
                assert (opened["window"], opened["event"]) == (7, "opened")
                update = await push_of(display, "window_update")
                assert (update["event"], update["number"], update["seq"]) == ("called", ticket["number"],
                                                                              called["seq"])
            update = await push_of(phone, "ticket_update")
            assert (update["ticket"], update["status"], update["window"], update["event"]) == \
                (ticket["ticket"], "called", 7, "ticket_called")
            assert (await phone.request("position"))["status"] == "called"  # answered by the standby


@guard(60)
async def test_commands_on_the_standby_are_answered_by_the_owner(pair):
    owner, second = pair
    async with client(second, "kiosk") as kiosk, client(second, "clerk", window=3) as clerk, \
            client(second, "manager") as manager, client(owner, "manager") as direct:
        first = await kiosk.request("take_number", service="BIZ", key="k1")
        assert first["seq"] == owner.journal.durable_seq  # the owner's seq, committed there
        assert second.journal.durable_seq >= first["seq"]  # and followed here before the answer
        assert (await kiosk.request("position", ticket=first["ticket"]))["status"] == "waiting"  # read your write
        again = await kiosk.request("take_number", service="BIZ", key="k1")
        assert again["repeat"] is True and again["ticket"] == first["ticket"]
        await clerk.request("open_window")
        called = await clerk.request("call_next")
        assert called["events"][0]["kind"] == "ticket_called" and called["seq"] == owner.journal.durable_seq
        seq = owner.journal.durable_seq
        before = state_of(owner)
        with pytest.raises(RequestFailed) as double:  # the window is busy with its call: the owner's typed error
            await clerk.request("call_next", key="double")
        assert double.value.code == "window_busy"
        with pytest.raises(RequestFailed) as unknown:
            await manager.request("pause", window=99)
        with pytest.raises(RequestFailed) as unknown_direct:
            await direct.request("pause", window=99)
        assert unknown.value.code == "unknown_window"
        assert (str(unknown.value), unknown.value.details) == (str(unknown_direct.value), unknown_direct.value.details)
        assert owner.journal.durable_seq == seq and state_of(owner) == before  # nothing changed
        assert state_of(second) == before  # the standby holds the owner's state
        with pytest.raises(RequestFailed) as refused:  # validated here, like on the owner: never forwarded
            await kiosk.request("take_number", service="NOPE")
        assert refused.value.code != "unavailable"


@guard(60)
async def test_health_and_readiness_name_the_role_and_api_writes_on_a_standby_are_forwarded(pair):
    owner, second = pair
    async with httpx.AsyncClient() as http:
        for server, role in ((owner, "owner"), (second, "standby")):
            base = f"http://127.0.0.1:{server.port}"
            health = (await http.get(f"{base}/healthz")).json()
            assert health == {"status": "ok", "role": role, "owner": owner.owner_id, "owner_url": owner.url}
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["role"] == role
        headers = {"x-api-key": KEY, "idempotency-key": "api-1"}
        taken = await http.post(f"http://127.0.0.1:{second.port}/api/v1/tickets", json={"service": "SOC"},
                                headers=headers)
        assert taken.status_code == 201, taken.text  # executed by the owner, its answer unchanged
        ticket = taken.json()
        assert owner.engine.state.tickets[ticket["ticket"]].number == ticket["number"]
        again = await http.post(f"http://127.0.0.1:{owner.port}/api/v1/tickets", json={"service": "SOC"},
                                headers=headers)  # the same key at the owner: the same ticket, executed once
        assert (again.status_code, again.json()["ticket"]) == (201, ticket["ticket"])
        invalid = await http.post(f"http://127.0.0.1:{second.port}/api/v1/tickets", json={"service": "SOC", "x": 1},
                                  headers={"x-api-key": KEY})
        assert invalid.status_code == 422  # refused by the standby itself: nothing forwarded
        second.owner_url = f"ws://127.0.0.1:{free_port()}/ws"  # the owner unreachable (as while it dies)
        refused = await http.post(f"http://127.0.0.1:{second.port}/api/v1/tickets", json={"service": "SOC"},
                                  headers={"x-api-key": KEY, "idempotency-key": "api-2"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["code"] == "unavailable" and error["details"]["retry"] is True
        assert len(owner.engine.state.tickets) == 1  # nothing executed twice, nothing executed unanswered


@guard(60)
async def test_the_standby_takes_over_in_place_and_its_clients_stay_connected(pair):
    owner, second = pair
    async with client(second, "display", subscribe={"windows": [4]}) as led, client(second, "kiosk") as kiosk, \
            client(second, "clerk", window=4) as clerk:
        await led.next_push()  # the board
        before = await kiosk.request("take_number", service="BIZ", key="before")
        owner.shutdown()  # a clean stop releases the lease: the standby takes it at once
        while not second.owning:
            await second.owner_change()
        assert second.owner_url == f"ws://127.0.0.1:{second.port}/ws"
        after = await kiosk.request("take_number", service="BIZ", key="after")  # executed here now
        assert (before["number"], after["number"]) == ("A001", "A002")
        assert after["seq"] == second.journal.durable_seq
        await clerk.request("open_window")
        await clerk.request("call_next")
        update = await push_of(led, "window_update")
        assert (update["window"], update["event"]) == (4, "opened")
        assert (await push_of(led, "window_update"))["number"] == "A001"


class _Seen(logging.Handler):
    """Sets :attr:`event` at the first ``rejected`` log line with code *code*."""

    def __init__(self, code: str) -> None:
        super().__init__(logging.INFO)
        self.code = code
        self.event = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "rejected" and getattr(record, "fields", {}).get("code") == self.code:
            self.event.set()


@guard(60)
async def test_a_device_on_a_standby_that_cannot_reach_the_owner_retries_on_its_connection(nursery, demo_hall,
                                                                                          redis_url, tmp_path,
                                                                                          monkeypatch):
    """The owner advertises a URL the standby cannot reach: a command sent to the standby is
    answered ``unavailable`` with ``retry`` (and the owner's URL); a :class:`Device` resends
    it on the same connection until the standby, having taken over, executes it once."""
    monkeypatch.chdir(tmp_path)
    owner = await nursery.start(partial(serve_callsys, demo_hall, redis_url, port=0, clock=ScaledClock(START),
                                        secret=SECRET, advertise="ws://127.0.0.1:1/ws",
                                        settings=ServerSettings(phone_refresh_s=math.inf)))
    second = await start(nursery, demo_hall, redis_url)
    while second.owner_url is None:
        await second.owner_change()
    assert second.owner_url == "ws://127.0.0.1:1/ws"
    async with client(second, "kiosk") as kiosk:
        with pytest.raises(RequestFailed) as refused:
            await kiosk.request("take_number", service="BIZ", key="plain")
        assert refused.value.code == "unavailable"
        assert refused.value.details == {"retry": True, "retry_after_s": 1, "owner_url": "ws://127.0.0.1:1/ws"}
        assert kiosk.closed is None  # the connection stays
    seen = _Seen("unavailable")
    logger = logging.getLogger("callsys.server")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(seen)
    try:
        async with connect_device(second.url, role="kiosk", token=TOKENS["kiosk"]) as device:
            answers = []

            async def take() -> None:
                answers.append(await device.request("take_number", service="BIZ", key="device"))

            async with trio.open_nursery() as waiting:
                waiting.start_soon(take)
                await seen.event.wait()  # refused once: the device waits to resend
                owner.shutdown()  # releases the lease: the standby takes over
            assert answers[0]["number"] == "A001" and device.connects == 1
            assert second.owning and answers[0]["seq"] == second.journal.durable_seq
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
    second.shutdown()


def test_a_server_on_a_file_store_never_loads_the_redis_store(tmp_path):
    """The lease is the store's attribute (``EventLog.leased``), not an isinstance check on the
    Redis class: a file store's server runs without importing ``callsys.log.redis`` or redis-py."""
    code = f"""
import sys, trio
from functools import partial
from callsys.hall import load_hall
from callsys.server import serve_callsys

async def main():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_callsys, load_hall("config/demo.toml"), "file:{tmp_path}/hall.db",
                                             port=0))
        assert server.owning and server.owner_url is None
        server.shutdown()

trio.run(main)
print(sorted(m for m in sys.modules if m == "redis" or m.startswith(("redis.", "callsys.log.redis",
                                                                      "callsys.server.standby"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_advertise_must_be_a_websocket_url():
    answer = subprocess.run([sys.executable, "-m", "callsys", "serve", "--advertise", "http://hall-a:8000/ws"],
                            capture_output=True, text=True)
    assert answer.returncode == 2
    assert "--advertise: 'http://hall-a:8000/ws' is not a WebSocket URL: give ws://HOST:PORT/ws" in answer.stderr
    assert "Traceback" not in answer.stderr


@guard(60)
async def test_webhooks_are_posted_by_the_owner_only_and_the_new_owner_resumes_from_the_cursors(
        nursery, demo_hall, redis_url, tmp_path, monkeypatch):
    """Both processes have the webhook client; only the owner posts. After the takeover the
    new owner resumes after the cursor the old one saved (the processes share ``var/``):
    nothing before it is posted again."""
    monkeypatch.chdir(tmp_path)  # var/callsys.webhooks.json, var/audio: the test's own
    receiver = await nursery.start(Receiver().serve)
    hall = replace(demo_hall, integrations={**demo_hall.integrations, "wechat": Integration(
        "wechat", "wechat-test-key", 50.0, 100, receiver.url, HOOK_SECRET.decode())})
    settings = ServerSettings(phone_refresh_s=math.inf, webhook_retry_first_s=0.001, webhook_retry_max_s=0.01)
    owner = await nursery.start(partial(serve_callsys, hall, redis_url, port=0, clock=ScaledClock(START),
                                        secret=SECRET, settings=settings))
    second = await nursery.start(partial(serve_callsys, hall, redis_url, port=0, clock=ScaledClock(START),
                                         secret=SECRET, settings=settings))
    async with client(second, "kiosk") as kiosk:
        for _ in range(3):
            await kiosk.request("take_number", service="SOC")
        await receiver.until(lambda: len(receiver.acked) == 3)
        assert second.journal.durable_seq >= receiver.acked[-1]["id"]  # followed, and posted nothing
        assert second.webhooks.attempts == {"wechat": 0}
        owner.shutdown()
        while not second.owning:
            await second.owner_change()
        saved = json.loads((tmp_path / "var" / "callsys.webhooks.json").read_text())["wechat"]
        posted = len(receiver.received)
        last = await kiosk.request("take_number", service="SOC", key="after")  # executed by the new owner
        await receiver.until(lambda: receiver.acked[-1]["id"] == last["seq"])
    again = receiver.received[posted:]
    assert again and all(m["id"] > saved for m in again)  # at least once, never from further back
    ids = [m["id"] for m in receiver.acked]
    assert ids == sorted(ids) and ids[-1] == last["seq"]
    second.shutdown()
