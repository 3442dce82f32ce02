"""The manager's ``cockpit`` message and ``cockpit_update`` pushes over real connections
(docs/protocol.md, "cockpit")."""

from __future__ import annotations

import pytest

from callsys.client import RequestFailed
from server_support import client, guard, push_of, start_server


def by(items, key):
    return {item[key]: item for item in items}


@guard()
async def test_cockpit_snapshot_then_updates_as_tickets_are_taken_and_called(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", queue_push_interval_s=0)
    async with client(server, "manager", "json") as manager, client(server, "kiosk") as kiosk, \
            client(server, "clerk", window=7) as clerk:
        snapshot = await manager.request("cockpit")
        layout = snapshot["layout"]
        assert {f["floor"] for f in layout["floors"]} == {f.number for f in demo_hall.floors}
        assert len(layout["windows"]) == len(demo_hall.windows)
        assert {"x", "y", "zone", "floor", "display"} <= set(layout["windows"][0])
        assert by(snapshot["windows"], "window")[7]["state"] == "closed"
        assert by(snapshot["services"], "code")["SOC"]["waiting"] == 0

        await kiosk.request("take_number", service="SOC")
        update = await push_of(manager, "cockpit_update")
        assert by(update["services"], "code")["SOC"]["waiting"] == 1
        assert sum(z["waiting"] for z in update["zones"]) == pytest.approx(1)

        await clerk.request("open_window")
        await clerk.request("call_next")
        await clerk.request("start")
        while True:  # the rounds may have seen the open window before the call
            update = await push_of(manager, "cockpit_update")
            window = by(update["windows"], "window")[7]
            if window["state"] == "serving":
                break
        assert window["number"].startswith("C") and window["since"] is not None
        await clerk.request("finish", rating="bad", score=1)
        while True:
            update = await push_of(manager, "cockpit_update")
            if update["ratings"]:
                break
        (figures,) = update["ratings"]
        assert (figures["window"], figures["good"], figures["bad"], figures["mean_score"]) == (7, 0, 1, 1.0)
        (bad,) = [a for a in update["alerts"] if a["kind"] == "bad_rating"]
        assert (bad["window"], bad["score"]) == (7, 1) and bad["number"].startswith("C")
        assert update["ratings"] == (await manager.request("ratings"))["by_window"]  # the same fold
        assert by(update["windows"], "window")[7]["state"] == "idle"

        assert (await manager.request("cockpit", follow=False))["ratings"] == update["ratings"]
        assert not server.hub.cockpits
    assert not server.hub.cockpits


@guard()
async def test_only_a_manager_may_ask_for_the_cockpit(server):
    async with client(server, "kiosk") as kiosk:
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("cockpit")
        assert info.value.code == "forbidden"


@pytest.fixture
async def server(nursery, demo_hall, tmp_path):
    return await start_server(nursery, demo_hall, tmp_path / "hall.db")


@guard()
async def test_a_round_pushes_the_cockpit_only_when_more_than_the_clock_moved(server):
    hub = server.hub
    async with client(server, "manager") as manager, client(server, "kiosk") as kiosk:
        await manager.request("cockpit")
        await kiosk.request("take_number", service="SOC")
        hub.push_cockpit(server.clock.now())
        first = await push_of(manager, "cockpit_update")
        pushes = hub.pushes
        hub.push_cockpit(first["at"] + 60)  # a minute later, nothing else moved: no push
        hub.deliver_now()
        assert hub.pushes == pushes
        await kiosk.request("take_number", service="SOC")
        hub.push_cockpit(first["at"] + 61)
        second = await push_of(manager, "cockpit_update")
        assert by(second["services"], "code")["SOC"]["waiting"] == 2
