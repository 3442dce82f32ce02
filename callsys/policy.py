"""Queue policy: who a window calls next, and where a ticket ranks.

This is where the hall's calling rules live (see ``[policy]`` in a hall file):

* **Rank**: a ticket's place in line is a time. Kiosk/QR tickets rank at their issue time;
  an appointment at the later of its slot start and its check-in, minus the appointment
  credit; a green-channel ticket (elderly, disabled, pregnant) minus the green credit.
  Older ranks win, so waiting long always helps (aging is built in).
* **Window's own queue first**: a citizen transferred or returned to *this* window.
* **Wait threshold** (``wait_threshold``): a service whose head has waited past its
  ``target_wait_min`` is called first, the longest overdue first.
* **Interleave** (``interleave = [n, p]``): n normal calls then p priority calls per cycle,
  each class falling back to the other when empty, so neither class starves.
* **Skill order** (``skill_order``): ``"rank"`` takes the best rank over all skills;
  ``"strict"`` serves skills in listed order (primary service first).

Fairness rules for people who give their resident id (see :mod:`callsys.identity`):

* **Green channel**: people aged 60 or over (``"senior"``, decided by the server from the
  birth date), people a clerk flags while they wait (``"clerk"``) and green tickets asked
  for at the kiosk (``"requested"``) get the green credit; the ticket records the reason.
* **No hoarding**: one active ticket or booking per person per service.
* **No-shows** (``[appointments]`` ``no_show_limit``, ``no_show_window_days``,
  ``no_show_block_days``): an appointment booked and never checked in, or checked in and then
  marked no-show by a clerk, counts against its person on the slot's day (counted when the
  day is reset). ``no_show_limit`` of them within ``no_show_window_days`` days block new
  bookings for ``no_show_block_days`` days from the last of them; the refusal gives the
  reason and the end date. Taking a number on site is never blocked.

What the kiosk hands out at all is the hall's ``[issuing]`` policy
(:class:`callsys.hall.Issuing`, decided in :func:`callsys.engine.decide` on ``take_number``):
daily caps per service (限号: walk-in numbers plus today's appointments, refused
``daily_cap_reached``) and the capacity-aware cutoff (a new ticket whose call the wait
estimate puts past closing is refused ``past_closing`` or issued with a closing warning).
"""

from __future__ import annotations

from typing import Final, Protocol

from .queues import CLASSES, QueueBook

# A window serving more services than this finds its best head by walking the global
# heads index instead of looking at each of its services in turn.
SCAN_ABOVE: Final = 8


class WindowView(Protocol):
    id: int
    skills: tuple[str, ...]
    skillset: frozenset[str]
    skill_order: str
    interleave: tuple[int, ...]
    cycle: int


GREEN_REASONS: Final = ("senior", "requested", "clerk")
"""Why a ticket has the green credit; ``"clerk"`` only through the clerk's flag."""


def booking_block(no_shows: list[int], today: int, *, limit: int, window_days: int,
                  block_days: int) -> tuple[int, int] | None:
    """Whether a person with appointment no-shows on days *no_shows* may book on day *today*.

    Days are proleptic Gregorian ordinals of the hall's local dates, oldest first.

    Returns:
        None when booking is allowed; else ``(last blocked day + 1, no-shows counted)``: the
        first day booking is allowed again and the no-shows within the window that caused it.
    """
    if limit <= 0 or len(no_shows) < limit:
        return None
    for last in range(len(no_shows) - 1, limit - 2, -1):  # the most recent trigger decides
        day = no_shows[last]
        if day + block_days <= today:
            return None  # older triggers end even earlier
        counted = sum(1 for d in no_shows[: last + 1] if d > day - window_days)
        if counted >= limit:
            return day + block_days, counted
    return None


def rank_of(at: float, *, green: bool, credit: float, green_credit: float) -> float:
    """The rank time of a ticket that becomes eligible at *at* with an optional *credit*."""
    return at - credit - (green_credit if green else 0.0)


def preferred_class(window: WindowView) -> str:
    """The class this window's interleave cycle asks for now."""
    normal, _ = window.interleave
    return "normal" if window.cycle < normal else "priority"


def next_cycle(window: WindowView, called_class: str) -> int:
    """The cycle position after calling a ticket of *called_class*.

    The cycle moves only when the preferred class was served; a fallback call (preferred
    class empty) leaves it, so the starved class is first in line the moment it appears.
    """
    if not window.interleave or called_class != preferred_class(window):
        return window.cycle
    return (window.cycle + 1) % sum(window.interleave)


def select(book: QueueBook, window: WindowView, now: float, *, wait_threshold: bool) -> int | None:
    """The ticket *window* should call at *now*, or None when nobody eligible waits."""
    own = book.direct_head(window.id)
    if own is not None:
        return own[1]
    if wait_threshold:
        late = book.overdue(window.skillset, now)
        if late is not None:
            return late
    if window.interleave:
        first = preferred_class(window)
        for klass in (first, "priority" if first == "normal" else "normal"):
            hit = _best(book, window, (klass,))
            if hit is not None:
                return hit[1]
        return None
    hit = _best(book, window, CLASSES)
    return None if hit is None else hit[1]


def _best(book: QueueBook, window: WindowView, classes: tuple[str, ...]) -> tuple[float, int] | None:
    best = None
    if window.skill_order == "strict":
        for code in window.skills:
            for klass in classes:
                entry = book.head(code, klass)
                if entry is not None and (best is None or entry < best):
                    best = entry
            if best is not None:
                return best
        return None
    scan = len(window.skills) > SCAN_ABOVE
    for klass in classes:
        entry = book.best_head(window.skills, window.skillset, klass, scan)
        if entry is not None and (best is None or entry < best):
            best = entry
    return best
