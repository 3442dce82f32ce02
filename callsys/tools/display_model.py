"""What a hall screen shows, folded from the server's pushes: the view model of ``callsys display``.

Pure: no I/O, no clock of its own, no trio. The caller feeds it the connection's ``welcome``
and every push (``board``, ``window_update``, ``queue_update``) together with *now*, the
caller's monotonic time in seconds, and asks it what to show at a given *now*. The rich
renderer in :mod:`callsys.tools.display` only draws what this module decides.

The rules a hall screen follows:

* **Last calls.** Every ``called`` or ``recalled`` window update puts the number at the top
  of the call list (newest first, at most ``max_calls`` rows); a number appears once (a
  recall, or a transferred ticket called at another window, moves its row up). The newest
  call is highlighted (blinking) for ``highlight_s`` seconds after the screen learns of it.
* **Resync.** A ``board`` (after every (re)connect) replaces what the screen knows of its
  windows and their services. Calls it shows that the list lacks (made while the screen was
  disconnected) join the top of the list without a highlight (the screen cannot know when
  they were made). A ``welcome`` on another hall day than the list's clears the list.
* **Day reset.** A ``window_update`` with ``"event": "reset"`` (the manager's ``reset_day``)
  clears the call list: yesterday's numbers must not stay on the wall.
* **Unknown windows.** An update for a window the last ``board`` did not list (another
  screen's window) is ignored.
* **Queues.** ``board.services`` gives the services of the screen's windows;
  ``queue_update`` carries only the services that changed, merged by code.
* **Hall clock.** The hall's time is ``server_time + (now - received) * clock_speed`` from
  the latest ``welcome`` (``make demo`` runs a virtual clock), never the box's own clock.
* **Privacy.** A screen shows ticket numbers and window numbers, never ticket ids; the
  protocol carries no names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Final
from zoneinfo import ZoneInfo

MAX_CALLS: Final = 8  # rows in the call list
HIGHLIGHT_S: Final = 8.0  # seconds (real) a new call or recall stays highlighted / blinking

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """One row of the call list.

    Attributes:
        number: the ticket number (``A023``), never the ticket id.
        window: the window id; ``display``: the number on its LED strip.
        recalls: how often the number has been recalled (0 for the first call).
        seen: the caller's *now* when the screen learnt of the call (for the highlight).
        live: True when it came from a live ``called``/``recalled`` update (highlightable);
            False when it was found on a ``board`` (made while the screen was away).
    """

    number: str
    window: int
    display: str
    recalls: int
    seen: float
    live: bool


@dataclass(frozen=True, slots=True)
class HallClock:
    """The hall's clock as the server reported it in ``welcome``.

    Attributes:
        server_time: the server clock (POSIX seconds) when ``welcome`` was received.
        clock_speed: virtual seconds per real second.
        received: the caller's *now* when ``welcome`` was received.
        timezone: the hall's IANA time zone.
    """

    server_time: float
    clock_speed: float
    received: float
    timezone: str

    def at(self, now: float) -> float:
        """The hall's POSIX time at the caller's *now*."""
        return self.server_time + (now - self.received) * self.clock_speed

    def local(self, now: float) -> datetime:
        """The hall's local date and time at *now*."""
        return datetime.fromtimestamp(self.at(now), ZoneInfo(self.timezone))


@dataclass(frozen=True, slots=True)
class LedView:
    """What a window's two-line LED strip shows.

    Attributes:
        display: the window's number; ``number``: the ticket number shown (or None).
        line1: the big first line (window and number, ASCII for the LED font).
        line2: the short second line (Chinese first, then English).
        blink: True while a call or recall is fresh.
    """

    display: str
    number: str | None
    line1: str
    line2: str
    blink: bool


@dataclass(slots=True)
class DisplayModel:
    """The state of one hall screen; feed it with :meth:`welcome` and :meth:`apply`.

    Args:
        max_calls: rows kept in the call list.
        highlight_s: seconds a new call stays highlighted.
    """

    max_calls: int = MAX_CALLS
    highlight_s: float = HIGHLIGHT_S
    hall_name: dict[str, str] = field(default_factory=dict)
    clock: HallClock | None = None
    windows: dict[int, Message] = field(default_factory=dict)  # window id -> latest window view
    calls: list[Call] = field(default_factory=list)  # newest first
    services: dict[str, Message] = field(default_factory=dict)  # code -> latest service summary
    syncs: int = 0  # boards received (1 + resyncs after reconnects)
    day: date | None = None  # the hall day the call list belongs to

    # ------------------------------------------------------------------ input

    def welcome(self, message: Message, now: float) -> None:
        """Take a ``welcome`` received at *now*: the hall's name and clock."""
        self.hall_name = dict(message.get("hall_name", {}))
        self.clock = HallClock(float(message["server_time"]), float(message.get("clock_speed", 1.0)), now,
                               message.get("timezone", "UTC"))
        today = self.clock.local(now).date()
        if self.day is not None and today != self.day:
            self.calls.clear()
        self.day = today

    def apply(self, push: Message, now: float) -> bool:
        """Fold *push*, received at *now*; True when it changed what the screen shows.

        Pushes of other types (``announce``, replies) are ignored.
        """
        handler = _HANDLERS.get(push.get("type", ""))
        return handler(self, push, now) if handler is not None else False

    def _board(self, push: Message, now: float) -> bool:
        self.windows = {w["window"]: w for w in push.get("windows", [])}
        if "services" in push:
            self.services = {s["code"]: s for s in push["services"]}
        known = {c.number for c in self.calls}
        missed = [Call(w["number"], w["window"], w["display"], w.get("recalls", 0), now, live=False)
                  for w in sorted(self.windows.values(), key=_window_order)
                  if w.get("stage") is not None and w.get("number") and w["number"] not in known]
        self.calls[:0] = missed
        del self.calls[self.max_calls:]
        self.syncs += 1
        return True

    def _window_update(self, push: Message, now: float) -> bool:
        wid = push.get("window")
        if wid not in self.windows:
            return False
        self.windows[wid] = {k: v for k, v in push.items() if k not in ("type", "event", "at", "seq")}
        event = push.get("event")
        if event == "reset":
            self.calls.clear()
        elif event in ("called", "recalled") and push.get("number"):
            self._call(Call(push["number"], wid, push["display"], push.get("recalls", 0), now, live=True))
        return True

    def _call(self, call: Call) -> None:
        self.calls = [call, *(c for c in self.calls if c.number != call.number)][: self.max_calls]

    def _queue_update(self, push: Message, now: float) -> bool:
        for summary in push.get("services", []):
            self.services[summary["code"]] = summary
        return bool(push.get("services"))

    # ------------------------------------------------------------------ output

    @property
    def synced(self) -> bool:
        """True once a board has arrived."""
        return self.syncs > 0

    def highlighted(self, now: float) -> Call | None:
        """The newest call while it is fresh (live and younger than ``highlight_s``), else None."""
        newest = self.calls[0] if self.calls else None
        return newest if newest is not None and newest.live and now - newest.seen < self.highlight_s else None

    def stage_of(self, call: Call) -> str | None:
        """``"called"`` or ``"serving"`` while *call*'s number is still at its window, else None (past)."""
        view = self.windows.get(call.window)
        return view.get("stage") if view is not None and view.get("number") == call.number else None

    def service_rows(self) -> list[Message]:
        """The service summaries, sorted by code."""
        return [self.services[code] for code in sorted(self.services)]

    def window_rows(self) -> list[Message]:
        """The windows' views, in window order."""
        return sorted(self.windows.values(), key=_window_order)

    def hall_time(self, now: float) -> datetime | None:
        """The hall's local time at *now* (None before ``welcome``)."""
        return self.clock.local(now) if self.clock is not None else None

    def led(self, window: int, now: float) -> LedView | None:
        """The LED strip of *window* at *now* (None until a board listed it)."""
        view = self.windows.get(window)
        if view is None:
            return None
        display, number, stage = view["display"], view.get("number"), view.get("stage")
        fresh = next((c for c in self.calls if c.window == window), None)
        blink = (stage == "called" and fresh is not None and fresh.number == number and fresh.live
                 and now - fresh.seen < self.highlight_s)
        if number is None:
            return LedView(display, None, display, _IDLE[view["status"]], False)
        if stage == "serving":
            line2 = f"正在办理 {number}  Serving {number}"
        elif fresh is not None and fresh.number == number and fresh.recalls:
            line2 = f"再次呼叫 请 {number} 号到 {display} 号窗口  Recall: No. {number} to window {display}"
        else:
            line2 = f"请 {number} 号到 {display} 号窗口  No. {number} to window {display}"
        return LedView(display, number, f"{display} {number}", line2, blink)

    def snapshot(self, now: float) -> Message:
        """What the screen shows at *now*, as plain data (``callsys display --json``)."""
        at = self.hall_time(now)
        top = self.highlighted(now)
        return {
            "hall_name": self.hall_name, "hall_time": at.isoformat() if at is not None else None,
            "calls": [{"number": c.number, "window": c.window, "display": c.display, "recalls": c.recalls,
                       "stage": self.stage_of(c), "highlight": c is top} for c in self.calls],
            "services": [{k: s.get(k) for k in ("code", "name", "waiting", "windows_open", "estimated_wait_s")}
                         for s in self.service_rows()],
            "windows": [{k: w.get(k) for k in ("window", "display", "status", "number", "stage")}
                        for w in self.window_rows()],
        }


# status of a window without a citizen -> the LED's second line
_IDLE: Final = {"open": "欢迎光临  Welcome", "paused": "暂停服务  Paused", "closed": "暂停办理  Closed"}

_HANDLERS: Final[dict[str, Callable[[DisplayModel, Message, float], bool]]] = {
    "board": DisplayModel._board,
    "window_update": DisplayModel._window_update,
    "queue_update": DisplayModel._queue_update,
}


def _window_order(view: Message) -> tuple[int, str, int]:
    """Windows in the order of their numbers: numerically when the display is a number."""
    display = str(view.get("display", ""))
    return (int(display), "", view["window"]) if display.isdigit() else (1 << 30, display, view["window"])

