"""The managers' cockpit: what the hall looks like right now, as one pure model.

:func:`build` reads the engine's state, the hall and the hall's one wait estimator and
returns a :class:`Cockpit`: no I/O, no clock (the caller passes *now*), no trio, so the
server (the ``cockpit`` message and ``cockpit_update`` push, :mod:`callsys.server.hub`),
the terminal dashboard and the lobby simulator all read the same figures.

What it holds, and the policy behind each figure:

* **Services** — tickets queued, the estimated wait of a new ticket (the estimator the
  kiosks quote, behind everyone queued) against the service's ``target_wait_min``, and the
  open windows serving it.
* **Windows** — one state each: ``closed``, ``paused``, ``idle`` (open, nobody at it),
  ``calling`` (a citizen called, walking there) or ``serving`` (with the seconds since the
  service started, or since the call when the clerk never pressed *start*).
* **Zones** — the crowd heatmap. A waiting citizen sits near the windows that will call
  them, so each service's queue is spread over the zones of the windows serving it, in
  proportion to how many of its *open* windows each zone has (all its windows when none is
  open); a ticket in a window's own queue (a transfer, a return) sits in that window's
  zone. The figures are fractional citizens; only their sum per service is a count.
* **Alerts**, each with a stable ``id`` a later suggestion can refer to:
  ``over_target:<code>`` — the estimated wait of a new ticket passes the service's target,
  or tickets wait and no open window serves them (``estimated_wait_s`` null);
  ``idle_window:<id>`` — an open window has nobody at it while one of its services has
  tickets waiting (a clerk between two citizens raises it for the moment before the next
  call, so screens may want to show it only once it lasts).
  ``bad_rating:<ticket>`` — the evaluator's verdict on a finished service was ``bad``
  (one per bad rating today, from :class:`callsys.ratings.Ratings`).
* **Ratings** — today's good/bad verdicts and 1-5 scores per window, as the server's
  :class:`callsys.ratings.Ratings` fold counts them (the manager's ``ratings`` query and
  the reports use the same fold).

:func:`layout` places the floors, zones and windows for drawing, in the hall file's units
(metres): a window's ``x``/``y`` and a zone's ``area`` come from the hall file; a floor
whose windows all sit on one point (the hall gave no positions) gets a default grid —
its zones side by side in rows, each zone's windows in rows of :data:`GRID_PER_ROW` —
and a zone without an ``area`` gets the box around its windows, :data:`ZONE_MARGIN` wider
on every side, kept inside the floor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Final, Mapping

from .hall import Hall
from .ratings import Ratings, WindowRatings
from .state import CLOSED, PAUSED, SERVING, HallState

IDLE: Final = "idle"
CALLING: Final = "calling"
WINDOW_STATES: Final = (CLOSED, PAUSED, IDLE, CALLING, SERVING)
OVER_TARGET: Final = "over_target"
IDLE_WINDOW: Final = "idle_window"
BAD_RATING: Final = "bad_rating"
GRID_PER_ROW: Final = 10  # windows per row in a default grid
GRID_SPACING: Final = (3.0, 4.0)  # metres between windows of a default grid (x, y)
ZONE_MARGIN: Final = 2.0  # metres around a zone's windows when the hall gives the zone no area

Estimate = Callable[[str, int], "float | None"]  # (service, tickets ahead) -> seconds, None: nobody serves it


# ---------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class ZoneBox:
    """Where a zone is drawn: its rectangle on its floor (metres)."""

    id: str
    floor: int
    x: float
    y: float
    width: float
    depth: float


@dataclass(frozen=True, slots=True)
class Layout:
    """Floors, zones and windows placed for drawing (hall units, metres).

    Attributes:
        floors: floor number -> (width, depth).
        zones: zone id -> its :class:`ZoneBox`.
        windows: window id -> (x, y) on its floor.
    """

    floors: Mapping[int, tuple[float, float]]
    zones: Mapping[str, ZoneBox]
    windows: Mapping[int, tuple[float, float]]

    def to_message(self, hall: Hall) -> dict[str, Any]:
        """The ``layout`` of the ``cockpit`` result (names from *hall*)."""
        zone_names = {z.id: z.name for z in hall.zones}
        return {
            "floors": [{"floor": f.number, "name": {"zh": f.name.zh, "en": f.name.en},
                        "width": self.floors[f.number][0], "depth": self.floors[f.number][1]}
                       for f in hall.floors],
            "zones": [{**asdict(box), "name": {"zh": zone_names[box.id].zh, "en": zone_names[box.id].en}}
                      for box in self.zones.values()],
            "windows": [{"window": w.id, "display": w.display, "zone": w.zone, "floor": w.floor,
                         "x": self.windows[w.id][0], "y": self.windows[w.id][1]} for w in hall.windows],
        }


def layout(hall: Hall) -> Layout:
    """Place *hall*'s floors, zones and windows (the policy is in the module docstring)."""
    floors = {f.number: (f.width, f.depth) for f in hall.floors}
    positions = {w.id: (w.x, w.y) for w in hall.windows}
    for number, (width, depth) in floors.items():
        on_floor = [w for w in hall.windows if w.floor == number]
        if len({(w.x, w.y) for w in on_floor}) <= 1 and len(on_floor) > 1:
            positions.update(_default_grid(hall, number, width, depth))
    zones: dict[str, ZoneBox] = {}
    for zone in hall.zones:
        width, depth = floors[zone.floor]
        if zone.area is not None:
            x, y, w, d = zone.area
            zones[zone.id] = ZoneBox(zone.id, zone.floor, x, y, w, d)
            continue
        points = [positions[w.id] for w in hall.windows if w.zone == zone.id]
        if not points:
            zones[zone.id] = ZoneBox(zone.id, zone.floor, 0.0, 0.0, min(width, 2 * ZONE_MARGIN),
                                     min(depth, 2 * ZONE_MARGIN))
            continue
        x0 = max(0.0, min(p[0] for p in points) - ZONE_MARGIN)
        y0 = max(0.0, min(p[1] for p in points) - ZONE_MARGIN)
        x1 = min(width, max(p[0] for p in points) + ZONE_MARGIN)
        y1 = min(depth, max(p[1] for p in points) + ZONE_MARGIN)
        zones[zone.id] = ZoneBox(zone.id, zone.floor, x0, y0, x1 - x0, y1 - y0)
    return Layout(floors, zones, positions)


def _default_grid(hall: Hall, floor: int, width: float, depth: float) -> dict[int, tuple[float, float]]:
    """Windows of *floor* on a grid: zones in cells side by side, each zone's windows in rows;
    scaled down to fit the floor when the grid is larger than it."""
    zones = [z.id for z in hall.zones if z.floor == floor]
    by_zone = {z: [w.id for w in hall.windows if w.zone == z] for z in zones}
    dx, dy = GRID_SPACING
    cells: dict[str, tuple[float, float]] = {}  # zone -> cell size
    for z, ids in by_zone.items():
        cols = min(len(ids), GRID_PER_ROW) or 1
        rows = math.ceil(len(ids) / GRID_PER_ROW) or 1
        cells[z] = (cols * dx + 2 * ZONE_MARGIN, rows * dy + 2 * ZONE_MARGIN)
    per_row = max(1, math.ceil(math.sqrt(len(zones))))
    out: dict[int, tuple[float, float]] = {}
    raw: dict[int, tuple[float, float]] = {}
    cx = cy = row_depth = 0.0
    for i, z in enumerate(zones):
        if i and not i % per_row:
            cx, cy, row_depth = 0.0, cy + row_depth, 0.0
        for n, wid in enumerate(by_zone[z]):
            r, c = divmod(n, GRID_PER_ROW)
            raw[wid] = (cx + ZONE_MARGIN + c * dx + dx / 2, cy + ZONE_MARGIN + r * dy + dy / 2)
        cx += cells[z][0]
        row_depth = max(row_depth, cells[z][1])
    extent_x = max((p[0] for p in raw.values()), default=0.0) + ZONE_MARGIN + dx / 2
    extent_y = max((p[1] for p in raw.values()), default=0.0) + ZONE_MARGIN + dy / 2
    scale = min(1.0, width / extent_x, depth / extent_y)
    for wid, (x, y) in raw.items():
        out[wid] = (x * scale, y * scale)
    return out


# ---------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class ServiceView:
    """One service: tickets queued, a new ticket's estimated wait (s, None: nobody serves it),
    its target (s) and the open windows serving it."""

    code: str
    waiting: int
    estimated_wait_s: float | None
    target_wait_s: float
    windows_open: int

    @property
    def over_target(self) -> bool:
        """The estimate passes the target, or tickets wait with nobody to serve them."""
        if self.estimated_wait_s is None:
            return self.waiting > 0
        return self.estimated_wait_s > self.target_wait_s


@dataclass(frozen=True, slots=True)
class WindowView:
    """One window: its state (one of :data:`WINDOW_STATES`), current skills and citizen."""

    id: int
    zone: str
    floor: int
    state: str  # one of WINDOW_STATES
    skills: tuple[str, ...]
    number: str | None = None  # the citizen at it (calling, serving)
    service: str | None = None
    since: float | None = None  # when the call or the service began (POSIX s)
    elapsed_s: float | None = None  # now - since


@dataclass(frozen=True, slots=True)
class ZoneView:
    """One zone of the heatmap: waiting citizens near it, its open and busy windows."""

    id: str
    floor: int
    waiting: float  # fractional citizens (see the module docstring)
    windows_open: int
    windows_busy: int


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a manager should act on; ``id`` stays the same while the condition lasts."""

    id: str  # "over_target:<code>" | "idle_window:<window>" | "bad_rating:<ticket>"
    kind: str  # OVER_TARGET | IDLE_WINDOW | BAD_RATING
    service: str | None = None
    window: int | None = None
    waiting: int = 0
    estimated_wait_s: float | None = None
    target_wait_s: float | None = None
    services: tuple[str, ...] = ()  # idle_window: its services that have tickets waiting
    ticket: int | None = None  # bad_rating: the ticket rated, its number, the score and when
    number: str | None = None
    score: int | None = None
    at: float | None = None
    clerk: str | None = None  # bad_rating: staff id of the clerk who served (None: not named)


@dataclass(frozen=True, slots=True)
class Cockpit:
    """The hall at one moment (see the module docstring for each figure)."""

    at: float
    services: tuple[ServiceView, ...]
    windows: tuple[WindowView, ...]
    zones: tuple[ZoneView, ...]
    alerts: tuple[Alert, ...]
    ratings: tuple[WindowRatings, ...]  # windows with a finished service today, by id

    def to_message(self) -> dict[str, Any]:
        """The cockpit as the ``cockpit_update`` push's fields (docs/protocol.md)."""
        return {
            "at": self.at,
            "services": [{"code": s.code, "waiting": s.waiting, "estimated_wait_s": s.estimated_wait_s,
                          "target_wait_s": s.target_wait_s, "windows_open": s.windows_open,
                          "over_target": s.over_target} for s in self.services],
            "windows": [{"window": w.id, "zone": w.zone, "floor": w.floor, "state": w.state,
                         "skills": list(w.skills), "number": w.number, "service": w.service,
                         "since": w.since, "elapsed_s": w.elapsed_s} for w in self.windows],
            "zones": [{"zone": z.id, "floor": z.floor, "waiting": round(z.waiting, 2),
                       "windows_open": z.windows_open, "windows_busy": z.windows_busy} for z in self.zones],
            "alerts": [{"id": a.id, "kind": a.kind, "service": a.service, "window": a.window,
                        "waiting": a.waiting, "estimated_wait_s": a.estimated_wait_s,
                        "target_wait_s": a.target_wait_s, "services": list(a.services), "ticket": a.ticket,
                        "number": a.number, "score": a.score, "at": a.at, "clerk": a.clerk} for a in self.alerts],
            "ratings": [r.to_dict() for r in self.ratings],
        }


def build(hall: Hall, state: HallState, estimate: Estimate, now: float, ratings: Ratings | None = None) -> Cockpit:
    """The cockpit of *state* at *now*.

    Args:
        hall: the hall the state belongs to.
        state: the engine's state (read only).
        estimate: the hall's estimator, ``(service, tickets ahead) -> seconds or None``
            (:meth:`callsys.engine.QueueEngine.estimate_at`).
        now: the time the elapsed seconds are counted to (POSIX s).
        ratings: today's ratings (the server's :class:`callsys.ratings.Ratings`); none when not given.
    """
    book, tickets = state.book, state.tickets
    services = []
    for s in hall.services:
        waiting = book.waiting(s.code)
        services.append(ServiceView(s.code, waiting, estimate(s.code, waiting), s.target_wait_s,
                                    state.servers[s.code]))
    windows = []
    for w in hall.windows:
        ws = state.windows[w.id]
        number = service = since = None
        if ws.status != "open":
            kind = ws.status  # closed | paused (a paused window may still finish its citizen)
        elif ws.current is None:
            kind = IDLE
        else:
            t = tickets[ws.current]
            kind = SERVING if t.status == SERVING else CALLING
        if ws.current is not None:
            t = tickets[ws.current]
            number, service = t.number, t.service
            since = t.started_at if t.status == SERVING and t.started_at is not None else t.called_at
        windows.append(WindowView(w.id, w.zone, w.floor, kind, ws.skills, number, service, since,
                                  None if since is None else max(0.0, now - since)))
    zones = _heat(hall, state, windows)
    alerts = [Alert(f"{OVER_TARGET}:{s.code}", OVER_TARGET, service=s.code, waiting=s.waiting,
                    estimated_wait_s=s.estimated_wait_s, target_wait_s=s.target_wait_s)
              for s in services if s.over_target]
    waiting_by = {s.code: s.waiting for s in services}
    for w in windows:
        if w.state == IDLE:
            starved = tuple(code for code in w.skills if waiting_by.get(code, 0) > 0)
            if starved or book.direct_head(w.id) is not None:
                alerts.append(Alert(f"{IDLE_WINDOW}:{w.id}", IDLE_WINDOW, window=w.id,
                                    waiting=sum(waiting_by[c] for c in starved), services=starved))
    if ratings is None:
        return Cockpit(now, tuple(services), tuple(windows), zones, tuple(alerts), ())
    for bad in ratings.alerts:
        alerts.append(Alert(f"{BAD_RATING}:{bad.ticket}", BAD_RATING, window=bad.window, ticket=bad.ticket,
                            number=bad.number, score=bad.score, at=bad.at, clerk=bad.clerk))
    return Cockpit(now, tuple(services), tuple(windows), zones, tuple(alerts),
                   tuple(ratings.windows[w] for w in sorted(ratings.windows)))


def _heat(hall: Hall, state: HallState, windows: list[WindowView]) -> tuple[ZoneView, ...]:
    """Waiting citizens per zone (the spreading rule is in the module docstring): one pass
    over the windows' skills counts each service's open (and all) windows, a second gives
    each window its share of its services' queues — plain dicts, ~1 ms for the 400-window hall."""
    book = state.book
    waiting = {s.code: n for s in hall.services if (n := book.waiting(s.code))}
    active = [w for w in windows if w.state not in (CLOSED, PAUSED)]
    opened: dict[str, int] = {}
    for w in active:
        for code in w.skills:
            if code in waiting:
                opened[code] = opened.get(code, 0) + 1
    unserved = {code for code in waiting if code not in opened}  # spread over every window that has it
    every: dict[str, int] = {}
    if unserved:
        for w in windows:
            for code in unserved.intersection(w.skills):
                every[code] = every.get(code, 0) + 1
    heat: dict[str, float] = {z.id: 0.0 for z in hall.zones}
    open_n: dict[str, int] = dict.fromkeys(heat, 0)
    busy_n: dict[str, int] = dict.fromkeys(heat, 0)
    for w in active:
        open_n[w.zone] += 1
        if w.state != IDLE:
            busy_n[w.zone] += 1
        share = 0.0
        for code in w.skills:
            if code in opened:
                share += waiting[code] / opened[code]
        heat[w.zone] += share
    if unserved:
        for w in windows:
            for code in unserved.intersection(w.skills):
                heat[w.zone] += waiting[code] / every[code]
    zone_of = {w.id: w.zone for w in windows}
    for wid, queue in book.direct.items():
        heat[zone_of[wid]] += len(queue)
    return tuple(ZoneView(z.id, z.floor, heat[z.id], open_n[z.id], busy_n[z.id]) for z in hall.zones)
