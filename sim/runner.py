"""The virtual-time runner: a discrete-event loop that drives the real engine.

Nothing here decides who is called or where a ticket ranks: that is the engine's job.
The runner plays the *people* — citizens taking numbers, checking in, walking to windows,
giving up; clerks pressing next, recall, no-show, start, finish, transfer, pause — and
sends each action to :meth:`callsys.engine.QueueEngine.execute` as a command whose ``at``
is the virtual time, exactly what the server would send. No sleeping, no sockets.

The loop is a heap of ``(time, seq, kind, payload)``. Idle windows are kept per service
(:class:`~sim.idle.IdleWindows`), so a new ticket wakes a window that serves its service
instead of polling all 400. The invariant (tested): once every event of an instant is
handled, no idle window serves a service whose tickets wait.

**The day's calendar.** Sessions, breaks, each day's close-out and (with
``reset_day``) the midnight reset are planned up front. At one instant the day that ends
goes first — session end, close-out, reset — and only then does the next day's session
open (a hall open round the clock with a daily reset). A close-out comes at the day's last
session end plus overtime, but no later than the next session's start nor, with a daily
reset, midnight. From the close-out to the next opening the hall is *closed out*: nobody
waits in it; a ticket that becomes callable then (a citizen transferred by a clerk still
finishing in overtime) is sent home at once, like those sent home at the close-out.

**The reset cuts off what the clerks were doing.** ``ResetDay`` expires every open ticket
and closes every window, so a clerk's pending action (a service's finish, the call after
wrapping up, the end of a break) carries the number of resets it was planned under and
lapses if a reset came in between.

Outcomes the engine refuses on purpose (``HallClosed`` outside hours, ``SlotFull``,
``QueueEmpty`` for an idle window, ``DailyCapReached`` and ``PastClosing`` at the kiosk)
are counted, not errors; any other refusal is a bug and propagates.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import math
from typing import Any, Callable, Final

import numpy as np

from callsys import commands as cmd
from callsys import errors as err
from callsys.cockpit import build as build_cockpit
from callsys.engine import QueueEngine
from callsys.hall import Regulation
from callsys.regulator import AutoRegulator
from callsys.state import CALLED, CLOSED, PAUSED, WAITING

from . import metrics
from .tracker import Tracker
from .idle import IdleWindows
from .models import (Citizen, ServiceTimes, WindowPicker, break_times, clerk_rng, leaves_when_warned, longest_idle,
                     population, service_time_model)
from .scenario import Scenario

PROGRESS_EVERY: Final = 4096  # loop steps between progress callbacks
BOOK_AHEAD_S: Final = 86_400.0  # bookings are made a day before the first simulated day


class Kind(enum.IntEnum):
    """What a scheduled moment in the loop is about."""

    SESSION_START = 0
    SESSION_END = 1
    ARRIVE = 2  # walk-in reaches a kiosk / scans the QR code
    CHECK_IN = 3  # appointment holder arrives
    RELEASE = 4  # an early check-in's slot begins: the ticket becomes callable
    CALL = 5  # a clerk, done wrapping up, presses "next"
    REACH = 6  # the called citizen reaches the window
    RECALL = 7  # the called citizen has not come: recall, or no-show after the limit
    FINISH = 8  # service ends (finish or transfer)
    BREAK = 9
    RESUME = 10
    GIVE_UP = 11  # a waiting citizen's patience runs out
    CLOSE_OUT = 12  # the day's last session is over (with overtime): whoever waits goes home
    DAY_END = 13
    REGULATE = 14  # the simulated manager's automatic flow regulation looks at the hall


#: Order of the calendar's moments at one instant: the ending day closes before the next opens.
SAME_INSTANT: Final = {Kind.SESSION_END: 0, Kind.CLOSE_OUT: 1, Kind.DAY_END: 2, Kind.SESSION_START: 3, Kind.BREAK: 4}


class Simulation:
    """One run of a scenario on the real engine, in virtual time.

    Parts are passed in, so a test or the planner can swap any of them.

    Args:
        scenario: the loaded scenario (hall, demand, behaviour).
        seed: the run's seed (the scenario's by default); the crowd and each window's
            clerk draw from independent streams derived from it.
        engine: the engine to drive (a fresh ``QueueEngine(scenario.hall)`` by default).
        service_times: the service-time model (the scenario's by default).
        pick_window: policy choosing which idle window a new ticket wakes.
        tracker: the event recorder (a fresh :class:`~sim.tracker.Tracker` by default).
        progress: called now and then with the share of virtual time done (0..1).
        regulate: run flow regulation under this policy as a simulated manager (a fresh
            :class:`callsys.regulator.AutoRegulator` per run, see :func:`sim_regulation`):
            every ``every_s`` of open hours it looks at the cockpit and its commands go to
            the engine like every other action; None (default): windows keep their skills.
    """

    def __init__(self, scenario: Scenario, *, seed: int | None = None, engine: QueueEngine | None = None,
                 service_times: ServiceTimes | None = None, pick_window: WindowPicker = longest_idle,
                 tracker: Tracker | None = None, progress: Callable[[float], None] | None = None,
                 regulate: Regulation | None = None) -> None:
        self.scenario = scenario
        self.hall = scenario.hall
        self.seed = scenario.seed if seed is None else seed
        self.engine = engine or QueueEngine(self.hall)
        self.service_times = service_times or service_time_model(scenario)
        self.tracker = tracker or Tracker(self.hall, scenario.start + scenario.warmup_s, scenario.end)
        self.progress = progress
        self.regulator = None if regulate is None else AutoRegulator(self.hall, regulate)
        self.moves = 0  # the regulator's commands executed
        self.crowd_rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(1)[0])
        clerk = scenario.clerks
        self.recall_limit = self.hall.policy.recall_limit
        self.recall_s, self.wrapup_s = clerk.recall_interval_s, clerk.wrapup_s
        self.break_s, self.overtime_s = clerk.break_min * 60.0, clerk.overtime_min * 60.0
        self.door_wait_s = scenario.arrivals.door_wait_min * 60.0
        self.skills = {w.id: w.skills for w in self.hall.windows}
        self.staffed = staffed_windows(scenario)
        self.clerk_rngs = {w: clerk_rng(self.seed, w) for w in self.staffed}
        self.idle = IdleWindows(self.skills, pick_window)
        self.closing: dict[int, float] = {}  # window -> when its clerk stops (session end + overtime, capped)
        self.wants_break: set[int] = set()
        self.closed_out = False  # between a day's close-out and the next session start
        self.resets = 0  # ResetDay commands sent: a clerk action planned before one lapses
        self.citizens: list[Citizen] = []
        self.by_ticket: dict[int, Citizen] = {}
        self.sessions = sessions(scenario)
        self.heap: list[tuple[float, int, Kind, Any]] = []
        self.seq = 0
        self.commands = 0  # accepted engine commands
        self.now = scenario.start - BOOK_AHEAD_S
        self._handlers: dict[Kind, Callable[[float, Any], None]] = {
            Kind.SESSION_START: self._session_start, Kind.SESSION_END: self._session_end,
            Kind.ARRIVE: self._arrive, Kind.CHECK_IN: self._check_in, Kind.RELEASE: self._release,
            Kind.CALL: self._wrapped_up, Kind.REACH: self._reach, Kind.RECALL: self._recall,
            Kind.FINISH: self._finish, Kind.BREAK: self._break, Kind.RESUME: self._resume,
            Kind.GIVE_UP: self._give_up, Kind.CLOSE_OUT: self._close_out, Kind.DAY_END: self._day_end,
            Kind.REGULATE: self._regulate,
        }

    # ------------------------------------------------------------------ driving

    def run(self) -> dict[str, Any]:
        """Play the whole horizon; return the summary (see :func:`sim.metrics.summarise`)."""
        self.plan()
        heap, handlers, pop = self.heap, self._handlers, heapq.heappop
        span, start, steps = self.scenario.end - self.scenario.start, self.scenario.start, 0
        while heap:
            t, _, kind, payload = pop(heap)
            self.now = t
            handlers[kind](t, payload)
            steps += 1
            if self.progress is not None and steps % PROGRESS_EVERY == 0:
                self.progress(min(1.0, max(0.0, (t - start) / span)))
        return self.finish()

    def step(self) -> tuple[float, Kind] | None:
        """Handle the next scheduled moment (after :meth:`plan`); None when nothing is left."""
        if not self.heap:
            return None
        t, _, kind, payload = heapq.heappop(self.heap)
        self.now = t
        self._handlers[kind](t, payload)
        return t, kind

    def finish(self) -> dict[str, Any]:
        """Close the books and summarise (after the heap ran dry)."""
        self.tracker.finish(max(self.now, self.scenario.end))
        if self.progress is not None:
            self.progress(1.0)
        summary = metrics.summarise(self.scenario, self.tracker, seed=self.seed)
        if self.regulator is not None:
            policy = self.regulator.policy
            summary["regulation"] = {"scope": policy.scope, "every_s": policy.every_s,
                                     "max_moves_per_hour": policy.max_moves_per_hour,
                                     "min_stay_s": policy.min_stay_s, "commands": self.moves}
        return summary

    def push(self, at: float, kind: Kind, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, payload))

    def execute(self, command: cmd.Command) -> list:
        """Send *command* to the engine and record its events (refusals propagate)."""
        events = self.engine.execute(command)
        self.commands += 1
        self.tracker.observe(events)
        self.tracker.engine_queue(command.at, len(self.engine.state.book.where))
        return events

    # ------------------------------------------------------------------ the plan

    def plan(self) -> None:
        """Draw the crowd, book the appointments, schedule sessions, breaks and arrivals."""
        scenario = self.scenario
        for at, kind, payload in self.calendar():
            self.push(at, kind, payload)
        if self.regulator is not None:
            every = self.regulator.policy.every_s
            for start, end in self.sessions:
                for k in range(1, math.ceil((end - start) / every)):
                    self.push(start + k * every, Kind.REGULATE)
        for day in range(scenario.days):
            crowd = population(scenario, day, self.crowd_rng, self.service_times, len(self.citizens))
            self.citizens.extend(crowd)
        for citizen in self.citizens:
            if citizen.channel != "appointment":
                self.push(citizen.arrive, Kind.ARRIVE, citizen)
        self._book()

    def calendar(self) -> list[tuple[float, Kind, Any]]:
        """The hall's own moments, in the order they happen (see the module docstring).

        Returns:
            ``(time, kind, payload)`` for every session start and end (the end's payload is
            when its clerks stop: the end plus overtime, capped like the close-out), break,
            close-out and day end.
        """
        scenario, reset = self.scenario, self.scenario.clerks.reset_day
        out: list[tuple[float, Kind, Any]] = []
        for i, (start, end) in enumerate(self.sessions):
            day = self.hall.local_time(end - 1).date()
            following = self.sessions[i + 1][0] if i + 1 < len(self.sessions) else math.inf
            midnight = scenario.midnight((day - scenario.first_day).days + 1) if reset else math.inf
            stop = min(end + self.overtime_s, following, midnight)
            out += [(start, Kind.SESSION_START, (start, end)), (end, Kind.SESSION_END, stop)]
            out += [(at, Kind.BREAK, window) for window in self.staffed
                    for at in break_times(scenario, start, end, self.clerk_rngs[window])]
            if following == math.inf or self.hall.local_time(following).date() != day:
                out.append((stop, Kind.CLOSE_OUT, None))  # the day's last session
        out += [(scenario.midnight(day + 1), Kind.DAY_END, day) for day in range(scenario.days)]
        return sorted(out, key=lambda moment: (moment[0], SAME_INSTANT[moment[1]]))

    def _book(self) -> None:
        """Book every appointment a day ahead; refused bookers walk in or stay home."""
        at = self.scenario.start - BOOK_AHEAD_S
        walk_in = self.scenario.appointments.slot_full == "walk_in"
        for citizen in self.citizens:
            if citizen.channel != "appointment":
                continue
            try:
                events = self.execute(cmd.BookSlot(at, citizen.service, citizen.slot, citizen.green))
            except err.SlotFull:
                self.tracker.outcome("slot_full")
                if walk_in:
                    citizen.channel, citizen.slot = "kiosk", None
                    self.push(citizen.arrive, Kind.ARRIVE, citizen)
                continue
            citizen.ticket = events[0].ticket
            self.by_ticket[citizen.ticket] = citizen
            if citizen.shows:
                self.push(citizen.arrive, Kind.CHECK_IN, citizen)
            else:
                self.tracker.outcome("appointment_no_show")

    # ------------------------------------------------------------------ citizens

    def _door(self, t: float, kind: Kind, citizen: Citizen) -> None:
        """The hall is not issuing: wait at the door for the next session, or go home."""
        opening = next((s for s, _ in self.sessions if s > t), None)
        if opening is not None and opening - t <= self.door_wait_s:
            self.push(opening, kind, citizen)
        else:
            self.tracker.outcome("hall_closed")

    def _arrive(self, t: float, citizen: Citizen) -> None:
        try:
            events = self.execute(cmd.TakeNumber(t, citizen.service, citizen.channel, citizen.green))
        except err.HallClosed:
            self._door(t, Kind.ARRIVE, citizen)
            return
        except (err.DailyCapReached, err.PastClosing) as refused:  # told at the kiosk: goes home
            self.tracker.told_early(refused.code)
            return
        issued = events[0]
        if issued.closing_warning is not None and leaves_when_warned(self.scenario, self.seed, citizen):
            self.execute(cmd.Cancel(t, issued.ticket))
            self.tracker.told_early("warned", issued.ticket)
            return
        self._told(t, issued.ticket)
        self._queued(t, citizen, issued.ticket, t)

    def _check_in(self, t: float, citizen: Citizen) -> None:
        if citizen.ticket not in self.engine.state.tickets:  # the midnight reset expired the booking
            self._too_late(t, citizen)
            return
        try:
            events = self.execute(cmd.CheckIn(t, citizen.ticket))
        except err.HallClosed:
            self._door(t, Kind.CHECK_IN, citizen)
            return
        except err.CheckInRejected as exc:
            if "opens_at" in exc.details:  # too early: come back when check-in opens
                self.push(exc.details["opens_at"], Kind.CHECK_IN, citizen)
            else:  # too late under a "reject" rule
                self._too_late(t, citizen)
            return
        eligible = max(t, events[0].not_before)
        self._told(t, citizen.ticket)
        self._queued(t, citizen, citizen.ticket, eligible)

    def _too_late(self, t: float, citizen: Citizen) -> None:
        """Too late for the booked slot: take a number instead."""
        self.tracker.outcome("late_rejected")
        citizen.channel = "kiosk"
        self._arrive(t, citizen)

    def _told(self, t: float, ticket: int) -> None:
        """Record the wait the citizen is told at *t*: the take-number / check-in reply's."""
        self.tracker.estimated(ticket, t, self.engine.position(ticket, t).estimated_wait_s)

    def _queued(self, t: float, citizen: Citizen, ticket: int, eligible: float) -> None:
        citizen.ticket = ticket
        self.by_ticket[ticket] = citizen
        if eligible > t:
            self.push(eligible, Kind.RELEASE, citizen.service)
        else:
            self._wake(t, citizen.service)
        if citizen.patience_s < math.inf:
            self.push(eligible + citizen.patience_s, Kind.GIVE_UP, citizen)

    def _release(self, t: float, service: str) -> None:
        self.engine.state.advance(t)  # the engine queues held check-ins as time passes
        self.tracker.engine_queue(t, len(self.engine.state.book.where))
        self._wake(t, service)

    def _give_up(self, t: float, citizen: Citizen) -> None:
        ticket = self.engine.state.tickets.get(citizen.ticket)
        if ticket is None or ticket.status != WAITING or ticket.called_at is not None or ticket.transfers:
            return
        citizen.gone = True
        self.tracker.abandoned(citizen.ticket, citizen.silent, t)
        if not citizen.silent:
            self.execute(cmd.Cancel(t, citizen.ticket))

    # ------------------------------------------------------------------ windows

    def _wake(self, t: float, service: str) -> None:
        """Wake idle windows serving *service* while its tickets wait (after the day's
        close-out nobody waits: the tickets go home instead).

        One call may not take the ticket that caused the wake (the engine may rank another
        ticket of the window's services first), hence the loop; it ends because every call
        takes a ticket or leaves no idle window for the service.
        """
        if self.closed_out:
            self._send_home(t)
            return
        book = self.engine.state.book
        while book.waiting(service):
            window = self.idle.take(service)
            if window is None:
                return
            self._call(t, window)

    def _call(self, t: float, window: int) -> None:
        try:
            if not self.engine.state.book:  # nobody waits or is held: skip the doomed "next"
                raise err.QueueEmpty("nobody waits")
            events = self.execute(cmd.CallNext(t, window))
        except err.QueueEmpty:
            if window in self.closing:
                self.execute(cmd.CloseWindow(t, window))
            else:
                self.idle.add(window, t)
            return
        ticket = events[0].ticket
        citizen = self.by_ticket[ticket]
        walk = math.inf if citizen.gone else citizen.walk_s
        if walk == 0:
            self._start(t, window, citizen)
            return
        if walk <= (self.recall_limit + 1) * self.recall_s:
            self.push(t + walk, Kind.REACH, (window, ticket))
        if walk > self.recall_s:
            self.push(t + self.recall_s, Kind.RECALL, (window, ticket, 1))

    def _still_called(self, window: int, ticket: int) -> bool:
        state = self.engine.state
        return state.windows[window].current == ticket and state.tickets[ticket].status == CALLED

    def _reach(self, t: float, payload: tuple[int, int]) -> None:
        window, ticket = payload
        if self._still_called(window, ticket):
            self._start(t, window, self.by_ticket[ticket])

    def _start(self, t: float, window: int, citizen: Citizen) -> None:
        self.execute(cmd.StartService(t, window))
        self.push(t + citizen.service_s, Kind.FINISH, (window, self.resets))

    def _recall(self, t: float, payload: tuple[int, int, int]) -> None:
        window, ticket, k = payload
        if not self._still_called(window, ticket):
            return
        if k > self.recall_limit:
            self.execute(cmd.NoShow(t, window))
            self._free(t, window)
            return
        self.execute(cmd.Recall(t, window))
        citizen = self.by_ticket[ticket]
        if (math.inf if citizen.gone else citizen.walk_s) > (k + 1) * self.recall_s:
            called_at = self.engine.state.tickets[ticket].called_at
            self.push(called_at + (k + 1) * self.recall_s, Kind.RECALL, (window, ticket, k + 1))

    def _finish(self, t: float, payload: tuple[int, int]) -> None:
        window, resets = payload
        if resets != self.resets:  # the day was reset under the service (a hall open at midnight)
            return
        citizen = self.by_ticket[self.engine.state.windows[window].current]
        if citizen.transfer is not None:
            service, citizen.transfer = citizen.transfer, None
            citizen.service, citizen.service_s = service, citizen.transfer_s
            self.execute(cmd.Transfer(t, window, service=service))
            self._wake(t, service)
        else:
            self.execute(cmd.FinishService(t, window, rating=citizen.rating))
        self._free(t, window)

    def _free(self, t: float, window: int) -> None:
        """The window has nobody: wrap up, then take a break, close, or call the next."""
        if self.wrapup_s > 0:
            self.push(t + self.wrapup_s, Kind.CALL, (window, self.resets))
        else:
            self._next(t, window)

    def _wrapped_up(self, t: float, payload: tuple[int, int]) -> None:
        window, resets = payload
        if resets == self.resets:  # else the day's reset closed the window meanwhile
            self._next(t, window)

    def _next(self, t: float, window: int) -> None:
        if window in self.wants_break:
            self.wants_break.discard(window)
            self._pause(t, window)
        elif window in self.closing and t >= self.closing[window]:
            self.execute(cmd.CloseWindow(t, window))
        else:
            self._call(t, window)

    def _break(self, t: float, window: int) -> None:
        status = self.engine.state.windows[window].status
        if status in (CLOSED, PAUSED) or window in self.closing:
            return
        if window in self.idle:
            self.idle.discard(window)
            self._pause(t, window)
        else:
            self.wants_break.add(window)

    def _pause(self, t: float, window: int) -> None:
        self.execute(cmd.Pause(t, window))
        self.push(t + self.break_s, Kind.RESUME, (window, self.resets))

    def _resume(self, t: float, payload: tuple[int, int]) -> None:
        window, resets = payload
        if resets == self.resets and self.engine.state.windows[window].status == PAUSED:
            self.execute(cmd.Resume(t, window))
            self._next(t, window)

    def _regulate(self, t: float, _: None) -> None:
        """The simulated manager applies the automatic regulator's commands (reassignments;
        a window it opens is staffed only if the scenario staffs it, so the runner's
        regulator comes with ``open_windows`` off)."""
        if self.closed_out or self.regulator is None:
            return
        engine = self.engine
        cockpit = build_cockpit(self.hall, engine.state, lambda code, ahead: engine.estimate_at(code, ahead, t), t)
        for command in self.regulator.step(cockpit, engine.state, t):
            self.execute(command)
            self.moves += 1
            if isinstance(command, cmd.ReassignSkills):
                self.idle.reassign(command.window, command.skills)
                for code in command.skills:
                    self._wake(t, code)

    # ------------------------------------------------------------------ sessions and days

    def _session_start(self, t: float, span: tuple[float, float]) -> None:
        self.closed_out = False
        for window in self.staffed:
            self.closing.pop(window, None)
            if self.engine.state.windows[window].status == CLOSED:
                self.execute(cmd.OpenWindow(t, window, clerk=f"W{window}"))  # one simulated clerk per window
                self._call(t, window)

    def _session_end(self, t: float, stop: float) -> None:
        windows = self.engine.state.windows
        for window in self.staffed:
            self.closing[window] = stop
            self.wants_break.discard(window)
            status = windows[window].status
            if status == PAUSED or window in self.idle:
                self.idle.discard(window)
                self.execute(cmd.CloseWindow(t, window))

    def _close_out(self, t: float, _: None) -> None:
        self.closed_out = True
        self._send_home(t)

    def _send_home(self, t: float) -> None:
        """Everyone still waiting (or held for a later slot) goes home, counted as sent home."""
        state = self.engine.state
        left = [tk.id for tk in state.tickets.values() if tk.status == WAITING and tk.id in state.book]
        for ticket in left:
            self.execute(cmd.Cancel(t, ticket))
            self.tracker.sent_home(ticket)

    def _day_end(self, t: float, day: int) -> None:
        if self.scenario.clerks.reset_day:
            self.execute(cmd.ResetDay(t))  # expires every open ticket, closes every window
            self.resets += 1
            self.idle.clear()
            self.wants_break.clear()


# ---------------------------------------------------------------------- helpers


def sessions(scenario: Scenario) -> list[tuple[float, float]]:
    """The opening sessions of every simulated day as POSIX (start, end), touching ones merged.

    Sessions touching at midnight merge only without a daily reset: ``ResetDay`` closes
    every window at midnight, so with it each day's sessions are the day's own.
    """
    out: list[tuple[float, float]] = []
    for day in range(scenario.days):
        midnight = scenario.midnight(day)
        for i, (start, end) in enumerate(scenario.hall.hours.sessions(scenario.weekday(day))):
            span = (midnight + start * 60.0, midnight + end * 60.0)
            if out and out[-1][1] == span[0] and (i or not scenario.clerks.reset_day):
                out[-1] = (out[-1][0], span[1])
            else:
                out.append(span)
    return out


def staffed_windows(scenario: Scenario) -> list[int]:
    """The windows that open: a share per zone, spread evenly over the zone's windows."""
    clerks = scenario.clerks
    out: list[int] = []
    for zone in scenario.hall.zones:
        ids = sorted(w.id for w in scenario.hall.windows if w.zone == zone.id)
        k = round(clerks.staffing_by_zone.get(zone.id, clerks.staffing) * len(ids))
        out.extend(ids[(i * len(ids)) // k] for i in range(k))
    return sorted(out)


def sim_regulation(scenario: Scenario) -> Regulation:
    """The hall's ``[regulation]`` policy as the simulated manager applies it: reassignments
    only (``open_windows`` off — the scenario's unstaffed windows have no clerk to open them)."""
    return dataclasses.replace(scenario.hall.regulation, open_windows=False)


def simulate(scenario: Scenario, **parts: Any) -> dict[str, Any]:
    """Run *scenario* once and return its summary (keyword arguments go to :class:`Simulation`)."""
    return Simulation(scenario, **parts).run()
