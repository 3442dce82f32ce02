"""The hall screen's view model (callsys/tools/display_model.py), fed with hand-built pushes.

The ``services`` of ``board`` and the ``queue_update`` push follow CONTRACTS.md; they are fed
here by hand, independent of whether the server sends them yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from callsys.tools.display_model import DisplayModel
from conftest import SHANGHAI

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI).timestamp()  # a Monday morning in the hall


def view(window: int, status: str = "open", number: str | None = None, stage: str | None = None,
         recalls: int = 0, **extra: Any) -> dict[str, Any]:
    """A window view as ``board`` and ``window_update`` carry it."""
    return {"window": window, "display": str(window), "zone": "social", "floor": 1, "status": status,
            "ticket": 100 + window if number else None, "number": number, "service": "SOC" if number else None,
            "stage": stage, "recalls": recalls, **extra}


def board(*views: dict[str, Any], services: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    push: dict[str, Any] = {"type": "board", "windows": list(views)}
    if services is not None:
        push["services"] = services
    return push


def update(event: str, window: int, seq: int = 1, **fields: Any) -> dict[str, Any]:
    return {"type": "window_update", **view(window, **fields), "event": event, "at": T0, "seq": seq}


def called(window: int, number: str, recalls: int = 0) -> dict[str, Any]:
    return update("recalled" if recalls else "called", window, number=number, stage="called", recalls=recalls)


def summary(code: str, waiting: int, wait_s: float | None = 600.0, zh: str = "社保", en: str = "Social") -> dict[str, Any]:
    return {"code": code, "prefix": code[0], "name": {"zh": zh, "en": en}, "group": "social",
            "waiting": waiting, "windows_open": 1, "estimated_wait_s": wait_s}


def welcome(server_time: float = T0, clock_speed: float = 1.0) -> dict[str, Any]:
    return {"type": "welcome", "hall": "demo", "hall_name": {"zh": "演示大厅", "en": "Demo hall"},
            "timezone": "Asia/Shanghai", "role": "display", "server_time": server_time, "clock_speed": clock_speed}


def screen(*windows: int, now: float = 0.0, **kwargs: Any) -> DisplayModel:
    """A model that got its welcome and a board of open, idle *windows* at *now*."""
    model = DisplayModel(**kwargs)
    model.welcome(welcome(), now)
    model.apply(board(*(view(w) for w in windows or (7, 8, 9))), now)
    return model


def numbers(model: DisplayModel) -> list[str]:
    return [c.number for c in model.calls]


# ---------------------------------------------------------------------- calls


def test_calls_are_listed_newest_first_with_their_windows():
    model = screen()
    for now, (window, number) in enumerate([(7, "C001"), (8, "C002"), (9, "D001")], 1):
        assert model.apply(called(window, number), now)
    assert [(c.number, c.display) for c in model.calls] == [("D001", "9"), ("C002", "8"), ("C001", "7")]


def test_a_number_is_listed_once_and_a_recall_moves_it_up_and_counts():
    model = screen()
    model.apply(called(7, "C001"), 1)
    model.apply(called(8, "C002"), 2)
    model.apply(called(7, "C001", recalls=1), 3)
    assert numbers(model) == ["C001", "C002"]
    assert model.calls[0].recalls == 1


def test_the_newest_call_is_highlighted_for_a_few_seconds_then_not():
    model = screen(highlight_s=5.0)
    model.apply(called(7, "C001"), 10.0)
    assert model.highlighted(10.0).number == "C001"
    assert model.highlighted(14.9).number == "C001"
    assert model.highlighted(15.0) is None
    model.apply(called(8, "C002"), 20.0)
    assert model.highlighted(21.0).number == "C002"  # only the newest, never an older one


def test_a_recall_highlights_the_number_again():
    model = screen(highlight_s=5.0)
    model.apply(called(7, "C001"), 0.0)
    model.apply(called(8, "C002"), 1.0)
    assert model.highlighted(30.0) is None
    model.apply(called(7, "C001", recalls=1), 30.0)
    top = model.highlighted(31.0)
    assert (top.number, top.recalls) == ("C001", 1)


def test_the_list_keeps_only_the_last_calls():
    model = screen(max_calls=3)
    for i in range(1, 6):
        model.apply(called(7, f"C{i:03d}"), i)
    assert numbers(model) == ["C005", "C004", "C003"]


def test_a_ticket_transferred_and_called_at_another_window_is_listed_once_at_that_window():
    model = screen()
    model.apply(called(7, "C001"), 1)
    model.apply(update("transferred", 7), 2)
    model.apply(called(9, "C001"), 3)
    assert [(c.number, c.window) for c in model.calls] == [("C001", 9)]


def test_a_call_shows_its_stage_while_at_its_window_and_is_past_after():
    model = screen()
    model.apply(called(7, "C001"), 1)
    (call,) = model.calls
    assert model.stage_of(call) == "called"
    model.apply(update("started", 7, number="C001", stage="serving"), 2)
    assert model.stage_of(call) == "serving"
    model.apply(update("finished", 7), 3)
    assert model.stage_of(call) is None
    assert numbers(model) == ["C001"]  # a finished call stays in the list, shown as past


def test_other_window_events_change_the_window_but_not_the_calls():
    model = screen()
    model.apply(called(7, "C001"), 1)
    assert model.apply(update("paused", 8, status="paused"), 2)
    assert model.windows[8]["status"] == "paused"
    assert numbers(model) == ["C001"]


# ---------------------------------------------------------------------- day reset, unknown windows, other pushes


def test_a_day_reset_clears_the_calls():
    model = screen()
    model.apply(called(7, "C001"), 1)
    model.apply(called(8, "C002"), 2)
    assert model.apply(update("reset", 7, status="closed"), 3)
    assert model.calls == []
    assert model.windows[7]["status"] == "closed"
    model.apply(called(8, "C001"), 4)  # the new day's first number again
    assert numbers(model) == ["C001"]


def test_a_welcome_on_another_hall_day_clears_the_calls_and_one_on_the_same_day_keeps_them():
    model = screen()
    model.apply(called(7, "C001"), 1)
    model.welcome(welcome(T0 + 3600), 2)  # reconnected an hour later, same day
    assert numbers(model) == ["C001"]
    model.welcome(welcome(T0 + 86_400), 3)  # the server came back the next morning
    assert model.calls == []


def test_an_update_for_a_window_the_board_did_not_list_is_ignored():
    model = screen(7, 8)
    assert not model.apply(called(42, "Z001"), 1)
    assert model.calls == [] and 42 not in model.windows


def test_updates_before_the_first_board_are_ignored():
    model = DisplayModel()
    model.welcome(welcome(), 0)
    assert not model.apply(called(7, "C001"), 1)
    assert not model.synced and model.calls == []


@pytest.mark.parametrize("push", [
    {"type": "announce", "window": 7, "display": "7", "zone": "social", "number": "C001", "recall": 0,
     "at": T0, "seq": 5, "text": {"zh": "请 C001 号到 7 号窗口办理", "en": "Number C001, please go to window 7"}},
    {"type": "ticket_update", "ticket": 1},
    {"type": "ok", "result": {}},
    {"no": "type"},
])
def test_other_pushes_change_nothing(push):
    model = screen()
    before = model.snapshot(0.0)
    assert not model.apply(push, 1.0)
    assert model.snapshot(0.0) == before


# ---------------------------------------------------------------------- resync from a fresh board


def test_a_fresh_board_adds_the_calls_missed_while_away_on_top_without_highlight():
    model = screen(7, 8, 9)
    model.apply(called(7, "C001"), 1)
    # disconnected; meanwhile 7 finished C001 and called C003, 9 called D001 and started
    fresh = board(view(7, number="C003", stage="called"), view(8),
                  view(9, number="D001", stage="serving"))
    assert model.apply(fresh, 50)
    assert numbers(model) == ["C003", "D001", "C001"]
    assert model.highlighted(50) is None  # their time is unknown: no blinking for old news
    assert model.stage_of(model.calls[2]) is None  # C001 is past now


def test_a_fresh_board_keeps_calls_it_already_lists_in_place():
    model = screen()
    model.apply(called(7, "C001"), 1)
    model.apply(called(8, "C002"), 2)
    model.apply(board(view(7, number="C001", stage="serving"), view(8, number="C002", stage="called"), view(9)), 3)
    assert numbers(model) == ["C002", "C001"]
    assert model.highlighted(3).number == "C002"  # still fresh from its live call


def test_the_first_board_lists_the_current_calls_in_window_order():
    model = DisplayModel()
    model.welcome(welcome(), 0)
    model.apply(board(view(10, number="E001", stage="called"), view(9), view(2, number="A003", stage="serving")), 0)
    assert numbers(model) == ["A003", "E001"]
    assert [w["window"] for w in model.window_rows()] == [2, 9, 10]  # numerically, not "10" < "2"


# ---------------------------------------------------------------------- queues


def test_board_services_then_queue_updates_merge_by_code():
    model = DisplayModel()
    model.welcome(welcome(), 0)
    model.apply(board(view(7), services=[summary("SOC", 3), summary("MED", 1, zh="医保", en="Medical")]), 0)
    assert model.apply({"type": "queue_update", "services": [summary("SOC", 5, 900.0)], "at": T0}, 1)
    rows = {s["code"]: (s["waiting"], s["estimated_wait_s"]) for s in model.service_rows()}
    assert rows == {"SOC": (5, 900.0), "MED": (1, 600.0)}  # MED untouched by an update without it
    model.apply({"type": "queue_update", "services": [summary("CIVIL", 2, None)], "at": T0}, 2)
    assert [s["code"] for s in model.service_rows()] == ["CIVIL", "MED", "SOC"]


def test_an_empty_queue_update_changes_nothing():
    model = screen()
    assert not model.apply({"type": "queue_update", "services": [], "at": T0}, 1)


def test_a_fresh_board_replaces_the_services_and_one_without_services_keeps_them():
    model = DisplayModel()
    model.welcome(welcome(), 0)
    model.apply(board(view(7), services=[summary("SOC", 3), summary("MED", 1)]), 0)
    model.apply(board(view(7), services=[summary("SOC", 0)]), 1)  # MED no longer served here
    assert [(s["code"], s["waiting"]) for s in model.service_rows()] == [("SOC", 0)]
    model.apply(board(view(7)), 2)  # a server without service summaries
    assert [s["code"] for s in model.service_rows()] == ["SOC"]


# ---------------------------------------------------------------------- hall clock


def test_the_hall_clock_follows_the_servers_time_and_speed_in_the_hall_zone():
    model = DisplayModel()
    model.welcome(welcome(T0, clock_speed=60.0), now=1000.0)
    assert model.hall_time(1000.0).strftime("%Y-%m-%d %H:%M") == "2026-11-23 09:30"
    assert model.hall_time(1010.0).strftime("%H:%M:%S") == "09:40:00"  # 10 real s at 60x
    assert model.hall_time(1010.0).utcoffset().total_seconds() == 8 * 3600


def test_no_hall_clock_before_welcome():
    assert DisplayModel().hall_time(0.0) is None


# ---------------------------------------------------------------------- LED strip


@pytest.mark.parametrize("status, text", [("open", "欢迎光临  Welcome"), ("paused", "暂停服务  Paused"),
                                          ("closed", "暂停办理  Closed")])
def test_an_led_without_a_citizen_shows_the_window_and_its_status(status, text):
    model = DisplayModel()
    model.welcome(welcome(), 0)
    model.apply(board(view(15, status=status)), 0)
    led = model.led(15, 0)
    assert (led.line1, led.line2, led.number, led.blink) == ("15", text, None, False)


def test_an_led_blinks_on_a_call_then_stays_lit():
    model = screen(7, highlight_s=5.0)
    model.apply(called(7, "C001"), 10.0)
    led = model.led(7, 11.0)
    assert (led.line1, led.number, led.blink) == ("7 C001", "C001", True)
    assert led.line2.startswith("请 C001 号到 7 号窗口") and "window 7" in led.line2
    assert not model.led(7, 15.0).blink


def test_an_led_blinks_again_on_a_recall_and_says_so():
    model = screen(7, highlight_s=5.0)
    model.apply(called(7, "C001"), 0.0)
    model.apply(called(7, "C001", recalls=1), 60.0)
    led = model.led(7, 61.0)
    assert led.blink and led.line2.startswith("再次呼叫")


def test_an_led_stops_blinking_once_service_starts():
    model = screen(7)
    model.apply(called(7, "C001"), 0.0)
    model.apply(update("started", 7, number="C001", stage="serving"), 1.0)
    led = model.led(7, 1.0)
    assert not led.blink and led.line2.startswith("正在办理 C001")


def test_an_led_after_a_board_shows_the_call_without_blinking():
    model = DisplayModel()
    model.welcome(welcome(), 0)
    model.apply(board(view(7, number="C004", stage="called")), 0)
    led = model.led(7, 0)
    assert (led.line1, led.blink) == ("7 C004", False)


def test_an_led_of_an_unknown_window_is_none():
    assert screen(7).led(8, 0.0) is None


# ---------------------------------------------------------------------- what is shown


def test_the_snapshot_never_carries_a_ticket_id():
    model = screen()
    model.apply(called(7, "C001"), 1)
    snap = model.snapshot(1)
    assert snap["calls"] == [{"number": "C001", "window": 7, "display": "7", "recalls": 0, "stage": "called",
                              "highlight": True}]
    assert all("ticket" not in row for part in ("calls", "windows") for row in snap[part])
    assert "107" not in repr(snap)  # view(7)'s ticket id
