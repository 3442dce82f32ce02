"""The fan-out hub: durable events in, pushes out to the subscribers that asked for them.

The call path, and why it is shaped so (``docs/performance.md`` has the measurements):

* **The clerk's ``ok`` never waits behind the fan-out.** The journal's commit task wakes
  the connections waiting for the commit, then calls :meth:`Hub.on_durable`, which only
  folds the events into the read models and builds each push message once — work that
  grows with the events, not with the subscribers — and queues ``(subscribers,
  message)`` deliveries. The hub's own task (:meth:`Hub.deliver`) writes them, yielding
  to the other tasks after every ``fanout_slice`` subscribers, so a clerk's reply goes
  out within one slice however many screens listen.
* **Encode once.** Each push is encoded and framed (the WebSocket frame bytes) at most
  once per format (msgpack, JSON); the same bytes go to every subscriber of that format.
  Consecutive deliveries to the same subscribers (a window's ``finished`` then
  ``called``, committed together) go out as one write per subscriber.
* **Cheap pushes.** A subscriber whose socket has room and nothing queued gets the bytes
  written straight from the hub's task (:meth:`Session.push`): no task of its own wakes
  up. Only a connection that is behind queues, and its writer task sends the queue.
* **Slow subscribers slow nobody.** Queuing never blocks: a subscriber whose send queue
  is full is closed as a slow consumer (close code 4008), so one slow display never
  holds up the engine, the clerks or the other displays.
* **Order.** One task delivers, in log order; a subscriber's pushes leave in that order
  and never interleave with its replies inside a frame. The subscribers of a delivery
  are taken when the event is folded: a display subscribing later gets the ``board``
  that already includes the event, not the push.
* **Shutdown.** The fan-out task stops with the server's services; what is still queued
  then, and whatever the last commits publish while the connections drain, is written
  at once (:meth:`Hub.deliver_now`), before the connections close with 1001.

Subscriptions are indexed by window: a display that follows a zone or a floor is entered
under each window of it, so routing an event costs one dict lookup.

**Service summaries** (``queue_update``) are coalesced, not pushed per event: a burst of
tickets would otherwise send every screen one push per ticket. A durable batch only marks
the summaries stale; :meth:`Hub.push_summaries` (a task of the server) then recomputes
every service's summary (a handful of counters), and pushes each display, manager and
clerk connection the summaries of *its* services (its windows' current skills) that
differ from the ones it last got — then sleeps ``queue_push_interval_s`` before the next
round, so a connection gets at most one ``queue_update`` per interval and the first one
after a quiet spell goes out at once. Connections with the same changed services get the
same message, encoded once.

**The cockpit** (``cockpit_update``, :mod:`callsys.cockpit`) goes to the managers that
asked for it with the ``cockpit`` message, in the same rounds as the summaries: a round
builds the cockpit once (when anyone follows it) and pushes it whole to every follower if
anything but the clock moved since the last one (the elapsed seconds of a service tick
without events: a page counts them on from ``since``). Building it for the 400-window hall
with 3,000 tickets waiting took 5-16 ms in one go (noisy, on the shared 2-core machine; not
sliced) — paid once per round, only while a manager follows. Its ratings are the server's
fold of the durable events (:mod:`callsys.ratings`). The flow-regulation suggestions ride
with it (:mod:`callsys.regulator`): for the 400-window hall at 11:00 of a simulated weekday
(31 services over target, 79 suggestions) they took ~9 ms more (shared machine, noisy).

**Phones** (``ticket_update``) get every event of their own ticket at once (called:
straight away, like the screens). Their place in line is refreshed every
``phone_refresh_s`` by a round that costs what moved, not what listens: events mark the
services whose queue moved, a round revisits only those — one ordered walk of a service's
queue gives every ticket's place — and pushes only the phones whose place or estimate
changed since their last push (several moves between two rounds: one push). The round
yields after every ``fanout_slice`` queue entries, like the fan-out (the unsliced walk of
10,000 phones blocked the loop 0.2-0.7 s).
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Protocol

import trio

from .. import cockpit
from ..regulator import Regulator, suggestions_message
from .. import events as ev
from ..engine import QueueEngine
from .._wsframe import message_frames
from ..hall import Hall
from ..queues import NORMAL, PRIORITY
from ..ratings import Ratings
from .projections import TICKET_STATUS, Board, Message, service_summaries, ticket_window

_ANNOUNCED = (ev.TicketCalled.kind, ev.TicketRecalled.kind)
# Events that add a ticket to a queue or take one out: the places behind it move. (Recalls,
# starts, finishes, no-shows and parking concern a ticket at a window: no queue moves.)
_QUEUE_MOVES = frozenset(e.kind for e in (ev.TicketIssued, ev.CheckedIn, ev.TicketCancelled, ev.TicketCalled,
                                          ev.TicketRequeued, ev.TicketTransferred, ev.TicketReturned,
                                          ev.GreenFlagged))


class Subscriber(Protocol):
    binary: bool
    windows: frozenset[int]  # the windows it follows
    services_seen: dict[str, Message]  # the service summaries it last got, by code (kept by the hub)

    def push(self, data: bytes) -> None:
        """Send *data* (WebSocket frame bytes) without blocking."""

    def encode(self, message: Message) -> bytes | str:
        """*message* as a payload of this subscriber's format."""


class Hub:
    """Routes the pushes of durable events to displays, speakers, managers, clerks and phones.

    Args:
        hall: the hall.
        engine: the live engine (read for phone positions, summaries and the cockpit).
        ratings: the server's fold of today's ratings, shown in the cockpit (None: none).
    """

    def __init__(self, hall: Hall, engine: QueueEngine, ratings: Ratings | None = None) -> None:
        self.hall = hall
        self.engine = engine
        self.board = Board(hall, engine)
        self.displays: dict[int, set[Subscriber]] = {wid: set() for wid in hall.windows_by_id}
        self.speakers: dict[int, set[Subscriber]] = {wid: set() for wid in hall.windows_by_id}
        self.phones: dict[int, set[Subscriber]] = {}
        self._phone_last: dict[int, tuple[Any, ...]] = {}  # ticket -> (status, ahead, estimate) last pushed
        self._moved: set[str] = set()  # services whose queue moved since the last phone round
        self._moved_all = False  # a window closed or the day was reset: every service moved
        # open windows per service as of the last phone round (the estimates rest on them)
        self._servers_seen = {code: engine.state.servers[code] for code in hall.services_by_code}
        self._held_seen: set[int] = set(engine.state.book.held)  # early check-ins held, last round
        self.phone_positions = 0  # phone places computed so far (on hello, on events, in rounds)
        self.pushes = 0  # push messages handed to subscribers so far (a message to N subscribers: N)
        self._deliveries: deque[tuple[tuple[Subscriber, ...], Message]] = deque()
        self._delivery_due = trio.Event()  # set when deliveries are queued
        self._writing: Iterator[None] | None = None  # the deliver task's writing, paused between slices
        self._inline = False  # True once the server stops: deliveries are written as published
        self.summaries: dict[str, Message] = service_summaries(engine)  # as of the last round
        self._summaries_stale = trio.Event()  # set by a durable batch, cleared by a round
        self._recheck: set[Subscriber] = set()  # their services changed (skills reassigned)
        self.cockpits: set[Subscriber] = set()  # managers following the cockpit
        self.ratings = ratings
        self.layout = cockpit.layout(hall)
        self.regulator = Regulator(hall)  # the flow-regulation suggestions under each over_target alert
        self._cockpit_last: Any = None  # the last cockpit_update pushed, without its clock fields

    # ------------------------------------------------------------------ subscriptions

    def watch(self, sub: Subscriber, windows: Iterable[int], *, speaker: bool = False) -> None:
        index = self.speakers if speaker else self.displays
        for wid in windows:
            index[wid].add(sub)

    def unwatch(self, sub: Subscriber, windows: Iterable[int], *, speaker: bool = False) -> None:
        index = self.speakers if speaker else self.displays
        for wid in windows:
            index[wid].discard(sub)

    def watch_ticket(self, sub: Subscriber, ticket: int) -> None:
        self.phones.setdefault(ticket, set()).add(sub)

    def unwatch_ticket(self, sub: Subscriber, ticket: int) -> None:
        subs = self.phones.get(ticket)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.phones[ticket]
                self._phone_last.pop(ticket, None)

    def board_of(self, windows: Iterable[int]) -> list[Message]:
        """The current view of *windows* (the ``board`` a display gets when it subscribes)."""
        return [self.board.windows[w].to_message() for w in sorted(windows)]

    def services_of(self, sub: Subscriber) -> list[Message]:
        """The current summaries of the services *sub*'s windows serve, sorted by code; from
        now on *sub* gets ``queue_update`` pushes relative to them."""
        fresh = service_summaries(self.engine)
        codes = sorted(self._codes(sub.windows, self.engine.state.windows))
        sub.services_seen = {code: fresh[code] for code in codes}
        if any(fresh[code] != self.summaries[code] for code in codes):
            self._recheck.add(sub)  # the next round compares it against what it got here
        return list(sub.services_seen.values())

    @staticmethod
    def _codes(windows: Iterable[int], state_windows: dict[int, Any]) -> set[str]:
        codes: set[str] = set()
        for wid in windows:
            codes.update(state_windows[wid].skills)
        return codes

    def cockpit(self, now: float) -> cockpit.Cockpit:
        """The cockpit of the live engine at *now* (with the server's ratings)."""
        engine = self.engine
        return cockpit.build(self.hall, engine.state, engine.estimate_at, now, self.ratings)

    def cockpit_message(self, now: float) -> dict[str, Any]:
        """The cockpit at *now* as message fields, with the regulator's ``suggestions`` (by
        alert id) and ``homecomings`` (windows that may go back to their configured skills)."""
        view = self.cockpit(now)
        state = self.engine.state
        suggestions = self.regulator.suggest(view, state, now)
        return {**view.to_message(), "suggestions": suggestions_message(suggestions),
                "homecomings": [s.to_message() for s in self.regulator.homecomings(view, state, now)]}

    def follow_cockpit(self, sub: Subscriber, follow: bool) -> None:
        """Start (or stop) pushing *sub* ``cockpit_update``."""
        if follow:
            self.cockpits.add(sub)
        else:
            self.cockpits.discard(sub)

    def push_cockpit(self, at: float) -> None:
        """Push the cockpit to its followers if more than the clock moved since the last push."""
        if not self.cockpits:
            self._cockpit_last = None
            return
        message = {"type": "cockpit_update", **self.cockpit_message(at)}
        key = (message["services"], [(w["window"], w["state"], w["number"], w["since"], w["skills"])
                                     for w in message["windows"]],
               message["zones"], message["alerts"], message["ratings"], message["suggestions"], message["homecomings"])
        if key != self._cockpit_last:
            self._cockpit_last = key
            self.publish(self.cockpits, message)

    # ------------------------------------------------------------------ fan-out

    def on_durable(self, batch: list[tuple[int, ev.Event]]) -> None:
        """The journal's hook: fold and push each durable event, in log order."""
        board = self.board
        for seq, event in batch:
            for wid in board.apply(event):
                subs = self.displays[wid]
                if subs:
                    self.publish(subs, board.update(wid, event, seq))
            if event.kind in _ANNOUNCED:
                subs = self.speakers[event.window]
                message = board.announce(event, seq) if subs else None
                if message is not None:  # None: a silent zone
                    self.publish(subs, message)
            if self.phones:
                self._ticket_event(seq, event)  # pushes the ticket's phones; marks its service as moved
            if type(event) is ev.SkillsReassigned:
                self._recheck.update(self.displays[event.window])
        self._summaries_stale.set()

    def publish(self, subs: Iterable[Subscriber], message: Message) -> None:
        """Queue *message* for delivery to *subs* (as they are now), after what is queued already."""
        targets = tuple(subs)
        if targets:
            self._deliveries.append((targets, message))
            if self._inline:
                self.deliver_now()
            else:
                self._delivery_due.set()

    async def deliver(self, slice_size: int) -> None:
        """The fan-out task: write the queued deliveries in order, each message encoded and
        framed once per format; yield to the other tasks after every *slice_size* pushes."""
        while True:
            await self._delivery_due.wait()
            self._delivery_due = trio.Event()
            self._writing = self._write_deliveries(slice_size)
            for _ in self._writing:
                await trio.lowlevel.checkpoint()

    def deliver_now(self) -> None:
        """Write every queued delivery at once, and from now on each as it is published: the
        server is shutting down and :meth:`deliver` no longer runs, but the commands it still
        commits push their events before the connections close."""
        self._inline = True
        if self._writing is not None:  # finish the delivery the task was in the middle of
            for _ in self._writing:
                pass
        for _ in self._write_deliveries(0):
            pass

    def _write_deliveries(self, slice_size: int) -> Iterator[None]:
        """Write the queued deliveries; yield after every *slice_size* pushes (0: never)."""
        deliveries = self._deliveries
        budget = slice_size
        while deliveries:
            targets, message = deliveries.popleft()
            messages = [message]
            while deliveries and deliveries[0][0] == targets:  # e.g. "finished" then "called": one write each
                messages.append(deliveries.popleft()[1])
            frames: list[bytes | None] = [None, None]
            for sub in targets:
                fmt = sub.binary
                data = frames[fmt]
                if data is None:
                    encode = sub.encode
                    data = frames[fmt] = message_frames([encode(m) for m in messages])
                sub.push(data)
                budget -= 1
                if not budget:
                    budget = slice_size
                    yield
            self.pushes += len(targets) * len(messages)

    # ------------------------------------------------------------------ service summaries

    async def push_summaries(self, interval: float, now: Callable[[], float], slice_size: int) -> None:
        """Run the ``queue_update`` rounds for ever: one as soon as a durable batch made the
        summaries stale, then none for *interval* seconds (see the module docstring).
        *now* stamps the pushes (``at``, the server clock)."""
        while True:
            await self._summaries_stale.wait()
            self._summaries_stale = trio.Event()
            at = now()
            await self.push_summary_round(at, slice_size)
            self.push_cockpit(at)
            await trio.sleep(interval)

    async def push_summary_round(self, at: float, slice_size: int) -> None:
        """Push every display/manager/clerk connection the summaries of its services that
        changed since it last got them; yield to the other tasks after every *slice_size*
        connections (a round over the flagship's ~600 screens took up to 17 ms in one go)."""
        fresh = service_summaries(self.engine)
        changed = {code for code, summary in fresh.items() if summary != self.summaries[code]}
        self.summaries = fresh
        audience, self._recheck = self._recheck, set()
        if not changed and not audience:
            return
        state_windows = self.engine.state.windows
        if changed:
            for wid, window in state_windows.items():
                subs = self.displays[wid]
                if subs and not changed.isdisjoint(window.skills):
                    audience.update(subs)
        groups: dict[tuple[str, ...], list[Subscriber]] = {}
        served: dict[frozenset[int], list[str]] = {}  # the displays of a zone share one set of windows
        for i, sub in enumerate(audience, 1):
            if not i % slice_size:
                await trio.lowlevel.checkpoint()
            windows = sub.windows
            if not windows:
                continue  # unsubscribed meanwhile
            codes_of = served.get(windows)
            if codes_of is None:
                codes_of = served[windows] = sorted(self._codes(windows, state_windows))
            seen = sub.services_seen
            codes = tuple(code for code in codes_of if seen.get(code) != fresh[code])
            if codes:
                for code in codes:
                    seen[code] = fresh[code]
                groups.setdefault(codes, []).append(sub)
        for codes, subs in groups.items():
            self.publish(subs, {"type": "queue_update", "services": [fresh[code] for code in codes], "at": at})

    # ------------------------------------------------------------------ phones

    def _ticket_event(self, seq: int, event: ev.Event) -> None:
        if isinstance(event, ev.DayReset):
            self._moved_all = True
            for tid in event.expired:
                if tid in self.phones:
                    self.push_ticket(tid, "expired", None, "day_reset", event.at, seq)
            return
        if type(event) is ev.WindowClosed:  # its own queue went back to the service queues
            self._moved_all = True
        tid = getattr(event, "ticket", None)
        if tid is None:
            return  # other window events change the estimates only: see phone_round
        if event.kind in _QUEUE_MOVES:
            code = getattr(event, "service", None)
            if code is not None:
                self._moved.add(code)
            ticket = self.engine.state.tickets.get(tid)
            if ticket is not None:
                self._moved.add(ticket.service)  # the live state may be ahead of the event: mark both
        status = TICKET_STATUS.get(event.kind)
        if status is not None and tid in self.phones:
            self.push_ticket(tid, status, ticket_window(event), event.kind, event.at, seq)

    def ticket_message(self, tid: int, status: str, window: int | None, event: str, at: float,
                       seq: int | None, place: tuple[int, float | None] | None = None) -> Message:
        """The ``ticket_update`` push for a phone following ticket *tid*; *place* is its
        (ahead, estimated wait) if already known (asked from the engine otherwise)."""
        ahead = wait = number = None
        ticket = self.engine.state.tickets.get(tid)
        if ticket is not None:
            number = ticket.number
            if status == "waiting":
                if place is None:
                    self.phone_positions += 1
                    position = self.engine.position(tid)
                    place = position.ahead, position.estimated_wait_s
                ahead, wait = place
        view = self.board.windows.get(window) if window is not None else None
        return {"type": "ticket_update", "ticket": tid, "number": number, "status": status, "window": window,
                "display": view.display if view else None, "ahead": ahead, "estimated_wait_s": wait,
                "event": event, "at": at, "seq": seq}

    def push_ticket(self, tid: int, status: str, window: int | None, event: str, at: float,
                    seq: int | None, place: tuple[int, float | None] | None = None) -> None:
        message = self.ticket_message(tid, status, window, event, at, seq, place)
        self._phone_last[tid] = (status, message["ahead"], message["estimated_wait_s"])
        self.publish(self.phones[tid], message)

    async def refresh_phones(self, now: float, slice_size: int) -> None:
        """One refresh round: push a new place to the phones whose waiting ticket moved (see
        :meth:`phone_round`), yielding to the other tasks after every *slice_size* steps."""
        for _ in self.phone_round(now, slice_size):
            await trio.lowlevel.checkpoint()

    def phone_round(self, now: float, slice_size: int) -> Iterator[None]:
        """The refresh round as steps: yields after every *slice_size* queue entries walked.

        Only the services whose queue moved since the last round are revisited: those
        marked by an event of one of their tickets (a ticket issued, checked in, called,
        cancelled, requeued, transferred, returned), those whose open windows changed (the
        estimate rests on them), those whose held early check-ins were queued meanwhile, and all
        after a window closed or the day was reset. One ordered walk over a service's two
        queues gives every ticket's place (its index: what :meth:`QueueEngine.position`
        counts with two bisections per ticket); a phone is pushed only if its place or
        estimate differs from its last push. The few tickets waiting in a window's own
        queue (transfers, returns) and held early check-ins are looked up one by one.

        The walk reads a copy of each queue, so the engine may move on while the round
        yields: a place computed before a move is corrected by the next round (the move
        marked its service again), and a ticket called meanwhile gets no ``position`` push
        (its phone already had ``ticket_called``). :attr:`phone_positions` counts the
        places computed: at most *slice_size* per step.

        Args:
            now: the server clock's time, stamped on the pushes (``at``).
            slice_size: queue entries (with or without a phone) walked per step.

        Yields:
            None after every *slice_size* entries: the caller lets other tasks run.
        """
        state = self.engine.state
        book = state.book
        moved, self._moved = self._moved, set()
        if self._moved_all:
            self._moved_all = False
            moved.update(self.hall.services_by_code)
        servers = state.servers
        seen = self._servers_seen
        for code in self.hall.services_by_code:
            if servers[code] != seen.get(code):
                seen[code] = servers[code]
                moved.add(code)
        held = set(book.held)
        for tid in self._held_seen - held:  # queued since the last round (their slot began)
            ticket = state.tickets.get(tid)
            if ticket is not None:
                moved.add(ticket.service)
        self._held_seen = held
        phones = self.phones
        if not phones:
            return
        budget = slice_size
        estimate_at = self.engine.estimate_at
        for code in sorted(moved):
            normal, priority = book.queues[(code, NORMAL)], book.queues[(code, PRIORITY)]
            entries = heapq.merge(list(normal), list(priority)) if priority else list(normal)  # a snapshot
            for ahead, (_, tid) in enumerate(entries):
                if tid in phones:
                    self._refresh_phone(tid, ahead, estimate_at(code, ahead), now)
                budget -= 1
                if not budget:
                    budget = slice_size
                    yield
        singles = [tid for tid in held if tid in phones and state.tickets[tid].service in moved]
        for queue in book.direct.values():  # a window's own queue: a handful of tickets
            singles.extend(tid for _, tid in queue if tid in phones)
        for tid in singles:
            if tid in phones and tid in book:
                position = self.engine.position(tid)
                self._refresh_phone(tid, position.ahead, position.estimated_wait_s, now)
            budget -= 1
            if not budget:
                budget = slice_size
                yield

    def _refresh_phone(self, tid: int, ahead: int, estimate: float | None, now: float) -> None:
        """Push *tid*'s phones its place if it differs from their last push (and it still waits)."""
        self.phone_positions += 1
        last = self._phone_last.get(tid)
        if last is None or last[0] != "waiting" or (ahead, estimate) == last[1:]:
            return
        ticket = self.engine.state.tickets.get(tid)
        if ticket is not None and ticket.status == "waiting":
            self.push_ticket(tid, "waiting", None, "position", now, None, (ahead, estimate))
