"""Idempotency keys over the wire, and the Device that retries with them.

A repeated key answers the original result (same ticket, number and secret, ``repeat:
true``) and writes nothing to the log — on the same connection, on another one, and after
a restart. The :class:`~callsys.client.Device` reconnects by itself and retries a command
whose answer was lost with its key: one ticket, never two.
"""

from __future__ import annotations

import logging
from functools import partial

import pytest
import trio

from callsys.client import ConnectionLost, RequestFailed, connect_device
from callsys.clock import ScaledClock
from callsys.protocol import CloseCode
from callsys.server import ServerSettings, serve_callsys

from server_support import SECRET, START, TOKENS, captured_log, client, fmt, guard, server  # noqa: F401


@guard()
async def test_a_repeated_key_answers_the_original_ticket(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, client(server, "kiosk", fmt) as other:
        first = await kiosk.request("take_number", service="BIZ", key="kiosk-7/1")
        seq = server.journal.durable_seq
        again = await kiosk.request("take_number", service="BIZ", key="kiosk-7/1")
        elsewhere = await other.request("take_number", service="BIZ", key="kiosk-7/1")  # the reconnect
        assert "repeat" not in first and again.pop("repeat") is True and elsewhere.pop("repeat") is True
        assert again == elsewhere == first  # number, secret, place, seq: the original answer
        assert server.journal.durable_seq == seq  # nothing new in the log
        assert server.engine.statistics().totals["issued"] == 1


@guard()
async def test_a_repeated_clerk_command_answers_its_events(server):
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=1) as clerk:
        await kiosk.request("take_number", service="BIZ")
        await kiosk.request("take_number", service="BIZ")
        await clerk.request("open_window")
        first = await clerk.request("call_next", key="w1-next-1")
        again = await clerk.request("call_next", key="w1-next-1")
        assert again.pop("repeat") is True and again == first
        assert [e["number"] for e in first["events"]] == ["A001"]  # A002 still waits
        assert server.engine.statistics().waiting == 1


@guard()
async def test_a_key_reused_for_another_command_is_refused(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk:
        await kiosk.request("take_number", service="BIZ", key="k")
        seq = server.journal.durable_seq
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("take_number", service="SOC", key="k")
        assert info.value.code == "key_reused"
        assert info.value.details == {"key": "k", "command": "take_number"}
        assert server.journal.durable_seq == seq


@pytest.mark.parametrize("message, code", [
    ({"type": "take_number", "service": "BIZ", "key": "x" * 65}, "invalid_field"),
    ({"type": "take_number", "service": "BIZ", "key": ""}, "invalid_field"),
    ({"type": "take_number", "service": "BIZ", "key": 7}, "invalid_field"),
    ({"type": "services", "key": "k"}, "unknown_field"),  # queries take no key: they change nothing
])
@guard()
async def test_bad_keys_are_refused(server, message, code):
    async with client(server, "kiosk") as kiosk:
        with pytest.raises(RequestFailed) as info:
            await kiosk.request(message.pop("type"), **message)
        assert info.value.code == code and info.value.details["field"] == "key"
        assert server.journal.durable_seq == 0


async def serve_once(nursery: trio.Nursery, hall, store, port: int = 0):
    """A server on *port* in a nursery of its own; returns it and an event set once it has stopped."""
    stopped = trio.Event()

    async def run(task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as own:
            task_status.started(await own.start(partial(
                serve_callsys, hall, f"file:{store}", port=port, clock=ScaledClock(START), secret=SECRET,
                settings=ServerSettings())))
        stopped.set()

    return await nursery.start(run), stopped


@guard()
async def test_keys_survive_a_restart(nursery, demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    first, stopped = await serve_once(nursery, demo_hall, store)
    async with client(first, "kiosk") as kiosk:
        ticket = await kiosk.request("take_number", service="BIZ", key="before-restart")
    first.shutdown()
    await stopped.wait()
    second, _ = await serve_once(nursery, demo_hall, store)
    async with client(second, "kiosk") as kiosk:
        again = await kiosk.request("take_number", service="BIZ", key="before-restart")
    assert again.pop("repeat") is True
    assert (again["ticket"], again["number"], again["secret"]) == (ticket["ticket"], ticket["number"], ticket["secret"])
    assert second.engine.statistics().totals["issued"] == 1
    second.shutdown()


@guard()
async def test_a_device_retries_a_lost_answer_with_its_key(server):
    """The connection breaks after the server executed take_number but before it answered."""
    entered, release = trio.Event(), trio.Event()
    wait_durable = server.journal.wait_durable

    async def held(seq: int) -> None:  # the first commit's answer is held back
        entered.set()
        await release.wait()
        await wait_durable(seq)

    async with connect_device(server.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
        server.journal.wait_durable = held
        async with trio.open_nursery() as nursery:
            answer = []
            nursery.start_soon(lambda: _append(answer, kiosk.request("take_number", service="BIZ")))
            await entered.wait()  # executed, not answered
            server.journal.wait_durable = wait_durable
            (session,) = [s for s in server.sessions if s.role == "kiosk"]
            session.kill(CloseCode.INTERNAL_ERROR, "the test breaks the connection")
            release.set()
        (ticket,) = answer
        assert ticket["repeat"] is True  # answered on the second connection, from the key
        assert kiosk.connects == 2
        assert server.engine.statistics().totals["issued"] == 1
        assert (await kiosk.request("take_number", service="BIZ"))["number"] == "A002"


async def _append(into: list, request) -> None:
    into.append(await request)


@guard()
async def test_a_device_rides_out_a_server_restart(nursery, demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    first, stopped = await serve_once(nursery, demo_hall, store)
    async with connect_device(first.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
        assert (await kiosk.request("take_number", service="BIZ"))["number"] == "A001"
        first.shutdown()
        await stopped.wait()
        async with trio.open_nursery() as inner:
            asking = trio.Event()

            async def take() -> None:
                asking.set()
                assert (await kiosk.request("take_number", service="BIZ"))["number"] == "A002"

            inner.start_soon(take)
            await asking.wait()  # the request waits for the server to come back
            second, _ = await serve_once(nursery, demo_hall, store, port=first.port)
        assert kiosk.connects == 2
        second.shutdown()


@guard()
async def test_a_replaced_clerk_device_stops_for_good(server):
    async with connect_device(server.url, role="clerk", token=TOKENS["clerk"], window=1) as older:
        await older.request("open_window")
        async with client(server, "clerk", window=1):
            with pytest.raises(ConnectionLost) as info:
                while True:
                    await older.next_push()
        assert info.value.close_code == CloseCode.REPLACED
        with pytest.raises(ConnectionLost):
            await older.request("window")
        assert older.connects == 1  # it did not take the window back


@guard()
async def test_a_device_closes_with_a_clean_handshake(server):
    with captured_log(logging.INFO) as records:
        async with connect_device(server.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            await kiosk.request("ping")
        while not any(r.msg == "conn_close" for r in records):
            await trio.sleep(0.001)  # the server's bookkeeping catching up with the socket
    (closed,) = [r for r in records if r.msg == "conn_close"]
    assert closed.fields["client_close"] == "1000"


@guard()
async def test_a_phone_opens_and_closes_at_debug_a_device_at_info(server):
    with captured_log(logging.DEBUG) as records:
        async with client(server, "kiosk") as kiosk:
            ticket = await kiosk.request("take_number", service="SOC")
            async with client(server, "phone", ticket=ticket["ticket"], secret=ticket["secret"]) as phone:
                await phone.request("ping")
            while not any(r.msg == "conn_close" for r in records):
                await trio.sleep(0.001)  # the server's bookkeeping catching up with the socket
    levels = {(r.msg, r.fields["role"]): r.levelno for r in records if r.msg in ("conn_open", "conn_close")}
    assert levels == {("conn_open", "kiosk"): logging.INFO, ("conn_open", "phone"): logging.DEBUG,
                      ("conn_close", "phone"): logging.DEBUG}
