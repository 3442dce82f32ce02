"""Every message of every role over real WebSocket connections, in msgpack and in JSON."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from callsys.client import RequestFailed
from callsys.protocol import ROLE_MESSAGES
from conftest import hall_time
from server_support import client, fmt, guard, server  # noqa: F401  (fixtures)


def kinds(result: dict) -> list[str]:
    return [e["kind"] for e in result["events"]]


@guard()
async def test_kiosk_takes_books_checks_in_cancels_requeues(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, client(server, "clerk", fmt, window=7) as clerk:
        services = (await kiosk.request("services"))["services"]
        assert [s["code"] for s in services] == ["BIZ", "PERMIT", "SOC", "MED", "CIVIL"]

        first = await kiosk.request("take_number", service="SOC")
        assert (first["number"], first["status"], first["channel"], first["ahead"]) == ("C001", "waiting", "kiosk", 0)
        assert first["seq"] == 1 and len(first["secret"]) == 32
        green = await kiosk.request("take_number", service="SOC", channel="qr", green=True)
        assert (green["number"], green["klass"], green["channel"]) == ("C002", "priority", "qr")
        assert green["rank"] < first["rank"]  # the green credit puts it first
        assert (await kiosk.request("position", ticket=first["ticket"]))["ahead"] == 1
        assert (await kiosk.request("position", ticket="C002"))["ahead"] == 0

        booked = await kiosk.request("book_slot", service="SOC", slot_start=hall_time(10, 0))
        assert booked["status"] == "booked" and booked["number"] is None and booked["slot_start"] == hall_time(10, 0)
        checked = await kiosk.request("check_in", ticket=booked["ticket"])
        assert checked["number"] == "C003" and checked["status"] == "waiting"
        later = await kiosk.request("book_slot", service="SOC", slot_start=hall_time(10, 0))
        moved = await kiosk.request("reschedule", ticket=later["ticket"], slot_start=hall_time(11, 0))
        assert (moved["ticket"], moved["status"], moved["slot_start"]) == (later["ticket"], "booked", hall_time(11, 0))

        other = await kiosk.request("take_number", service="MED")
        assert kinds(await kiosk.request("cancel", ticket=other["ticket"])) == ["ticket_cancelled"]
        assert (await kiosk.request("position", ticket=other["ticket"]))["status"] == "cancelled"

        await clerk.request("open_window")
        assert (await clerk.request("call_next"))["events"][0]["number"] == "C002"
        for _ in range(2):
            await clerk.request("recall")
        await clerk.request("no_show")
        assert kinds(await kiosk.request("requeue", ticket="C002")) == ["ticket_requeued"]
        assert (await kiosk.request("position", ticket="C002"))["status"] == "waiting"
        assert "server_time" in await kiosk.request("ping")


@guard()
async def test_clerk_runs_every_window_command(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, client(server, "clerk", fmt, window=7) as clerk:
        assert clerk.welcome["window"] == 7
        for _ in range(3):
            await kiosk.request("take_number", service="SOC")
        assert kinds(await clerk.request("open_window")) == ["window_opened"]
        flagged = await clerk.request("flag_green", ticket="C001")  # first already: the order stays
        assert (flagged["events"][0]["kind"], flagged["events"][0]["by_window"]) == ("green_flagged", 7)
        assert server.engine.ticket("C001").green_reason == "clerk"
        assert (await clerk.request("call_next"))["events"][0]["number"] == "C001"
        assert (await clerk.request("recall"))["events"][0]["recalls"] == 1
        assert kinds(await clerk.request("start")) == ["service_started"]
        finished = await clerk.request("finish", rating="good", score=5)
        assert finished["events"][0]["rating"] == "good"

        called = await clerk.request("call_number", ticket="C003")
        assert called["events"][0]["by_number"] is True
        moved = await clerk.request("transfer", service="MED")
        assert moved["events"][0]["service"] == "MED"
        assert (await clerk.request("call_next"))["events"][0]["number"] == "C002"
        assert kinds(await clerk.request("park")) == ["ticket_parked"]
        assert kinds(await clerk.request("return_ticket", ticket="C002")) == ["ticket_returned"]
        assert (await clerk.request("call_next"))["events"][0]["number"] == "C002"  # its own queue first
        async with client(server, "clerk", fmt, window=8) as neighbour:
            await neighbour.request("open_window")  # transfers wait only for an open window
        sent = await clerk.request("transfer", to_window=8)
        assert sent["events"][0]["to_window"] == 8
        assert server.engine.ticket("C002").window == 8

        assert kinds(await clerk.request("pause")) == ["window_paused"]
        assert (await clerk.request("window"))["status"] == "paused"
        assert kinds(await clerk.request("resume")) == ["window_resumed"]
        assert (await clerk.request("call_next"))["events"][0]["number"] == "C003"
        await clerk.request("recall")
        await clerk.request("recall")
        assert kinds(await clerk.request("no_show")) == ["ticket_no_show"]
        assert kinds(await clerk.request("close_window")) == ["window_closed"]
        state = await clerk.request("window")
        assert (state["window"], state["status"], state["served"], state["current"]) == (7, "closed", 1, None)
        assert "server_time" in await clerk.request("ping")


@guard()
async def test_clerk_acts_only_on_its_own_window(server, fmt):
    async with client(server, "clerk", fmt, window=3) as clerk:
        with pytest.raises(RequestFailed) as failed:
            await clerk.request("open_window", window=4)
        assert failed.value.code == "unknown_field"
        await clerk.request("open_window")
    assert server.engine.state.windows[3].status == "open"
    assert server.engine.state.windows[4].status == "closed"


@guard()
async def test_manager_runs_hall_commands_and_queries(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, client(server, "manager", fmt) as manager:
        ticket = await kiosk.request("take_number", service="BIZ")
        for kind in ("open_window", "pause", "resume", "close_window"):
            assert kinds(await manager.request(kind, window=1))[0].startswith("window_")
        reassigned = await manager.request("reassign", window=5, skills=["SOC"])
        assert reassigned["events"][0]["skills"] == ["SOC"]
        assert (await manager.request("window", window=5))["skills"] == ["SOC"]

        stats = await manager.request("stats")
        assert stats["waiting"] == 1 and stats["connections"] == {"kiosk": 1, "manager": 1}
        record = await manager.request("ticket", ticket=ticket["ticket"])
        assert (record["number"], record["status"], record["rank"]) == ("A001", "waiting", ticket["rank"])
        assert len((await manager.request("services"))["services"]) == 5
        assert len((await manager.request("subscribe", all=True))["windows"]) == 10
        cockpit = await manager.request("cockpit", follow=False)
        assert len(cockpit["windows"]) == len(cockpit["layout"]["windows"]) == 10

        assert kinds(await manager.request("reset_day")) == ["day_reset"]
        with pytest.raises(RequestFailed) as gone:
            await manager.request("ticket", ticket=ticket["ticket"])
        assert gone.value.code == "unknown_ticket"
        assert "server_time" in await manager.request("ping")


@guard()
async def test_display_speaker_and_phone_queries(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk:
        ticket = await kiosk.request("take_number", service="CIVIL")
    async with client(server, "display", fmt) as display, client(server, "speaker", fmt) as speaker, \
            client(server, "phone", fmt, ticket=ticket["ticket"], secret=ticket["secret"]) as phone:
        board = await display.request("subscribe", floors=[1])
        assert [w["window"] for w in board["windows"]] == list(range(1, 11))
        assert len((await speaker.request("subscribe", zones=["social"]))["windows"]) == 4
        position = await phone.request("position")
        assert (position["ticket"], position["number"], position["status"]) == (ticket["ticket"], "E001", "waiting")
        for c in (display, speaker, phone):
            assert "server_time" in await c.request("ping")


def test_every_role_table_is_exercised():
    """The tests above send every message type each role may send."""
    sent = {
        "kiosk": {"take_number", "book_slot", "check_in", "reschedule", "cancel", "requeue", "position", "services",
                  "ping"},
        "clerk": {"open_window", "flag_green", "call_next", "recall", "start", "finish", "call_number", "transfer", "park",
                  "return_ticket", "pause", "resume", "no_show", "close_window", "window", "ping"},
        "manager": {"open_window", "pause", "resume", "close_window", "reassign", "window", "stats", "ticket",
                    "services", "subscribe", "cockpit", "reset_day", "ping",
                    "ratings"},  # ratings: tests/test_reports.py
        "display": {"subscribe", "ping"},
        "speaker": {"subscribe", "ping"},
        "phone": {"position", "ping"},
    }
    assert {role: set(table) for role, table in ROLE_MESSAGES.items()} == sent


@guard()
async def test_stats_counts_connections_as_they_come_and_go(server):
    """The role counts are kept as connections sign in and leave (a clerk replaced by a
    newer sign-in to its window counts once)."""
    async with client(server, "manager") as manager:
        async with client(server, "kiosk"), client(server, "display", subscribe={"zones": ["social"]}):
            async with client(server, "clerk", window=7):
                assert (await manager.request("stats"))["connections"] == {
                    "manager": 1, "kiosk": 1, "display": 1, "clerk": 1}
        while len(server.sessions) > 1:  # the others' closes are being handled
            await trio.testing.wait_all_tasks_blocked()
        assert (await manager.request("stats"))["connections"] == {"manager": 1}
