"""The TV board of a floor that serves dozens of services still fits its 1920x1080 screen."""

from __future__ import annotations

from browser_support import ARTIFACTS, needs_chromium, open_browser, page_url, serve_hall
from server_support import client, guard

pytestmark = needs_chromium


@guard(120)
async def test_floor_board_of_many_services_fits_the_screen(nursery, qingdao_hall, tmp_path):
    server, _ = await serve_hall(nursery, qingdao_hall, tmp_path / "hall.db")
    served = {code for w in qingdao_hall.windows if w.floor == 4 for code in w.skills}
    assert len(served) > 24  # the universal windows of floor 4 serve every service
    async with open_browser(tmp_path) as browser:
        board = await browser.new_page(page_url(server, "board", floor=4, token=token(qingdao_hall, "display")),
                                       width=1920, height=1080)
        await board.wait_for("document.querySelectorAll('#services tr[data-code]').length > 0")
        rows = await board.evaluate("document.querySelectorAll('#services tr[data-code]').length")
        more = await board.text("#services tr.more")
        assert 15 <= rows < len(served) and f"另有 {len(served) - rows} 项业务" in more
        assert await board.evaluate("document.getElementById('services').closest('table').classList.contains('compact')")
        # a call at a window with a four-digit number, serving: one line, inside its row
        window = next(w for w in qingdao_hall.windows if w.floor == 4)
        async with client(server, "kiosk", token=token(qingdao_hall, "kiosk")) as kiosk:
            await kiosk.request("take_number", service=window.skills[0])
        async with client(server, "clerk", token=token(qingdao_hall, "clerk"), window=window.id) as clerk:
            await clerk.request("open_window")
            await clerk.request("call_next")
            await clerk.request("start")
        await board.wait_for("!!document.querySelector('#calls .call.current .serving')")
        assert await board.evaluate(
            "(() => { const row = document.querySelector('#calls .call.current'); "
            "const where = row.querySelector('.where').getBoundingClientRect(); const box = row.getBoundingClientRect(); "
            "return where.top >= box.top && where.bottom <= box.bottom && where.right <= box.right; })()")
        await board.screenshot(ARTIFACTS / "board-floor.png")
        # nothing spills out of the services panel or the screen
        assert await board.evaluate("document.getElementById('stage').scrollWidth") == 1920
        assert await board.evaluate(
            "(() => { const t = document.querySelector('#services').closest('table').getBoundingClientRect(); "
            "const f = document.querySelector('.board footer').getBoundingClientRect(); return t.bottom <= f.top; })()")
        assert board.errors == []
    server.shutdown()


def token(hall, role: str) -> str:
    return sorted(hall.tokens[role])[0]
