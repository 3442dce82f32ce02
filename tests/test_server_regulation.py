"""Flow regulation in the server: suggestions ride with ``cockpit``/``cockpit_update``, a
manager applies one as a normal command, and the hall's automatic mode applies them itself
(docs/protocol.md, "cockpit")."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

from callsys.clock import ScaledClock
from callsys.hall import Regulation
from callsys.server import ServerSettings, serve_callsys
from server_support import SECRET, START, client, guard, push_of, start_server


async def crowd_med(kiosk, clerk7, clerk10) -> None:
    """Demo hall: windows 7 (SOC, MED) and 10 (CIVIL, SOC) open; 7 busy with MED, 11 MED waiting."""
    await clerk7.request("open_window")
    await clerk10.request("open_window")
    for _ in range(12):
        await kiosk.request("take_number", service="MED")
    await clerk7.request("call_next")


@guard()
async def test_a_suggestion_is_applied_as_a_manager_command_and_seen_on_the_boards(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", queue_push_interval_s=0)
    async with client(server, "manager", "json") as manager, client(server, "kiosk") as kiosk, \
            client(server, "clerk", window=7) as clerk7, client(server, "clerk", window=10) as clerk10, \
            client(server, "display", subscribe={"floors": [1]}) as tv:
        await crowd_med(kiosk, clerk7, clerk10)
        snapshot = await manager.request("cockpit")
        (first, *_) = snapshot["suggestions"]["over_target:MED"]
        assert (first["window"], first["action"], first["skills"]) == (10, "reassign", ["CIVIL", "SOC", "MED"])
        assert first["commands"] == [{"type": "reassign", "window": 10, "skills": ["CIVIL", "SOC", "MED"]}]
        assert first["wait_after_s"] < first["wait_before_s"] and first["reason"].startswith("window 10")
        for command in first["commands"]:
            fields = {k: v for k, v in command.items() if k != "type"}
            await manager.request(command["type"], **fields)
        while (push := await push_of(tv, "window_update"))["event"] != "reassigned":
            pass
        assert push["window"] == 10
        while True:  # the next cockpit shows the window serving MED and no longer suggests it
            update = await push_of(manager, "cockpit_update")
            if {w["window"]: w for w in update["windows"]}[10]["skills"] == ["CIVIL", "SOC", "MED"]:
                break
        assert 10 not in {s["window"] for s in update["suggestions"].get("over_target:MED", [])}
        before = {s["code"]: s for s in snapshot["services"]}["MED"]
        after = {s["code"]: s for s in update["services"]}["MED"]
        assert after["windows_open"] == before["windows_open"] + 1
        assert after["estimated_wait_s"] < before["estimated_wait_s"]  # the manager sees the wait fall
        await clerk10.request("call_next")  # the window calls MED now
        state = server.engine.state
        assert state.tickets[state.windows[10].current].service == "MED"


@guard()
async def test_the_automatic_mode_reassigns_a_window_within_the_halls_limits(nursery, demo_hall, tmp_path):
    hall = dataclasses.replace(demo_hall, regulation=Regulation(auto=True, every_s=60.0))
    clock = ScaledClock(START, speed=600.0)  # the server looks every 0.1 s of real time
    server = await nursery.start(partial(serve_callsys, hall, f"file:{tmp_path / 'hall.db'}", port=0, clock=clock,
                                         secret=SECRET, settings=ServerSettings(phone_refresh_s=math.inf)))
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk7, \
            client(server, "clerk", window=10) as clerk10, \
            client(server, "display", subscribe={"windows": [10]}) as led:
        await crowd_med(kiosk, clerk7, clerk10)
        while (push := await push_of(led, "window_update"))["event"] != "reassigned":
            pass
        assert server.engine.state.windows[10].skills == ("CIVIL", "SOC", "MED")
