"""Behaviour that docs/protocol.md promises in so many words, pinned over real connections.

Each test names the passage it checks: request ids (``""`` and ``null``), ``subscribe``
with no selector, an invalid subscribe leaving the subscription as it was, the clerk's
``board`` after ``welcome``, and ``return_ticket`` of a citizen parked at another window.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from trio_websocket import open_websocket_url

from callsys import errors
from callsys.client import RequestFailed
from callsys.protocol import JSON
from server_support import TOKENS, client, guard, push_of, server  # noqa: F401  (fixtures)


async def exchange(server, *messages: dict) -> list[dict]:
    """Send hello + *messages* on a raw JSON connection; the replies to the messages, in order."""
    async with open_websocket_url(server.url, subprotocols=[JSON]) as ws:
        await ws.send_message(json.dumps({"type": "hello", "role": "kiosk", "token": TOKENS["kiosk"]}))
        assert json.loads(await ws.get_message())["type"] == "welcome"
        for message in messages:
            await ws.send_message(json.dumps(message))
        return [json.loads(await ws.get_message()) for _ in messages]


@guard()
async def test_request_ids_empty_string_is_echoed_and_null_means_none(server):
    # "id": "" is a valid id and is echoed as ""; "id": null is the same as no id
    empty, null, absent, bad = await exchange(server, {"type": "ping", "id": ""}, {"type": "ping", "id": None},
                                              {"type": "ping"}, {"type": "ping", "id": 1.5})
    assert empty["type"] == "ok" and empty["id"] == ""
    assert null["type"] == "ok" and "id" not in null
    assert absent["type"] == "ok" and "id" not in absent
    assert bad["type"] == "error" and bad["code"] == "invalid_field" and "id" not in bad


@guard()
async def test_subscribe_with_no_selector_subscribes_to_nothing(server):
    async with client(server, "display", subscribe={"windows": [1]}) as display, \
            client(server, "manager", subscribe={"all": True}) as manager:
        await push_of(display, "board")
        assert len([s for s in server.hub.displays[1] if s.role in ("display", "manager")]) == 2
        assert await display.request("subscribe") == {"windows": [], "services": []}
        assert await manager.request("subscribe", all=False) == {"windows": [], "services": []}
        assert not any(server.hub.displays.values())  # nobody is pushed anything any more
        assert "server_time" in await display.request("ping")  # and the connections are fine


@guard()
async def test_hello_with_an_empty_subscription_gets_no_board(server):
    async with client(server, "display", subscribe={}) as display:
        assert "server_time" in await display.request("ping")
        assert not any(server.hub.displays.values())


@guard()
async def test_an_invalid_subscribe_keeps_the_subscription(server):
    async with client(server, "display", subscribe={"windows": [1]}) as display, \
            client(server, "clerk", window=1) as clerk:
        await push_of(display, "board")
        with pytest.raises(RequestFailed) as info:
            await display.request("subscribe", windows=[1, 999])
        assert info.value.code == "invalid_field" and info.value.details["value"] == 999
        await clerk.request("open_window")
        update = await push_of(display, "window_update")  # still subscribed to window 1
        assert (update["window"], update["event"]) == (1, "opened")


@guard()
async def test_a_clerk_gets_its_window_s_board_after_welcome(server):
    async with client(server, "clerk", window=3) as clerk:
        board = await push_of(clerk, "board")
        assert [w["window"] for w in board["windows"]] == [3]


@guard()
async def test_return_ticket_sends_the_citizen_back_to_the_window_that_parked_them(server):
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=1) as one, \
            client(server, "clerk", window=2) as two:
        await kiosk.request("take_number", service="BIZ")
        await one.request("open_window")
        await two.request("open_window")
        await one.request("call_next")
        await one.request("park")
        returned = await two.request("return_ticket", ticket="A001")  # sent from window 2
        assert returned["events"][0]["window"] == 1
        assert server.engine.ticket("A001").window == 1
        with pytest.raises(RequestFailed) as info:
            await two.request("call_next")  # A001 waits for window 1, not for window 2
        assert info.value.code == "queue_empty"
        assert (await one.request("call_next"))["events"][0]["number"] == "A001"
        with pytest.raises(RequestFailed) as info:
            await two.request("return_ticket", ticket="A001")  # no longer parked
        assert info.value.code == "invalid_state"


def _engine_errors() -> list[type]:
    out, todo = [], [errors.EngineError]
    while todo:
        for sub in todo.pop().__subclasses__():
            out.append(sub)
            todo.append(sub)
    return out


def test_every_engine_error_code_is_in_the_errors_table():
    # "Engine rejections (callsys/errors.py, mapped 1:1 from EngineError.code ...)": one row each
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = doc[doc.index("Engine rejections (`callsys/errors.py`"):doc.index("## Close codes")]
    missing = [e.code for e in _engine_errors() if f"| `{e.code}` |" not in table]
    assert not missing, f"docs/protocol.md's engine rejections table lacks {missing}"


@guard()
async def test_ticket_results_carry_every_documented_field(server):
    # "Ticket results": the fields listed, closing_warning among them (null without a warning)
    async with client(server, "kiosk") as kiosk:
        result = await kiosk.request("take_number", service="SOC")
    assert result["closing_warning"] is None
    for field in ("ticket", "number", "service", "channel", "green", "klass", "green_reason", "status", "rank",
                  "issued_at", "slot_start", "slot_end", "ahead", "estimated_wait_s", "closing_warning", "secret",
                  "qr"):
        assert field in result, field
