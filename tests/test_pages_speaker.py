"""The speaker page in headless Chromium: the zone's announcements queue in call order, a recall
of a queued number merges into its entry, and after the "enable sound" click they play one at
a time: the chime, then the rendered speech.

What is verified: the queue and the "now announcing"/"announced" lists in the DOM; that the
browser requested the chime and the audio URL of each announce push (DevTools network events);
that each clip played to its end in Chromium's media pipeline (its ``ended`` event: real WAVs
from the server, decoded and played at normal speed). Whether sound came out of a loudspeaker
is not: headless Chromium runs muted, without an audio device.
"""

from __future__ import annotations

from urllib.parse import urljoin

from browser_support import ARTIFACTS, needs_chromium, open_browser, page_url, serve_hall
from callsys.hall import hall_from_mapping, read_toml
from conftest import CONFIG, merged
from server_support import TOKENS, client, guard, push_of

pytestmark = needs_chromium


@guard(120)
async def test_speaker_queues_merges_and_plays_in_order(nursery, tmp_path):
    # the demo hall speaks four languages; one keeps the test's playing time short
    hall = hall_from_mapping(merged(read_toml(CONFIG / "demo.toml"), {"voice": {"languages": ["zh"], "repeat": 1}}))
    server, _ = await serve_hall(nursery, hall, tmp_path / "hall.db")
    async with client(server, "kiosk") as kiosk:
        first = await kiosk.request("take_number", service="SOC")
        second = await kiosk.request("take_number", service="SOC")
    async with open_browser(tmp_path) as browser, \
            client(server, "speaker", subscribe={"zones": ["social"]}) as speaker, \
            client(server, "clerk", window=7) as seven, client(server, "clerk", window=8) as eight:
        page = await browser.new_page(page_url(server, "speaker", zone="social", token=TOKENS["speaker"]))
        await page.wait_for("document.body.dataset.connects === '1'")
        assert await page.evaluate("document.body.dataset.sound") == "off"  # waits for the click
        assert "社会事务区" in await page.text("#title")
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
        await page.wait_for(f"{queue} === {first['number'] + '/7/1,' + second['number'] + '/8/0'!r}")

        await page.click("#enable")  # a user's click allows sound
        await page.wait_for(f"document.getElementById('now').dataset.number === {first['number']!r}")
        assert await page.evaluate(queue) == f"{second['number']}/8/0"  # one at a time: the second waits
        assert "7号窗口" in await page.text("#now-number")
        await page.screenshot(ARTIFACTS / "speaker.png")
        await page.wait_for(f"document.getElementById('now').dataset.number === {second['number']!r}")
        played = "Array.from(document.querySelectorAll('#played li'), li => li.dataset.number).join(',')"
        await page.wait_for(f"{played} === {second['number'] + ',' + first['number']!r}")  # newest first

        # the page fetched the chime and the speech of both announcements and played each to its end
        base = f"http://{server.host}:{server.port}"
        clips = [urljoin(base, url) for p in pushes[:2] for url in (p["chime"], *(a["url"] for a in p["audio"]))]
        assert len(clips) == 4 and all(url in page.requests for url in clips), (clips, page.requests)
        outcome = await page.evaluate("[document.body.dataset.clipsEnded, document.body.dataset.clipsFailed]")
        assert outcome == ["4", None]
        assert page.errors == []
    server.shutdown()
