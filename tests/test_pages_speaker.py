"""The speaker page in headless Chromium: the zone's announcements queue in call order, a recall
of a queued number merges into its entry, and after the "enable sound" click they play one at
a time, the page requesting each announcement's audio.

What is verified: the queue and the "now announcing"/"announced" lists in the DOM, and that the
browser requested the chime and audio URLs of each announce push (DevTools network events).
Whether sound came out of a speaker is not: headless Chromium runs muted without an audio device.
"""

from __future__ import annotations

from urllib.parse import urljoin

from browser_support import ARTIFACTS, needs_chromium, open_browser, page_url, serve_hall
from server_support import TOKENS, client, guard, push_of

pytestmark = needs_chromium


@guard(120)
async def test_speaker_queues_merges_and_plays_in_order(nursery, demo_hall, tmp_path):
    server, _ = await serve_hall(nursery, demo_hall, tmp_path / "hall.db")
    async with client(server, "kiosk") as kiosk:
        first = await kiosk.request("take_number", service="SOC")
        second = await kiosk.request("take_number", service="SOC")
    async with open_browser(tmp_path) as browser, \
            client(server, "speaker", subscribe={"zones": ["social"]}) as speaker, \
            client(server, "clerk", window=7) as seven, client(server, "clerk", window=8) as eight:
        page = await browser.new_page(page_url(server, "speaker", zone="social",
                                               token=TOKENS["speaker"]))
        await page.wait_for("document.body.dataset.connects === '1'")
        assert await page.evaluate("document.body.dataset.sound") == "off"  # waits for the click
        for clerk in (seven, eight):
            await clerk.request("open_window")
        await seven.request("call_next")
        await eight.request("call_next")
        await seven.request("recall")
        pushes = [await push_of(speaker, "announce") for _ in range(3)]
        assert [(p["number"], p["window"], p["recall"]) for p in pushes] == [
            (first["number"], 7, 0), (second["number"], 8, 0), (first["number"], 7, 1)]

        # the recall merged: two entries in call order, the first with the recall count
        queue = ("Array.from(document.querySelectorAll('#queue li'), "
                 "li => [li.dataset.number, li.dataset.window, li.dataset.recall].join('/')).join(',')")
        expected = f"{first['number']}/7/1,{second['number']}/8/0"
        await page.wait_for(f"{queue} === {expected!r}")

        await page.click("#enable")  # a user's click allows sound
        await page.wait_for("document.body.dataset.sound === 'on'")
        await page.wait_for(f"document.getElementById('now').dataset.number === {first['number']!r}")
        assert "7号窗口" in await page.text("#now-number")
        await page.screenshot(ARTIFACTS / "speaker.png")
        played = "Array.from(document.querySelectorAll('#played li'), li => li.dataset.number).join(',')"
        await page.wait_for(f"{played} === {second['number'] + ',' + first['number']!r}")  # newest first
        assert await page.evaluate("document.querySelectorAll('#queue li').length") == 0

        base = server.url.replace("ws://", "http://").removesuffix("/ws")
        wanted = [urljoin(base, a["url"]) for p in pushes[:2] for a in p.get("audio", [])]
        wanted += [urljoin(base, p["chime"]) for p in pushes[:2] if p.get("chime")]
        assert all(url in page.requests for url in wanted), (wanted, page.requests)
    server.shutdown()
