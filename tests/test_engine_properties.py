"""Properties of the engine under random command sequences (hypothesis).

Random scripts of citizen, clerk and manager commands run against two halls: the demo hall
(rank order, no interleave, no wait threshold, two strict windows) and the demo hall with
interleave [2, 1], the wait threshold and strict skill order everywhere. Commands are
stamped with increasing times inside Monday morning's session; many are rejected, which is
allowed as long as a rejection changes nothing. Tickets and bookings are taken by three
identified persons or anonymously; bookings are rescheduled and clerks flag waiting citizens
green. After every step the invariants below hold (no ticket lost or served twice, at most
one active ticket per person and service, no slot over capacity); after every script,
replay equals live. Two more halls add daily caps and the capacity-aware cutoff (warn,
refuse): the walk-in counts behind the caps stay those of the tickets and never pass a cap.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsys import commands as cmd
from callsys import events as ev
from callsys.engine import QueueEngine
from callsys.errors import EngineError, WindowClosed
from callsys.events import from_record, to_record
from callsys.hall import Hall, hall_from_mapping
from callsys.state import ACTIVE, CALLED, FINAL, SERVING, WAITING, HallState, apply

from conftest import CONFIG, hall_time, merged
from engine_support import Desk

SETTINGS = settings(max_examples=120, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

WEIGHTS = {
    "take": 8, "book": 2, "check_in": 2, "cancel": 1, "requeue": 2, "return": 2, "reassign": 1,
    "transfer_service": 1, "transfer_window": 1, "park": 2, "pause": 1, "resume": 1, "open": 3, "close": 1,
    "next": 8, "call_number": 1, "recall": 4, "no_show": 3, "start": 2, "finish": 5, "reset": 1,
    "reschedule": 1, "flag_green": 1,
}
PERSONS = (None, "p" * 32, "q" * 32, "r" * 32)
CLERKS = (None, "A1024", "工号-0007", "B2048", "x" * 33, " A1024", "", "a\tb")  # the last four are refused
KINDS = [kind for kind, weight in WEIGHTS.items() for _ in range(weight)]
OPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 63), st.integers(0, 63), st.integers(0, 90)),
    min_size=40, max_size=120,
)
AT_CITIZEN = {"recall", "no_show", "start", "finish", "park", "transfer_service", "transfer_window"}
CALLING = {"next", "call_number", "reset"}
# The windows a script works at (one of each kind in the demo hall: universal, strict
# BIZ/PERMIT, SOC/MED, CIVIL/SOC): few enough that commands meet the same window often.
WINDOWS = (1, 5, 7, 10)


def _demo_mapping() -> dict[str, Any]:
    return tomllib.loads((CONFIG / "demo.toml").read_text(encoding="utf-8"))


DEMO = hall_from_mapping(_demo_mapping(), source="demo.toml")
POLICY_HALL = hall_from_mapping(merged(_demo_mapping(), {
    "hall": {"id": "demo-policy"},
    "policy": {"interleave": [2, 1], "wait_threshold": True, "skill_order": "strict", "recall_limit": 1,
               "requeue": "keep"},
    "appointments": {"late_rule": "reject", "late_grace_min": 5},
}), source="demo-policy.toml")
# Honest issuing (callsys.hall.Issuing): small daily caps, and a cutoff whose margin puts the
# limit at 10:00, so a script meets refusals or warnings within its morning.
ISSUING = {"daily_cap": {"BIZ": 3, "SOC": 4, "MED": 0}, "cutoff_margin_min": 600}
WARN_HALL = hall_from_mapping(merged(_demo_mapping(), {"hall": {"id": "demo-warn"},
                                                       "issuing": {**ISSUING, "cutoff": "warn"}}),
                              source="demo-warn.toml")
REFUSE_HALL = hall_from_mapping(merged(_demo_mapping(), {"hall": {"id": "demo-refuse"},
                                                         "issuing": {**ISSUING, "cutoff": "refuse"}}),
                                source="demo-refuse.toml")


# ---------------------------------------------------------------------- the reference selector


def preferred(interleave: tuple[int, ...], cycle: int) -> str:
    """The class an interleave of n normal then p priority calls asks for at position *cycle*."""
    return "normal" if cycle < interleave[0] else "priority"


def reference_next(state: HallState, window_id: int, now: float, cycle: int) -> int | None:
    """Who *window_id* must call at *now*, from the tickets alone (O(n), no queue structures).

    *cycle* is the window's place in its interleave cycle, as the test tracks it.
    """
    window = state.windows[window_id]
    waiting = [t for t in state.tickets.values() if t.status == WAITING]
    own = [t for t in waiting if t.window == window_id]
    if own:
        return min(own, key=lambda t: (t.rank, t.id)).id
    eligible = [t for t in waiting if t.window is None and t.eligible_at <= now and t.service in window.skillset]
    if state.hall.policy.wait_threshold:
        overdue = []
        for code in window.skills:
            for klass in ("normal", "priority"):
                queue = [t for t in eligible if t.service == code and t.klass == klass]
                if queue:
                    head = min(queue, key=lambda t: (t.rank, t.id))
                    deadline = head.eligible_at + state.hall.services_by_code[code].target_wait_s
                    if deadline <= now:
                        overdue.append((deadline, head.id))
        if overdue:
            return min(overdue)[1]
    classes = [("normal", "priority")]
    if window.interleave:
        first = preferred(window.interleave, cycle)
        classes = [(first,), ("priority",) if first == "normal" else ("normal",)]
    for allowed in classes:
        pool = [t for t in eligible if t.klass in allowed]
        if window.skill_order == "strict":
            for code in window.skills:
                served = [t for t in pool if t.service == code]
                if served:
                    return min(served, key=lambda t: (t.rank, t.id)).id
        elif pool:
            return min(pool, key=lambda t: (t.rank, t.id)).id
    return None


# ---------------------------------------------------------------------- the script runner


class Script:
    """Runs random ops against one engine, checking the invariants after each step."""

    def __init__(self, hall: Hall) -> None:
        self.hall = hall
        self.engine = QueueEngine(hall)
        self.now = hall_time(9)
        self.events: list[ev.Event] = []
        self.gone: set[int] = set()           # tickets a day reset removed from the state
        self.finished: Counter[int] = Counter()
        self.services = [s.code for s in hall.services]
        self.windows = WINDOWS
        self.midway: tuple[int, dict[str, Any]] | None = None
        self.cycles: Counter[int] = Counter()  # window -> place in its interleave cycle

    # ------------------------------------------------------------ ops -> commands

    def pick(self, index: int, *statuses: str) -> int:
        """The *index*-th ticket (mod count) in one of *statuses*, or a ticket id that may not exist."""
        ids = sorted(t.id for t in self.engine.state.tickets.values() if t.status in statuses)
        return ids[index % len(ids)] if ids else index + 1

    def ref(self, tid: int, b: int) -> cmd.TicketRef:
        ticket = self.engine.state.tickets.get(tid)
        return ticket.number if b % 2 and ticket is not None and ticket.number else tid

    def window(self, kind: str, a: int) -> int:
        """A window for *kind*: mostly one where the command can succeed, sometimes any."""
        windows = self.engine.state.windows
        if a < 48 and kind in AT_CITIZEN:
            fit = [w for w in self.windows if windows[w].current is not None]
        elif a < 48 and kind in CALLING:
            fit = [w for w in self.windows if windows[w].status == "open" and windows[w].current is None]
        else:
            fit = []
        return (fit or self.windows)[a % len(fit or self.windows)]

    def command(self, kind: str, a: int, b: int) -> cmd.Command:
        at, window = self.now, self.window(kind, a)
        service = self.services[b % len(self.services)] if b != 63 else "NOPE"
        make = {
            "take": lambda: cmd.TakeNumber(at, service, "qr" if a % 3 == 0 else "kiosk", a % 5 == 0,
                                           person=PERSONS[b % 4]),
            "book": lambda: cmd.BookSlot(at, service, hall_time(9, 30 * (a % 7)), b % 4 == 0,
                                         person=PERSONS[a % 4]),
            "reschedule": lambda: cmd.Reschedule(at, self.ref(self.pick(a, "booked"), b), hall_time(9, 30 * (b % 7))),
            "flag_green": lambda: cmd.FlagGreen(at, window, self.ref(self.pick(b, WAITING), b)),
            "check_in": lambda: cmd.CheckIn(at, self.ref(self.pick(a, "booked"), b)),
            "cancel": lambda: cmd.Cancel(at, self.ref(self.pick(a, "booked", WAITING, CALLED), b)),
            "requeue": lambda: cmd.Requeue(at, self.ref(self.pick(a, "no_show"), b)),
            "return": lambda: cmd.ReturnTicket(at, self.ref(self.pick(a, "parked"), b)),
            "call_number": lambda: cmd.CallNumber(at, window, self.ref(self.pick(b, WAITING), b)),
            "reassign": lambda: cmd.ReassignSkills(at, window, self.skills(b)),
            "transfer_service": lambda: cmd.Transfer(at, window, service=service),
            "transfer_window": lambda: cmd.Transfer(at, window, to_window=self.windows[b % len(self.windows)]),
            "finish": lambda: cmd.FinishService(at, window, (None, "good", "bad")[b % 3], (b % 6) or None),
            "open": lambda: cmd.OpenWindow(at, window, clerk=CLERKS[b % len(CLERKS)]),
            "reset": lambda: cmd.ResetDay(at) if a < 8 else cmd.CallNext(at, window),  # keep resets rare
        }
        if kind in make:
            return make[kind]()
        simple = {"close": cmd.CloseWindow, "pause": cmd.Pause, "resume": cmd.Resume,
                  "next": cmd.CallNext, "recall": cmd.Recall, "no_show": cmd.NoShow, "start": cmd.StartService,
                  "park": cmd.Park}
        return simple[kind](at, window)

    def skills(self, bits: int) -> tuple[str, ...]:
        chosen = tuple(code for i, code in enumerate(self.services) if bits >> i & 1)
        return chosen or ("*",)

    # ------------------------------------------------------------ one step

    def step(self, kind: str, a: int, b: int, dt: int) -> None:
        self.now += dt
        command = self.command(kind, a, b)
        state = self.engine.state
        before = self.engine.snapshot()
        current = {w.current for w in state.windows.values()} - {None}
        expected = None
        if isinstance(command, cmd.CallNext):
            expected = reference_next(state, command.window, max(state.horizon, command.at),
                                      self.cycles[command.window])
        try:
            events = self.engine.execute(command)
        except EngineError as exc:
            assert self.engine.snapshot() == before, f"rejected {command} changed the state"
            if isinstance(command, cmd.CallNext) and exc.code == "queue_empty":
                assert expected is None, f"queue_empty but ticket {expected} was eligible"
            return
        for event in events:
            self.record(event, current)
        if isinstance(command, cmd.CallNext):
            assert events[0].ticket == expected, (command, expected, events)
        self.check()

    def record(self, event: ev.Event, current: set[int]) -> None:
        self.events.append(event)
        record = to_record(event)
        assert from_record(record) == event
        assert from_record(msgpack.unpackb(msgpack.packb(record))) == event
        if isinstance(event, ev.TicketCalled):
            assert event.ticket not in current, "called while current at a window"
            self.turn_cycle(event.window, self.engine.state.tickets[event.ticket].klass)
        elif isinstance(event, ev.ServiceFinished | ev.TicketNoShow | ev.TicketTransferred):
            window = event.window if not isinstance(event, ev.TicketTransferred) else event.from_window
            assert event.clerk == self.engine.state.windows[window].clerk, "service not named after its clerk"
        if isinstance(event, ev.ServiceFinished):
            self.finished[event.ticket] += 1
            assert self.finished[event.ticket] == 1, "served twice"
        elif isinstance(event, ev.DayReset):
            self.gone |= set(range(1, self.engine.state.next_id)) - set(self.engine.state.tickets)
            self.cycles.clear()

    def turn_cycle(self, window: int, klass: str) -> None:
        """Serving the preferred class moves the cycle on; a fallback call leaves it."""
        interleave = self.engine.state.windows[window].interleave
        if interleave and klass == preferred(interleave, self.cycles[window]):
            self.cycles[window] = (self.cycles[window] + 1) % sum(interleave)

    # ------------------------------------------------------------ invariants

    def check(self) -> None:
        state = self.engine.state
        book = state.book
        tickets = state.tickets
        assert set(tickets) | self.gone == set(range(1, state.next_id)), "a ticket was lost"
        assert not set(tickets) & self.gone
        queued = Counter(tid for queue in (*book.queues.values(), *book.direct.values()) for _, tid in queue)
        queued.update(tid for _, tid in book.pending)
        at_window = Counter(w.current for w in state.windows.values() if w.current is not None)
        for tid, ticket in tickets.items():
            places = (queued[tid], (tid in book.where) + (tid in book.held), at_window[tid])
            if ticket.status == WAITING:
                assert places == (1, 1, 0), (ticket, places)
            elif ticket.status in (CALLED, SERVING):
                assert places == (0, 0, 1) and state.windows[ticket.window].current == tid, (ticket, places)
            else:
                assert places == (0, 0, 0) and ticket.status in {"booked", "parked", "no_show"} | FINAL
        assert set(queued) <= set(tickets) and set(at_window) <= set(tickets)
        assert {w.id: w.cycle for w in state.windows.values()} == {w: self.cycles[w] for w in state.windows}
        for window, queue in book.direct.items():  # only a transfer can queue at a closed window
            assert state.windows[window].status != "closed" or all(tickets[t].transfers for _, t in queue)
        self.check_counts()
        self.check_fairness()
        self.check_caps()

    def check_caps(self) -> None:
        """The walk-in counts behind the caps count the walk-in tickets of their day (a transfer
        moves a ticket to another service, not its count) and never pass a cap."""
        state = self.engine.state
        calendar = state.calendar
        walk_ins = [t for t in state.tickets.values()
                    if t.channel != "appointment" and calendar.day(t.issued_at).ordinal == state.issued_day]
        assert sum(state.issued.values()) == len(walk_ins)
        for service, cap in self.hall.issuing.daily_cap.items():
            assert state.issued[service] <= cap

    def check_fairness(self) -> None:
        """One active ticket per person and service; no slot over capacity (a checked-in
        appointment keeps its place in the count, so bookings >= tickets still booked)."""
        tickets = self.engine.state.tickets.values()
        held = Counter((t.person, t.service) for t in tickets if t.person is not None and t.status in ACTIVE)
        assert all(n == 1 for n in held.values()), held
        booked = Counter((t.service, t.slot_start) for t in tickets if t.status == "booked")
        places = self.engine.state.bookings
        assert all(places[slot] >= n for slot, n in booked.items()), (booked, places)
        capacity = self.hall.appointments.capacity
        assert all(0 <= n <= capacity[service] for (service, _), n in places.items())
        assert all(t.green_reason in (None, "requested", "clerk") and (t.green_reason is None) != t.green
                   for t in tickets)

    def check_counts(self) -> None:
        state = self.engine.state
        stats = self.engine.statistics()
        waiting = [t for t in state.tickets.values() if t.status == WAITING]
        held = [t for t in waiting if t.eligible_at > state.horizon]
        in_service_queues = Counter(t.service for t in waiting if t.window is None and t.eligible_at <= state.horizon)
        assert (stats.waiting, stats.held) == (len(waiting) - len(held), len(held))
        assert stats.waiting_by_service == {code: in_service_queues[code] for code in self.services}
        direct = sum(1 for t in waiting if t.window is not None)
        assert sum(stats.waiting_by_service.values()) + direct == stats.waiting
        assert stats.windows_busy == sum(1 for t in state.tickets.values() if t.status in (CALLED, SERVING))
        assert stats.tickets == len(state.tickets)

    # ------------------------------------------------------------ replay

    def check_replay(self) -> None:
        live = self.engine.snapshot()
        replayed = HallState(self.hall)
        for event in self.events:
            apply(replayed, event)
        assert replayed.snapshot() == live
        if self.midway is not None:
            count, snapshot = self.midway
            stored = msgpack.unpackb(msgpack.packb(snapshot))
            restored = QueueEngine.restore(self.hall, stored, self.events[count:])
            assert restored.snapshot() == live
            assert restored.statistics() == self.engine.statistics()
            assert restored.state.numbers == self.engine.state.numbers
            assert +restored.state.servers == +self.engine.state.servers


def run_script(hall: Hall, ops: list[tuple[str, int, int, int]]) -> Script:
    script = Script(hall)
    for window in WINDOWS[:3]:
        script.step("open", WINDOWS.index(window), 0, 0)
    for i, op in enumerate(ops):
        script.step(*op)
        if i == len(ops) // 2:
            script.midway = (len(script.events), script.engine.snapshot())
    script.check_replay()
    return script


HALLS = {"demo": DEMO, "policy": POLICY_HALL, "warn": WARN_HALL, "refuse": REFUSE_HALL}


@pytest.mark.parametrize("hall", HALLS)
@SETTINGS
@given(ops=OPS)
def test_random_scripts_keep_the_invariants(hall, ops):
    run_script(HALLS[hall], ops)


# ---------------------------------------------------------------------- targeted scripts


def test_reference_agrees_on_a_busy_morning():
    """A long fixed script on both halls: many calls are checked against the reference."""
    kinds = ["take", "take", "next", "take", "open", "book", "check_in", "next", "finish", "transfer_window",
             "start", "next", "park", "return", "no_show", "recall", "requeue", "reassign", "call_number"]
    ops = [(kinds[i % len(kinds)], (i * 7) % 64, (i * 13) % 63, 20) for i in range(400)]
    for hall in (DEMO, POLICY_HALL):
        script = run_script(hall, ops)
        assert Counter(type(e).__name__ for e in script.events)["TicketCalled"] > 20


def test_a_rejected_command_leaves_a_held_ticket_held(demo_hall):
    """The horizon moves with a rejected command only while it is decided, then moves back."""
    desk = Desk(demo_hall, hall_time(9))
    desk.check_in(desk.book("BIZ", hall_time(9, 30)).id)     # early: held until 09:30
    desk.until(hall_time(9, 45))
    desk.rejects(WindowClosed, cmd.CallNext, window=1)        # would have released it
    assert desk.engine.statistics().held == 1
    assert desk.engine.state.horizon < hall_time(9, 30)
    replayed = HallState(demo_hall)
    for event in desk.events:
        apply(replayed, event)
    assert replayed.snapshot() == desk.engine.snapshot()
    desk.open(1)
    assert desk.engine.statistics().held == 0
    assert desk.call(1).number == "A001"
