"""Clean shutdown answers in-flight commands and closes with 1001; a restart recovers."""

from __future__ import annotations

import pytest
import trio

from callsys.client import ConnectionLost, RequestFailed
from callsys.log import open_journal
from callsys.protocol import CloseCode
from callsys.server import CallsysServer
from server_support import client, guard, start_server


@guard()
async def test_shutdown_answers_in_flight_commands_then_closes_with_1001(demo_hall, tmp_path, mock_clock):
    # trio's clock stands still, so the shutdown grace cannot run out however slow the commits
    store = tmp_path / "hall.db"
    executed = 20  # the shutdown begins as the 20th of 40 pipelined commands is executed
    acked: list[dict] = []
    lost: list[int | None] = []
    refused: list[str] = []
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, store)
        shut_down_after(server, executed)
        async with client(server, "kiosk") as kiosk:
            async def take() -> None:
                try:
                    acked.append(await kiosk.request("take_number", service="SOC"))
                except ConnectionLost as exc:
                    lost.append(exc.close_code)
                except RequestFailed as exc:
                    refused.append(exc.code)

            async with trio.open_nursery() as burst:
                for _ in range(40):
                    burst.start_soon(take)
    assert len(acked) == executed, "every command executed before the shutdown is answered"
    assert set(lost) <= {CloseCode.GOING_AWAY} and set(refused) <= {"unavailable"}
    assert len(acked) + len(lost) + len(refused) == 40
    async with open_journal(f"file:{store}", demo_hall) as journal:
        engine, _ = await journal.recover()
    assert len(engine.state.tickets) == executed  # nothing was executed after the shutdown began
    for ticket in acked:
        stored = engine.state.tickets[ticket["ticket"]]
        assert (stored.number, stored.rank, stored.status) == (ticket["number"], ticket["rank"], "waiting")


def shut_down_after(server: CallsysServer, n: int) -> None:
    """Begin *server*'s shutdown right after it executes its *n*-th command, while that
    command and any executed with it still wait to be committed and answered."""
    execute, count = server.execute, 0

    def counting(command):
        nonlocal count
        result = execute(command)
        count += 1
        if count == n:
            server.shutdown()
        return result

    server.execute = counting  # type: ignore[method-assign]


@guard()
async def test_restart_continues_numbers_and_phone_secrets(demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, store)
        async with client(server, "kiosk") as kiosk:
            first = [await kiosk.request("take_number", service="MED") for _ in range(2)]
        server.shutdown()
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, store)
        async with client(server, "kiosk") as kiosk:
            assert (await kiosk.request("take_number", service="MED"))["number"] == "D003"
        async with client(server, "phone", ticket=first[0]["ticket"], secret=first[0]["secret"]) as phone:
            assert (await phone.request("position"))["number"] == "D001"
        server.shutdown()


@guard()
async def test_commands_after_shutdown_are_refused(demo_hall, tmp_path):
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, tmp_path / "hall.db")
        url = server.url
        server.shutdown()
    with pytest.raises(ConnectionLost) as refused:
        async with client(server, "kiosk"):
            pass
    assert "cannot connect" in str(refused.value) and url in str(refused.value)
