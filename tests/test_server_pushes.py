"""Pushes after durable events: displays by window/zone/floor, speakers by zone, phones by ticket."""

from __future__ import annotations

import pytest
from trio.testing import wait_all_tasks_blocked

from callsys.client import RequestFailed
from callsys.server import phone_secret
from server_support import SECRET, client, fmt, guard, push_of, server, start_server  # noqa: F401


@guard()
async def test_displays_get_the_board_then_the_calls_of_their_windows(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, client(server, "clerk", fmt, window=7) as clerk, \
            client(server, "display", fmt, subscribe={"windows": [7]}) as led, \
            client(server, "display", fmt, subscribe={"floors": [1]}) as tv, \
            client(server, "display", fmt, subscribe={"zones": ["universal"]}) as other_zone:
        board = await led.next_push()
        assert board["type"] == "board" and [w["window"] for w in board["windows"]] == [7]
        assert len((await tv.next_push())["windows"]) == 10
        await kiosk.request("take_number", service="SOC")
        await clerk.request("open_window")
        called = await clerk.request("call_next")
        for display in (led, tv):
            opened = await push_of(display, "window_update")
            assert (opened["window"], opened["event"], opened["status"]) == (7, "opened", "open")
            update = await push_of(display, "window_update")
            assert (update["event"], update["number"], update["stage"]) == ("called", "C001", "called")
            assert update["seq"] == called["seq"]  # pushed once durable, with its log position
        await clerk.request("recall")
        assert (await push_of(led, "window_update"))["recalls"] == 1
        # the universal-zone display heard nothing of window 7: its next push is about window 1
        async with client(server, "clerk", fmt, window=1) as clerk1:
            await clerk1.request("open_window")
        update = await push_of(other_zone, "window_update")
        assert (update["window"], update["event"]) == (1, "opened")


@guard()
async def test_speakers_announce_calls_and_recalls_in_their_zones(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, client(server, "clerk", fmt, window=10) as clerk, \
            client(server, "speaker", fmt, subscribe={"zones": ["social"]}) as speaker, \
            client(server, "speaker", fmt, subscribe={"zones": ["universal"]}) as elsewhere:
        await kiosk.request("take_number", service="CIVIL")
        await clerk.request("open_window")
        await clerk.request("call_next")
        await clerk.request("recall")
        first, again = await speaker.next_push(), await speaker.next_push()
        assert (first["type"], first["number"], first["window"], first["recall"]) == ("announce", "E001", 10, 0)
        assert first["text"]["zh"] == "请 E001 号到 10 号窗口办理"
        assert "window 10" in first["text"]["en"]
        assert again["recall"] == 1
        async with client(server, "clerk", fmt, window=2) as clerk2:
            await kiosk.request("take_number", service="BIZ")
            await clerk2.request("open_window")
            await clerk2.request("call_next")
        assert (await elsewhere.next_push())["window"] == 2  # nothing from window 10 came first


@guard()
async def test_manager_follows_the_whole_hall(server, fmt):
    async with client(server, "manager", fmt, subscribe={"all": True}) as manager, \
            client(server, "clerk", fmt, window=9) as clerk:
        assert len((await manager.next_push())["windows"]) == 10
        await clerk.request("open_window")
        assert (await push_of(manager, "window_update"))["window"] == 9


@guard()
async def test_a_phone_sees_only_its_own_ticket(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, client(server, "clerk", fmt, window=7) as clerk:
        mine = await kiosk.request("take_number", service="SOC")
        theirs = await kiosk.request("take_number", service="SOC")
        with pytest.raises(RequestFailed) as stolen:
            async with client(server, "phone", fmt, ticket=theirs["ticket"], secret=mine["secret"]):
                pass
        assert stolen.value.code == "unauthorized"
        assert mine["secret"] == phone_secret(SECRET, "demo", mine["ticket"])

        async with client(server, "phone", fmt, ticket=theirs["ticket"], secret=theirs["secret"]) as phone:
            hello = await phone.next_push()
            assert (hello["type"], hello["number"], hello["ahead"], hello["event"]) == \
                ("ticket_update", "C002", 1, "hello")
            with pytest.raises(RequestFailed) as other:
                await phone.request("position", ticket=mine["ticket"])
            assert other.value.code == "unknown_field"
            await clerk.request("open_window")
            await clerk.request("call_next")  # calls C001, not this phone's ticket
            await clerk.request("start")
            await clerk.request("finish")
            await clerk.request("call_next")  # now C002
            update = await phone.next_push()
            assert (update["ticket"], update["status"], update["window"], update["event"]) == \
                (theirs["ticket"], "called", 7, "ticket_called")
            assert (await phone.request("position"))["status"] == "called"


@guard()
async def test_phones_get_position_refreshes(nursery, demo_hall, tmp_path, fmt, mock_clock):
    # trio's clock stands still, so the refresh timer fires exactly when the test jumps it
    period = 5.0
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", phone_refresh_s=period)
    async with client(server, "kiosk", fmt) as kiosk, client(server, "clerk", fmt, window=7) as clerk:
        await kiosk.request("take_number", service="SOC")
        mine = await kiosk.request("take_number", service="SOC")
        async with client(server, "phone", fmt, ticket=mine["ticket"], secret=mine["secret"]) as phone:
            hello = await phone.next_push()
            # no window open yet: estimated from the hall's configured windows for SOC
            assert (hello["ahead"], hello["estimated_wait_s"]) == (1, server.engine.estimate_at("SOC", 1))
            await clerk.request("open_window")
            mock_clock.jump(period)
            estimate = await phone.next_push()  # same place, but now window 7 alone serves SOC
            assert (estimate["event"], estimate["status"], estimate["ahead"]) == ("position", "waiting", 1)
            assert estimate["estimated_wait_s"] > hello["estimated_wait_s"] > 0
            await clerk.request("call_next")  # calls C001: this phone's ticket moves up
            mock_clock.jump(period)
            moved = await phone.next_push()
            assert (moved["event"], moved["status"], moved["ahead"]) == ("position", "waiting", 0)
            mock_clock.jump(period)
            await wait_all_tasks_blocked()  # the refresh has run: nothing moved, nothing pushed
            for kind in ("start", "finish", "call_next"):
                await clerk.request(kind)
            called = await phone.next_push()
            assert (called["event"], called["status"], called["window"]) == ("ticket_called", "called", 7)


# ---------------------------------------------------------------------------- service summaries

def _codes(services):
    return [s["code"] for s in services]


@guard()
async def test_board_and_subscribe_carry_the_summaries_of_the_windows_services(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk, \
            client(server, "display", fmt, subscribe={"windows": [7]}) as led, \
            client(server, "display", fmt, subscribe={"zones": ["social"]}) as tv, \
            client(server, "clerk", fmt, window=10) as clerk:
        every = {s["code"]: s for s in (await kiosk.request("services"))["services"]}
        led_board = await push_of(led, "board")
        assert _codes(led_board["services"]) == ["MED", "SOC"]  # window 7's skills, by code
        assert led_board["services"] == [every["MED"], every["SOC"]]  # the same objects as the query's
        assert _codes((await push_of(tv, "board"))["services"]) == ["CIVIL", "MED", "SOC"]
        assert _codes((await push_of(clerk, "board"))["services"]) == ["CIVIL", "SOC"]
        await kiosk.request("take_number", service="BIZ")
        moved = await led.request("subscribe", windows=[5])
        assert [w["window"] for w in moved["windows"]] == [5]
        assert _codes(moved["services"]) == ["BIZ", "PERMIT"] and moved["services"][0]["waiting"] == 1


@guard()
async def test_queue_update_carries_only_the_changed_services_to_the_connections_serving_them(
        nursery, demo_hall, tmp_path, fmt):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", queue_push_interval_s=0)
    async with client(server, "kiosk", fmt) as kiosk, \
            client(server, "display", fmt, subscribe={"windows": [7]}) as led7, \
            client(server, "display", fmt, subscribe={"windows": [5]}) as led5, \
            client(server, "speaker", fmt, subscribe={"zones": ["social"]}) as speaker, \
            client(server, "clerk", fmt, window=10) as clerk:
        for c in (led7, led5, clerk):
            await push_of(c, "board")
        await kiosk.request("take_number", service="SOC")
        await kiosk.request("take_number", service="BIZ")
        for c in (led7, clerk):  # both serve SOC, neither serves BIZ
            update = await push_of(c, "queue_update")
            assert [(s["code"], s["waiting"]) for s in update["services"]] == [("SOC", 1)]
            assert update["at"] > 0
        update = await push_of(led5, "queue_update")  # its first: SOC never reached it
        assert [(s["code"], s["waiting"]) for s in update["services"]] == [("BIZ", 1)]
        await clerk.request("open_window")  # window 10 opens for CIVIL and SOC
        update = await push_of(clerk, "queue_update")
        assert [(s["code"], s["windows_open"]) for s in update["services"]] == [("CIVIL", 1), ("SOC", 1)]
        assert [(s["code"], s["windows_open"]) for s in (await push_of(led7, "queue_update"))["services"]] \
            == [("SOC", 1)]  # MED did not change
        # a new skill is a service the window's connections have not seen: they get it
        async with client(server, "manager", fmt) as manager:
            await manager.request("reassign", window=7, skills=["CIVIL"])
        update = await push_of(led7, "queue_update")
        assert _codes(update["services"]) == ["CIVIL"]
        # speakers only announce: the first push the speaker gets is an announce
        await clerk.request("call_next")
        assert (await speaker.next_push())["type"] == "announce"


@guard()
async def test_queue_updates_are_coalesced_per_interval(nursery, demo_hall, tmp_path, fmt, mock_clock):
    # trio's clock stands still: the second round comes exactly when the test jumps it
    interval = 1.0
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", queue_push_interval_s=interval)
    async with client(server, "kiosk", fmt) as kiosk, \
            client(server, "display", fmt, subscribe={"windows": [7]}) as led:
        await push_of(led, "board")
        await kiosk.request("take_number", service="SOC")
        first = await push_of(led, "queue_update")  # the first after a quiet spell goes out at once
        assert [(s["code"], s["waiting"]) for s in first["services"]] == [("SOC", 1)]
        for _ in range(9):
            await kiosk.request("take_number", service="SOC")
        await wait_all_tasks_blocked()
        mock_clock.jump(interval)
        second = await push_of(led, "queue_update")  # one push for the nine tickets
        assert [(s["code"], s["waiting"]) for s in second["services"]] == [("SOC", 10)]
        assert server.hub.pushes == 2  # the hub queued these two queue_updates and nothing else
