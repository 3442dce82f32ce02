"""Drawing the hall screens (callsys/tools/display.py, ledfont.py) from hand-fed view models."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from callsys.tools.display import (BLINK_S, CLOCK_REFRESH_S, SIDE_BY_SIDE_COLUMNS, Screen, Target, board_view,
                                  led_panel)
from callsys.tools.display_model import DisplayModel
from callsys.tools.ledfont import HEIGHT, WIDTH, _GLYPHS, big_lines, dots, width_of
from test_display_model import board, called, summary, update, view, welcome

ZONE = Target("zone", "social", "社会事务区 Social affairs")


def draw(renderable, width: int) -> str:
    console = Console(file=io.StringIO(), width=width)
    console.print(renderable)
    return console.file.getvalue()


def fed() -> DisplayModel:
    model = DisplayModel()
    model.welcome(welcome(), 0.0)
    model.apply(board(view(7), view(8), view(9, status="paused"), view(10, status="closed"),
                      services=[summary("SOC", 4, 720.0), summary("MED", 0, None, zh="医保", en="Medical")]), 0.0)
    model.apply(called(7, "C001"), 1.0)
    model.apply(update("started", 7, number="C001", stage="serving"), 2.0)
    model.apply(called(8, "C002"), 3.0)
    return model


@pytest.mark.parametrize("width", [80, SIDE_BY_SIDE_COLUMNS, 200])
def test_the_board_shows_hall_clock_calls_services_and_windows(width):
    out = draw(board_view(fed(), ZONE, 3.0, width), width)
    assert "演示大厅 Demo hall" in out and "社会事务区 Social affairs" in out
    assert "09:30:03" in out  # the hall clock three seconds after welcome
    assert out.index("C002") < out.index("C001")  # newest first
    assert "8 号窗口 Window 8" in out and "7 号窗口 Window 7" in out
    assert "办理中 Serving" in out and "请前往 Please go" in out
    assert "社保 Social" in out and "~12 min" in out and "医保 Medical" in out
    assert "暂停 paused" in out and "关闭 closed" in out
    assert "107" not in out and "108" not in out  # never a ticket id


def test_the_board_shows_the_newest_call_big_across_the_hall():
    out = draw(board_view(fed(), ZONE, 3.0, 100), 100)
    assert "正在呼叫 Now calling" in out
    rows = out.splitlines()
    for number, window in zip(big_lines("C002"), big_lines("8")):  # side by side: the number, then its window
        assert any(number in row and window.strip() in row[row.index(number) + len(number):] for row in rows)


def test_names_from_the_server_are_shown_as_text_not_markup():
    model = fed()
    model.hall_name = {"zh": "[red]大厅", "en": "[/]Hall"}
    model.services["SOC"]["name"] = {"zh": "[b]社保", "en": "Social"}
    out = draw(board_view(model, Target("zone", "z", "[x] zone"), 3.0, 100), 100)
    assert "[red]大厅 [/]Hall" in out and "[x] zone" in out and "[b]社保" in out


def test_the_board_before_its_first_board_says_it_is_connecting():
    model = DisplayModel()
    assert "Connecting" in draw(board_view(model, ZONE, 0.0, 100), 100)


def test_a_board_without_calls_or_queue_figures_says_so():
    model = DisplayModel()
    model.welcome(welcome(), 0.0)
    model.apply(board(view(7)), 0.0)
    out = draw(board_view(model, ZONE, 0.0, 100), 100)
    assert "暂无叫号 No calls yet" in out and "暂无 Not available" in out


def test_the_led_draws_window_and_number_big_and_the_short_text_below():
    model = DisplayModel()
    model.welcome(welcome(), 0.0)
    model.apply(board(view(15)), 0.0)
    model.apply(called(15, "A023"), 0.0)
    out = draw(led_panel(model.led(15, 0.5), Target("window", 15, "15 号窗口 Window 15"), 100, 0.5), 100)
    lines = big_lines("15 A023", scale=2)
    assert all(line.rstrip() in out for line in lines)
    assert "请 A023 号到 15 号窗口" in out and "No. A023 to window 15" in out


def test_the_led_font_grows_with_the_screen_and_stays_inside_it():
    model = DisplayModel()
    model.welcome(welcome(), 0.0)
    model.apply(board(view(15, number="A023", stage="called")), 0.0)
    led = model.led(15, 0.0)
    for width in (60, 100, 300):
        out = draw(led_panel(led, Target("window", 15), width, 0.0), width)
        assert max(len(line) for line in out.splitlines()) <= width


# ---------------------------------------------------------------------- the LED font


def test_every_glyph_is_seven_rows_of_five_dots():
    assert all(len(g) == HEIGHT and all(len(row) == WIDTH for row in g) for g in _GLYPHS.values())
    assert set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ- ") <= set(_GLYPHS)


@pytest.mark.parametrize("text", ["7", "15 A023", "C001", "2105 VIP-12"])
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_big_lines_size(text, scale):
    lines = big_lines(text, scale)
    assert len(lines) == math.ceil(HEIGHT * scale / 2)
    assert {len(line) for line in lines} == {width_of(text, scale)}


def test_the_half_blocks_draw_the_dots():
    (top, bottom) = dots("1")[:2]
    assert big_lines("1")[0] == "".join({(0, 0): " ", (1, 0): "▀", (0, 1): "▄", (1, 1): "█"}[t, b]
                                        for t, b in zip(top, bottom))


def test_lower_case_is_drawn_as_capitals_and_unknown_characters_as_blanks():
    assert big_lines("a023") == big_lines("A023")
    assert big_lines("号") == big_lines(" ")


# ---------------------------------------------------------------------- when a terminal redraws


def test_a_quiet_screen_redraws_at_the_hall_clocks_next_second():
    model = DisplayModel()
    model.welcome(welcome(server_time=1_795_397_400.25), 10.0)
    model.apply(board(view(7)), 10.0)
    screen = Screen(ZONE, model, now=lambda: 10.5)
    assert screen.redraw_in() == pytest.approx(0.25)


def test_a_screen_on_a_fast_virtual_clock_redraws_every_clock_refresh():
    model = DisplayModel()
    model.welcome(welcome(clock_speed=60.0), 0.0)
    model.apply(board(view(7)), 0.0)
    assert Screen(ZONE, model, now=lambda: 0.3).redraw_in() == CLOCK_REFRESH_S


@pytest.mark.parametrize("target", [ZONE, Target("window", 7)])
def test_a_blinking_screen_redraws_at_the_next_blink_phase_then_rests(target):
    model = DisplayModel(highlight_s=5.0)
    model.welcome(welcome(clock_speed=60.0), 0.0)
    model.apply(board(view(7)), 0.0)
    model.apply(called(7, "C001"), 0.0)
    assert Screen(target, model, now=lambda: 1.2).redraw_in() == pytest.approx(BLINK_S - 1.2 % BLINK_S)
    assert Screen(target, model, now=lambda: 6.0).redraw_in() == CLOCK_REFRESH_S  # the blinking is over


def test_feeding_a_new_connections_pushes_takes_its_welcome_first():
    t = [0.0]
    screen = Screen(ZONE, DisplayModel(), now=lambda: t[0])
    first = welcome()
    assert screen.feed(board(view(7)), first) and screen.version == 1
    assert screen.model.hall_time(0.0).strftime("%H:%M") == "09:30"
    t[0] = 5.0
    assert not screen.feed({"type": "announce"}, first) and screen.version == 1
    screen.feed(board(view(7)), welcome(server_time=first["server_time"] + 3600))  # reconnected
    assert screen.model.hall_time(5.0).strftime("%H:%M") == "10:30" and screen.model.syncs == 2
