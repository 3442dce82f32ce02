"""The manager page (/manager) in headless Chromium: the floors drawn from the hall's layout,
windows coloured by state, the zone heatmap, the service table, ratings and alerts follow the
hall as citizens take numbers and clerks call, and clicking a window or a zone shows its
detail; and while ``sim live`` plays the demo morning against the server. Screenshots:
``tests/artifacts/manager.png`` (the demo hall), ``manager-live.png`` (mid-morning of the
played day) and ``manager-qingdao.png`` (the 400-window hall)."""

from __future__ import annotations

import trio

from browser_support import ARTIFACTS, needs_chromium, open_browser, page_url, serve_hall
from server_support import TOKENS, client, guard

pytestmark = needs_chromium


def window_state(window: int, state: str) -> str:
    return f"document.querySelector('g.window[data-window=\"{window}\"]')?.dataset.state === '{state}'"


def zone_waiting(zone: str, n: int) -> str:
    return f"document.querySelector('g.zone[data-zone=\"{zone}\"]')?.dataset.waiting === '{n}'"


def cell(code: str, column: str) -> str:
    return f"document.querySelector('#services tr[data-code={code}] .{column}')?.textContent"


@guard(180)
async def test_manager_page_follows_the_hall_live(nursery, demo_hall, tmp_path):
    server, _ = await serve_hall(nursery, demo_hall, tmp_path / "hall.db")
    async with open_browser(tmp_path) as browser:
        page = await browser.new_page(page_url(server, "manager", token=TOKENS["manager"]), width=1600, height=1000)
        await page.wait_for("document.body.dataset.loads === '1'")
        # every window of the hall is drawn, closed at first; every zone too
        assert await page.evaluate("document.querySelectorAll('g.window').length") == len(demo_hall.windows)
        assert await page.evaluate("document.querySelectorAll('g.zone').length") == len(demo_hall.zones)
        await page.wait_for(window_state(7, "closed"))
        assert await page.text("#alerts li") == "无告警 · no alerts"
        assert "no ratings yet" in await page.text("#ratings")

        async with client(server, "kiosk") as kiosk:
            for _ in range(3):
                await kiosk.request("take_number", service="SOC")
        await page.wait_for(f"{cell('SOC', 'waiting')} === '3'")
        # nothing open: SOC spreads over all its windows, the universal ones (1-4) and 7-10 of "social"
        await page.wait_for(zone_waiting("social", 2))  # 1.5, rounded
        await page.wait_for(zone_waiting("universal", 2))

        async with client(server, "clerk", window=7) as clerk:
            await clerk.request("open_window")
            await page.wait_for(window_state(7, "idle"))
            # open and idle while SOC waits: an alert with the window's id
            await page.wait_for("!!document.querySelector('#alerts li[data-id=\"idle_window:7\"]')")
            await clerk.request("call_next")
            await page.wait_for(window_state(7, "calling"))
            await page.wait_for(f"{cell('SOC', 'waiting')} === '2'")
            await page.wait_for(zone_waiting("social", 2))  # window 7 is SOC's one open window
            await page.wait_for(zone_waiting("universal", 0))
            await clerk.request("start")
            await page.wait_for(window_state(7, "serving"))
            assert await page.evaluate("document.querySelector('g.window[data-window=\"7\"] text').textContent") \
                == "0′"  # a serving window shows its elapsed minutes
            assert await page.evaluate("!document.querySelector('#alerts li[data-id=\"idle_window:7\"]')")

            await page.click("g.window[data-window='7']")
            await page.wait_for("document.getElementById('detail').dataset.window === '7'")
            detail = await page.text("#detail")
            assert "办理 serving" in detail and "C001 (SOC)" in detail
            await clerk.request("finish", rating="good", score=5)
            await page.wait_for("document.querySelector('#ratings tr[data-window=\"7\"] .good')?.textContent === '1'")
            await clerk.request("call_next")
            await clerk.request("finish", rating="bad", score=2)  # a bad rating: an alert with ticket and window
        await page.wait_for("document.querySelector('#ratings tr[data-window=\"7\"] .bad')?.textContent === '1'")
        await page.wait_for("!!document.querySelector('#alerts li.bad_rating')")
        assert "C002 窗口 window 7 · 2/5" in await page.text("#alerts li.bad_rating")

        async with client(server, "kiosk") as kiosk:  # CIVIL: one window (10), 12 min each, target 30 min
            for _ in range(4):
                await kiosk.request("take_number", service="CIVIL")
        async with client(server, "manager") as manager:
            await manager.request("open_window", window=10)
        await page.wait_for("document.querySelector('#services tr[data-code=CIVIL]')?.classList.contains('over')")
        await page.wait_for("!!document.querySelector('#alerts li[data-id=\"over_target:CIVIL\"]')")
        async with client(server, "clerk", window=10) as clerk:
            await clerk.request("call_next")
            await clerk.request("start")
        await page.wait_for(window_state(10, "serving"))
        async with client(server, "manager") as manager:
            await manager.request("open_window", window=2)
            await manager.request("pause", window=2)
        await page.wait_for(window_state(2, "paused"))
        await page.click("g.zone[data-zone='social']")
        await page.wait_for("document.getElementById('detail').dataset.zone === 'social'")
        assert "社会事务区" in await page.text("#detail")
        shot = await page.screenshot(ARTIFACTS / "manager.png")
        print(f"manager page screenshot: {shot}")
        assert shot.read_bytes().startswith(b"\x89PNG")
        assert page.errors == []
    server.shutdown()


@guard(240)
async def test_manager_page_draws_the_400_window_hall(nursery, qingdao_hall, tmp_path):
    server, _ = await serve_hall(nursery, qingdao_hall, tmp_path / "hall.db")
    token = {role: min(qingdao_hall.tokens[role]) for role in ("kiosk", "clerk", "manager")}
    async with client(server, "manager", token=token["manager"]) as manager, \
            client(server, "kiosk", token=token["kiosk"]) as kiosk:
        services = [s.code for s in qingdao_hall.services]
        for i in range(120):
            await kiosk.request("take_number", service=services[(i * 7) % len(services)])
        for window in qingdao_hall.windows[::3]:
            await manager.request("open_window", window=window.id)
    async with open_browser(tmp_path) as browser:
        page = await browser.new_page(page_url(server, "manager", token=token["manager"]), width=1920, height=1200)
        await page.wait_for("document.body.dataset.loads === '1'")
        assert await page.evaluate("document.querySelectorAll('g.window').length") == 400
        assert await page.evaluate("document.querySelectorAll('.floor').length") == len(qingdao_hall.floors)
        await page.wait_for("document.body.dataset.waiting === '120'")
        for window in qingdao_hall.windows[:60:3]:  # clerks call on floor 1
            async with client(server, "clerk", window=window.id, token=token["clerk"]) as clerk:
                try:
                    await clerk.request("call_next")
                except Exception:  # nobody waits for this window's services
                    pass
        await page.wait_for("document.querySelectorAll('g.window[data-state=\"calling\"]').length > 0")
        shot = await page.screenshot(ARTIFACTS / "manager-qingdao.png")
        print(f"manager page screenshot (qingdao): {shot}")
        assert page.errors == []
    server.shutdown()


@guard(240)
async def test_manager_page_follows_a_simulated_morning_played_live(nursery, tmp_path):
    """``sim live`` plays the demo scenario's morning against the server (600 virtual seconds
    a second) while the page is open: the heatmap, the windows and the queues move with it."""
    from datetime import datetime
    from functools import partial

    from callsys.clock import ScaledClock
    from callsys.server import ServerSettings, serve_callsys
    from conftest import SHANGHAI
    from sim.live import LivePlayer, LiveSettings
    from sim.scenario import load_scenario

    speed = 600.0
    scenario = load_scenario("demo")
    clock = ScaledClock(datetime(2026, 11, 25, 8, 55, tzinfo=SHANGHAI), speed)  # a Wednesday, before opening
    server = await nursery.start(partial(serve_callsys, scenario.hall, f"file:{tmp_path / 'live.db'}", port=0,
                                         clock=clock, secret=b"live-test", settings=ServerSettings()))
    token = min(scenario.hall.tokens["manager"])
    async with open_browser(tmp_path) as browser:
        page = await browser.new_page(page_url(server, "manager", token=token), width=1600, height=1000)
        await page.wait_for("document.body.dataset.loads === '1'")
        played = trio.Event()

        async def play() -> None:
            player = LivePlayer(scenario, server.url, settings=LiveSettings(speed=speed, duration_s=6.0))
            result = await player.run()
            assert result["errors"] == {}
            played.set()

        nursery.start_soon(play)
        await page.wait_for("Number(document.body.dataset.waiting) > 0")  # citizens arrive
        await page.wait_for("document.querySelectorAll('g.window[data-state=\"serving\"]').length > 0")
        await page.wait_for("[...document.querySelectorAll('g.zone')].some((z) => Number(z.dataset.waiting) > 0)")
        await page.wait_for("Number(document.body.dataset.updates) >= 5")
        await page.screenshot(ARTIFACTS / "manager-live.png")
        await played.wait()
        assert page.errors == []
    server.shutdown()
