"""The serving process's garbage-collector policy (callsys.server._gc): young and middle
collections by the clock only while serving, the recovered state frozen, a full collection after the day's reset."""

from __future__ import annotations

import gc

import trio

from server_support import client, guard, start_server


@guard()
async def test_serving_freezes_state_and_collects_fully_only_after_reset(demo_hall, tmp_path):
    full: list[int] = []
    middle = trio.Event()  # a young collection and then a middle one came by the clock

    def count_full(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)
        if phase == "stop" and info["generation"] == 1:
            middle.set()

    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, tmp_path / "hall.db", manage_gc=True)
        assert not gc.isenabled() and gc.get_freeze_count() > 0  # no collection by allocation count
        gc.callbacks.append(count_full)
        try:
            await middle.wait()
            async with client(server, "kiosk") as kiosk, client(server, "manager") as manager:
                for _ in range(50):
                    await kiosk.request("take_number", service="SOC")
                assert not full  # no automatic full collection while serving
                await manager.request("reset_day")
                assert len(full) == 1  # the night's full collection, done before the reset is acknowledged
                assert (await kiosk.request("take_number", service="SOC"))["number"] == "C001"
        finally:
            gc.callbacks.remove(count_full)
        server.shutdown()
    assert gc.isenabled() and gc.get_freeze_count() == 0  # restored when the server stopped
