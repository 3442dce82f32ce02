"""Headless Chromium for the page tests, driven over the DevTools protocol with trio-websocket.

No selenium or playwright (the machines are offline): Debian's ``chromium`` is started with
``--remote-debugging-port=0``; it writes the port it chose to ``<user-data-dir>/DevToolsActivePort``,
and one WebSocket to the browser carries every command (targets attached with ``flatten``,
so each page is a ``sessionId`` on that connection)::

    async with open_browser(tmp_path) as browser:
        page = await browser.new_page(url, width=1920, height=1080)
        await page.wait_for("document.querySelector('.call.current')?.dataset.number === 'C001'")
        print(await page.screenshot(ARTIFACTS / "board.png"))

Nothing here waits for time to pass: :meth:`Page.wait_for` re-evaluates its condition on a
short loop of trio checkpoints until it holds; only a generous hang guard (real time, like
:func:`server_support.guard`) ends a wait that never comes, with the expression and the
page's text in the message.

The tests skip (with the reason) only when ``chromium`` is not installed.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import shutil
import subprocess
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, Final
from urllib.parse import urlencode

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from callsys.clock import ScaledClock
from callsys.hall import Hall
from callsys.server import CallsysServer, ServerSettings, serve_callsys
from server_support import SECRET, START, client, hang_guard

CHROMIUM: Final = shutil.which("chromium")
ARTIFACTS: Final = Path(__file__).parent / "artifacts"  # screenshots (gitignored)
WAIT_GUARD_S: Final = 30.0  # real seconds before a wait_for that never holds fails: a hang guard, not a limit
POLL_S: Final = 0.02  # seconds between two evaluations of a wait_for condition
START_GUARD_S: Final = 60.0  # real seconds for chromium to start and write its DevTools port
CDP_MESSAGE_BYTES: Final = 64 * 1024 * 1024  # screenshots of a 1920x1080 page are a few MiB of base64

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make setup` installs it)")


class BrowserError(Exception):
    """A DevTools command failed, or the page threw."""


class NavigatingError(BrowserError):
    """The page's document went away under a command (it navigated)."""


class Browser:
    """One DevTools connection to a headless Chromium; commands are matched to replies by id."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, trio.MemorySendChannel] = {}
        self._sessions: dict[str, Page] = {}

    async def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Run one DevTools command (on a page's *session*, or on the browser) and return its result."""
        msg_id = next(self._ids)
        send, receive = trio.open_memory_channel[dict](1)
        self._replies[msg_id] = send
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_message(json.dumps(message))
        reply = await receive.receive()
        if "error" in reply:
            if any(word in reply["error"].get("message", "").lower() for word in ("context", "navigated")):
                raise NavigatingError(f"{method}: {reply['error'].get('message')}")
            raise BrowserError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}")
        return reply.get("result", {})

    async def _read(self) -> None:
        while True:
            message = json.loads(await self.ws.get_message())
            if "id" in message:
                channel = self._replies.pop(message["id"], None)
                if channel is not None:
                    channel.send_nowait(message)
            elif (page := self._sessions.get(message.get("sessionId", ""))) is not None:
                page.on_event(message["method"], message.get("params", {}))

    async def new_page(self, url: str, *, width: int = 1280, height: int = 800) -> "Page":
        """Open *url* in a new tab of *width* x *height* CSS pixels; returns once it has loaded."""
        target = (await self.send("Target.createTarget", url="about:blank"))["targetId"]
        session = (await self.send("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        page = Page(self, session, target)
        self._sessions[session] = page
        for domain in ("Page", "Runtime", "Network"):
            await page.send(f"{domain}.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=False)
        await page.goto(url)
        return page


class Page:
    """One tab: evaluate JavaScript, wait for a DOM condition, click, type, take screenshots.

    Attributes:
        requests: the URLs the page requested (``Network.requestWillBeSent``), in order.
        errors: uncaught exceptions and ``console.error`` texts of the page.
    """

    def __init__(self, browser: Browser, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target
        self.requests: list[str] = []
        self.errors: list[str] = []

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "?"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.send(method, self.session, **params)

    async def goto(self, url: str) -> None:
        """Navigate to *url* and wait until its document has loaded."""
        await self.send("Page.navigate", url=url)
        await self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    async def evaluate(self, expression: str, *, gesture: bool = False) -> Any:
        """The value of a JavaScript *expression* (promises awaited); *gesture* runs it as a user's click
        would (a page may only start audio from one)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True,
                                 userGesture=gesture)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: "
                               f"{details.get('exception', {}).get('description') or details.get('text')}")
        return result["result"].get("value")

    async def wait_for(self, condition: str, guard_s: float = WAIT_GUARD_S) -> Any:
        """Wait until the JavaScript *condition* is truthy; return its value.

        The value comes back as JSON, so an element would arrive as ``{}`` (falsy in Python):
        write ``!!document.querySelector(...)`` for "exists".

        Re-evaluated after every short trio checkpoint; only a hang guard of *guard_s* real
        seconds ends a wait for something that never happens.

        Raises:
            trio.TooSlowError: the condition never held (the message shows the page's text).
        """
        try:
            with hang_guard(guard_s):
                while True:
                    try:
                        if value := await self.evaluate(condition):
                            return value
                    except NavigatingError:  # the page is loading another document: ask the new one
                        pass
                    await trio.sleep(POLL_S)
        except trio.TooSlowError:
            text = await self.evaluate("document.body ? document.body.innerText : ''")
            raise trio.TooSlowError(f"waited in vain for {condition!r}; the page shows:\n{text}\n"
                                    f"errors: {self.errors}") from None

    async def text(self, selector: str) -> str | None:
        """The text of the first element matching *selector* (None if there is none)."""
        return await self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent ?? null")

    async def click(self, selector: str) -> None:
        """Click the element matching *selector* as a user would (a trusted gesture); an SVG
        element, which has no ``click()``, gets a bubbling click event."""
        clicked = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; "
            f"if (typeof e.click === 'function') e.click(); "
            f"else e.dispatchEvent(new MouseEvent('click', {{bubbles: true}})); return true; }})()", gesture=True)
        if not clicked:
            raise BrowserError(f"nothing to click: {selector!r}")

    async def submit(self, form: str, **values: str) -> None:
        """Fill the inputs of the form matching *form* by name and submit it (it may navigate)."""
        try:
            await self.evaluate(
                f"(() => {{ const f = document.querySelector({json.dumps(form)}); "
                f"for (const [k, v] of Object.entries({json.dumps(values)})) f.elements[k].value = v; "
                f"f.requestSubmit(); }})()", gesture=True)
        except NavigatingError:  # the submit navigated before the answer came back
            pass

    async def press(self, key: str) -> None:
        """Type one printable *key* (keydown, char, keyup) into the focused page."""
        await self.send("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
        await self.send("Input.dispatchKeyEvent", type="keyUp", key=key)

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to *path* (directories created) and return the path."""
        data = (await self.send("Page.captureScreenshot", format="png"))["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    async def close(self) -> None:
        await self.browser.send("Target.closeTarget", targetId=self.target)


@asynccontextmanager
async def open_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """A headless Chromium with its profile in *tmp_path*; closed (and reaped) on exit."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    port_file = profile / "DevToolsActivePort"
    log = (tmp_path / "chromium.log").open("wb")
    process = await trio.lowlevel.open_process(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
         "--mute-audio", "--allow-file-access-from-files", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        with hang_guard(START_GUARD_S):  # chromium writes the file once it listens
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if process.poll() is not None:
                    raise BrowserError(f"chromium exited with {process.returncode}: "
                                       f"{(tmp_path / 'chromium.log').read_text(errors='replace')[-2000:]}")
                await trio.sleep(POLL_S)
        port, path = port_file.read_text().splitlines()[:2]
        async with open_websocket_url(f"ws://127.0.0.1:{port}{path}", max_message_size=CDP_MESSAGE_BYTES) as ws:
            browser = Browser(ws)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(browser._read)
                try:
                    yield browser
                finally:
                    with trio.move_on_after(5) as scope:
                        scope.shield = True
                        try:
                            await browser.send("Browser.close")
                        except Exception:  # already gone
                            pass
                    nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await process.wait()
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        log.close()


def page_url(server: CallsysServer, page: str, **query: Any) -> str:
    """The URL of *page* (``board``, ``led``...) on *server*'s own HTTP port with *query* parameters."""
    return f"http://{server.host}:{server.port}/{page}?{urlencode(query)}"


async def serve_hall(nursery: trio.Nursery, hall: Hall, store: Path, port: int = 0,
                     phone_refresh_s: float = math.inf) -> tuple[CallsysServer, trio.Event]:
    """A server for *hall* on *port* (0: a free one) in a nursery of its own, for pages that must
    see it restart on the same port; returns it and an event set once it has stopped."""
    stopped = trio.Event()
    # the pages and the test's clients send as fast as the server answers: no rate limit in the way
    settings = ServerSettings(phone_refresh_s=phone_refresh_s, rate_per_s=1e6, rate_burst=1_000_000)

    async def run(task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as own:
            task_status.started(await own.start(partial(
                serve_callsys, hall, f"file:{store}", port=port, clock=ScaledClock(START), secret=SECRET,
                settings=settings)))
        stopped.set()

    return await nursery.start(run), stopped


async def clerk_calls_next(server: CallsysServer, window: int) -> str:
    """The clerk of *window* opens it if closed, finishes its current ticket if any, and calls
    the next: the number called there."""
    async with client(server, "clerk", window=window) as clerk:
        if (await clerk.request("window"))["status"] == "closed":
            await clerk.request("open_window")
        if (await clerk.request("window"))["current"] is not None:
            await clerk.request("finish")
        result = await clerk.request("call_next")
    (called,) = [e for e in result["events"] if e["kind"] == "ticket_called"]
    assert called["window"] == window
    return called["number"]
