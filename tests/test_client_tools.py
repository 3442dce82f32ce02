"""The terminal tools as a user runs them: ``python -m callsys kiosk|clerk`` against a real server."""

from __future__ import annotations

import json
import os
import pty
import sys
import termios
from typing import Any

import trio

from conftest import CONFIG
from server_support import client, guard, hang_guard, push_of, server  # noqa: F401  (fixture)

DEMO = str(CONFIG / "demo.toml")
# Real seconds one tool run may take before it counts as hung. A run starts a Python process
# (~1 s, ~3 s with both cores busy), so the tests below guard each run, not the whole test.
TOOL_GUARD_S = 60


async def tool(server, *argv: str, stdin: bytes | None = None) -> tuple[int, str]:
    """Run ``callsys ARGV`` against *server* (tokens from the demo hall file); (exit code, stdout)."""
    with hang_guard(TOOL_GUARD_S):
        done = await trio.run_process([sys.executable, "-m", "callsys", *argv, "--url", server.url, "--config", DEMO],
                                      stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
                                      env={**os.environ, "COLUMNS": "120"})
    return done.returncode, done.stdout.decode()


async def tool_json(server, *argv: str) -> tuple[int, Any]:
    code, out = await tool(server, *argv, "--json")
    return code, json.loads(out)


async def test_kiosk_takes_a_ticket_non_interactively(server):
    code, ticket = await tool_json(server, "kiosk", "--service", "SOC")
    assert code == 0 and (ticket["number"], ticket["status"]) == ("C001", "waiting")
    assert server.engine.state.tickets[ticket["ticket"]].number == "C001"
    code, green = await tool_json(server, "kiosk", "--service", "SOC", "--green", "--channel", "qr")
    assert code == 0 and (green["klass"], green["channel"]) == ("priority", "qr")
    code, failed = await tool_json(server, "kiosk", "--service", "NOPE")
    assert code == 1 and failed["error"] == "unknown_service"
    code, out = await tool(server, "kiosk", "--service", "MED")
    assert code == 0 and "D001" in out and "ahead" in out


async def test_kiosk_interactive_lists_services_and_prints_the_ticket(server):
    code, out = await tool(server, "kiosk", stdin=b"3\nMED\nq\n")
    assert code == 0
    assert "Social security" in out and "choose a service" in out
    assert "C001" in out and "D001" in out
    assert {t.number for t in server.engine.state.tickets.values()} == {"C001", "D001"}


async def test_clerk_runs_actions_non_interactively(server):
    await tool(server, "kiosk", "--service", "SOC")
    await tool(server, "kiosk", "--service", "SOC")
    code, refused = await tool_json(server, "clerk", "--window", "7", "--staff", "x" * 33, "--do", "open")
    assert code == 1 and refused["error"] == "invalid_argument" and "clerk" in refused["message"]
    steps = [("open", "window_opened"), ("next", "ticket_called"), ("recall", "ticket_recalled"),
             ("start", "service_started")]
    for action, kind in steps:
        code, result = await tool_json(server, "clerk", "--window", "7", "--staff", "A1024", "--do", action)
        assert code == 0 and result["events"][0]["kind"] == kind
    code, state = await tool_json(server, "clerk", "--window", "7", "--do", "state")
    assert code == 0 and state["current"]["number"] == "C001" and state["current"]["status"] == "serving"
    assert state["clerk"] == "A1024"
    code, busy = await tool_json(server, "clerk", "--window", "7", "--do", "next")
    assert code == 1 and busy["error"] == "window_busy"
    code, result = await tool_json(server, "clerk", "--window", "7", "--do", "finish", "--rating", "good")
    assert code == 0 and result["events"][0]["rating"] == "good" and result["events"][0]["clerk"] == "A1024"
    code, result = await tool_json(server, "clerk", "--window", "7", "--do", "call", "--ticket", "C002")
    assert code == 0 and result["events"][0]["number"] == "C002"
    code, result = await tool_json(server, "clerk", "--window", "7", "--do", "transfer", "--to-window", "8")
    assert code == 0 and result["events"][0]["to_window"] == 8
    code, out = await tool(server, "clerk", "--window", "7", "--do", "state")
    assert code == 0 and "window 7" in out and "served today 1" in out and "clerk A1024" in out


@guard(60)
async def test_clerk_console_takes_single_keys(server):
    await tool(server, "kiosk", "--service", "SOC")
    master, slave = pty.openpty()
    screen = Screen()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100", "LINES": "40"}
    argv = [sys.executable, "-m", "callsys", "clerk", "--window", "7", "--url", server.url, "--config", DEMO]
    async with client(server, "display", subscribe={"windows": [7]}) as led, trio.open_nursery() as nursery:
        process = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, check=False, task_status=task_status))
        os.close(slave)
        terminal = trio.lowlevel.FdStream(master)
        nursery.start_soon(screen.read, terminal)
        # The console draws its window once, then puts the terminal in cbreak mode, flushing
        # any key typed before (TCSAFLUSH), then draws again on its first push: keys are read
        # for sure only from the second drawing on.
        await screen.shows(b"window 7", times=2)
        assert not termios.tcgetattr(master)[3] & termios.ICANON
        for key, event in ((b"o", "opened"), (b"n", "called"), (b"s", "started")):
            await terminal.send_all(key)
            assert (await push_of(led, "window_update"))["event"] == event  # the key's command is durable
        await terminal.send_all(b"q")
        assert await process.wait() == 0
        nursery.cancel_scope.cancel()
    assert b"C001" in screen.data
    assert server.engine.state.tickets[1].status == "serving"


class Screen:
    """What a tool wrote to its terminal, and a way to wait until it shows something."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self._changed = trio.Event()

    async def read(self, terminal: trio.lowlevel.FdStream) -> None:
        try:
            while chunk := await terminal.receive_some(4096):
                self.data.extend(chunk)
                self._wake()
        except (OSError, trio.BrokenResourceError):  # EIO once the tool has exited and closed the terminal
            pass
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def shows(self, text: bytes, *, times: int = 1) -> None:
        """Return once *text* has been written *times* times.

        Raises:
            AssertionError: the tool closed its terminal before that.
        """
        while self.data.count(text) < times:
            assert not self.closed, f"the tool exited without showing {text!r}: {bytes(self.data[-300:])!r}"
            await self._changed.wait()
