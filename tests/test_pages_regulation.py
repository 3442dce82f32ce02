"""Flow regulation on the manager page in headless Chromium: the suggestions under an
over-target alert, one applied with its button (a normal manager ``reassign``), and the
result seen on the TV board — the window now calls the overloaded service. Screenshot:
``tests/artifacts/manager-suggestions.png``."""

from __future__ import annotations

import json

from browser_support import ARTIFACTS, needs_chromium, open_browser, page_url, serve_hall
from server_support import TOKENS, client, guard

pytestmark = needs_chromium


def suggestion(window: int) -> str:
    return f"#alerts li[data-id=\"over_target:MED\"] .suggestion[data-window=\"{window}\"]"


@guard(180)
async def test_a_suggestion_applied_from_the_page_is_seen_on_the_tv_board(nursery, demo_hall, tmp_path):
    server, _ = await serve_hall(nursery, demo_hall, tmp_path / "hall.db")
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk7, \
            client(server, "clerk", window=10) as clerk10:
        await clerk7.request("open_window")
        await clerk10.request("open_window")  # 10 serves CIVIL and SOC: may take MED (its zone serves it)
        for _ in range(12):
            await kiosk.request("take_number", service="MED")
        await clerk7.request("call_next")
        async with open_browser(tmp_path) as browser:
            manager = await browser.new_page(page_url(server, "manager", token=TOKENS["manager"]),
                                             width=1600, height=1000)
            board = await browser.new_page(page_url(server, "board", zone="social", token=TOKENS["display"]))
            await manager.wait_for(f"!!document.querySelector('{suggestion(10)} button.apply')")
            reason = await manager.text(f"{suggestion(10)} .reason")
            assert reason.startswith("window 10 (idle) also takes MED")
            shot = await manager.screenshot(ARTIFACTS / "manager-suggestions.png")
            print(f"manager page with suggestions: {shot}")
            await manager.click(f"{suggestion(10)} button.apply")
            await manager.wait_for("document.querySelector('g.window[data-window=\"10\"]') && "
                                   "!document.querySelector('" + suggestion(10) + "')")  # no longer suggested
            assert server.engine.state.windows[10].skills == ("CIVIL", "SOC", "MED")
            number = (await clerk10.request("call_next"))["events"][0]["number"]
            assert number.startswith(demo_hall.services_by_code["MED"].prefix)  # MED, on window 10
            await board.wait_for(f"(() => {{ const c = document.querySelector('#calls .call.current'); "
                                 f"return !!c && c.dataset.number === {json.dumps(number)} && "
                                 f"c.dataset.window === '10'; }})()")
            assert manager.errors == [] and board.errors == []
    server.shutdown()
