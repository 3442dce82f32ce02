"""Live load mode: play a scenario against a running server with real WebSocket clients.

``callsys sim live qingdao-peak-monday --url ws://127.0.0.1:8700/ws --speed 60`` connects
every device of the building through :mod:`callsys.client` — kiosks taking numbers and
booking slots, one clerk per staffed window, an LED display per window, a TV and a speaker
per zone, phones following a share of the tickets — and plays the scenario's citizens and
clerks (the same models as the virtual-time runner) at the server's accelerated clock.
Kiosks, clerks and displays are :class:`~callsys.client.Device` s: they reconnect by
themselves and retry with idempotency keys, so a broken connection (or a server killed
and restarted mid-run) never hands out a number twice.

Time: the server stamps every command with its own clock; ``welcome`` and ``ping`` report
``server_time`` and ``clock_speed``. The player aligns its virtual time to that, moves the
scenario to the server's local date, and plays from the server's *now* (citizens who
would have come earlier are skipped) until the day ends, ``duration_s`` real seconds pass,
or ``max_citizens`` have been drawn.

Measured: command -> acknowledgement latency per message type; call -> LED, TV, speaker
and phone latency (from the clerk sending ``call_next`` to the push arriving); refusals
by code (``hall_closed``, ``queue_empty``... are outcomes, not errors); errors (lost
connections, unexpected codes); dropped pushes (calls acknowledged but never shown).
At the end, with nothing in flight, the server's totals are compared with what the clients
counted, and a sample of tickets one by one — no ticket lost, none served twice.

The player is a load generator: it runs in one trio process next to the server on the
same machine, so its own CPU use is part of what the latencies show.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, time as clock_time
from typing import Any, Awaitable, Callable, Final

import numpy as np
import trio

from callsys.client import Client, ClientError, ConnectionLost, Device, RequestFailed, connect, connect_device
from callsys.errors import CallsysError
from callsys.regulator import OPEN, Limits

from .idle import IdleWindows
from .models import Citizen, break_times, clerk_rng, population, service_time_model
from .runner import sessions, sim_regulation, staffed_windows
from .scenario import Scenario

KIOSKS: Final = 20  # kiosk connections (QR-code pages and the booking platform included)
PHONE_SHARE: Final = 0.2  # QR and appointment citizens who follow their ticket on a phone
MAX_PHONES: Final = 1000  # phone connections open at once at most
DURATION_S: Final = 120.0  # real seconds of play at most
MAX_CITIZENS: Final = 50_000
CONNECT_AT_ONCE: Final = 64  # connections being opened concurrently
SIGN_IN_S: Final = 300.0  # virtual seconds before a session over which clerks open their windows
IDLE_POLL_S: Final = 120.0  # virtual seconds an idle clerk waits before pressing "next" again
SETTLE_S: Final = 5.0  # real seconds to wait for the last pushes after the last command
CHECK_SAMPLE: Final = 200  # tickets compared one by one with the server
TICK_S: Final = 0.5  # real seconds between progress reports
TIMELINE_BIN_S: Final = 5.0  # real seconds per bin of the latency timeline
# Refusals that are outcomes of the scenario, not faults (a race between a citizen giving
# up and a clerk calling them is "invalid_state"; early check-in "checkin_rejected"; the
# hall's daily caps and cutoff "daily_cap_reached" and "past_closing": the citizen goes home).
EXPECTED: Final = frozenset({"hall_closed", "slot_full", "queue_empty", "invalid_state", "checkin_rejected",
                             "invalid_slot", "daily_cap_reached", "past_closing"})
COMMANDS: Final = frozenset({"take_number", "book_slot", "check_in", "cancel", "call_next", "recall", "no_show",
                             "start", "finish", "transfer", "pause", "resume", "open_window", "close_window"})
TOTALS: Final = ("issued", "booked", "checked_in", "called", "served", "no_show", "cancelled", "transferred")
FINAL: Final = frozenset({"done", "cancelled", "no_show", "expired"})


class LiveError(CallsysError):
    """The live run cannot start: wrong hall, clock speed or tokens. The fault is the setup's."""

    code = "live_error"


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveSettings:
    """Bounds and device counts of a live run (defaults above)."""

    speed: float | None = None  # must equal the server's clock speed when given
    duration_s: float = DURATION_S
    max_citizens: int = MAX_CITIZENS
    kiosks: int = KIOSKS
    phone_share: float = PHONE_SHARE
    max_phones: int = MAX_PHONES
    displays: bool = True  # an LED per window, a TV and a speaker per zone
    seed: int | None = None
    regulate: bool = False  # the manager applies the server's flow-regulation suggestions (see _regulate)


class Latencies:
    """Samples in seconds by name, with when they were taken; summarised in milliseconds."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.stamps: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)
        self.stamps.setdefault(name, []).append(trio.current_time())

    def summary(self, names: list[str] | None = None) -> dict[str, float]:
        xs = np.array([x for n in (names or self.samples) for x in self.samples.get(n, ())]) * 1000
        if not xs.size:
            return {"n": 0}
        p50, p90, p99 = np.percentile(xs, (50, 90, 99))
        return {"n": int(xs.size), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
                "max_ms": float(xs.max())}

    def timeline(self, names: list[str], bin_s: float = TIMELINE_BIN_S) -> list[dict[str, float]]:
        """p50/p99 per *bin_s* real seconds of play: where in the run the tail comes from."""
        xs = np.array([x for n in names for x in self.samples.get(n, ())]) * 1000
        ts = np.array([t for n in names for t in self.stamps.get(n, ())])
        if not xs.size:
            return []
        bins = ((ts - ts.min()) // bin_s).astype(int)
        out = []
        for b in range(bins.max() + 1):
            sel = xs[bins == b]
            if sel.size:
                p50, p99 = np.percentile(sel, (50, 99))
                out.append({"t_s": b * bin_s, "n": int(sel.size), "p50_ms": float(p50), "p99_ms": float(p99)})
        return out


@dataclass
class Ledger:
    """What the clients know: every ticket's status as acknowledged, and the counts."""

    status: dict[int, str] = field(default_factory=dict)
    numbers: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)
    finished: Counter = field(default_factory=Counter)
    called: set = field(default_factory=set)  # tickets called at least once
    calls: Counter = field(default_factory=Counter)  # (window, ticket) -> times called
    announced: Counter = field(default_factory=Counter)  # (window, number) -> times called

    def ticket(self, result: dict[str, Any], what: str) -> int:
        tid = result["ticket"]
        self.status[tid] = result["status"]
        self.counts[what] += 1
        if result["number"] is not None:
            self.numbers[result["number"]] += 1
        return tid

    def mark(self, tid: int, status: str, what: str) -> None:
        self.status[tid] = status
        self.counts[what] += 1


class LivePlayer:
    """Plays *scenario* against the server at *url*.

    Args:
        scenario: the demand and behaviour (its hall must be the server's hall).
        url: the server's WebSocket URL.
        settings: bounds and device counts.
        progress: called every half second with a status dict (virtual time, counts).
    """

    def __init__(self, scenario: Scenario, url: str, *, settings: LiveSettings = LiveSettings(),
                 progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.scenario, self.url, self.settings = scenario, url, settings
        self.hall = scenario.hall
        self.progress = progress
        self.seed = scenario.seed if settings.seed is None else settings.seed
        crowd, phones = np.random.SeedSequence(self.seed).spawn(2)
        self.crowd_rng, self.phone_rng = np.random.default_rng(crowd), np.random.default_rng(phones)
        self.lat = Latencies()
        self.ledger = Ledger()
        self.refusals: Counter = Counter()
        self.errors: Counter = Counter()
        self.outcomes: Counter = Counter()
        self.seen: dict[str, Counter] = {k: Counter() for k in ("led", "tv", "speaker", "phone")}
        self.phone_last: dict[int, str] = {}  # followed ticket -> the last status its phone saw
        self.call_sent: dict[int, float] = {}
        self.by_ticket: dict[int, Citizen] = {}
        self.wakers: dict[int, trio.Event] = {}
        self.idle = IdleWindows({w.id: w.skills for w in self.hall.windows})
        self.stop = trio.Event()
        self.closing = trio.Event()
        self.phones = trio.Semaphore(settings.max_phones)
        self.kiosks: list[Device] = []
        self.clerks: dict[int, Device] = {}
        self.connections: Counter = Counter()
        self.inflight = 0
        self.v0 = self.r0 = 0.0
        self.speed = 1.0
        self.v_end = 0.0
        self._next_kiosk = 0

    # ------------------------------------------------------------------ time

    def real(self, v: float) -> float:
        """The trio clock moment of virtual (server) time *v*."""
        return self.r0 + (v - self.v0) / self.speed

    def vnow(self) -> float:
        return self.v0 + (trio.current_time() - self.r0) * self.speed

    async def until(self, v: float) -> bool:
        """Sleep until virtual time *v*; False when the run stopped first."""
        if not self.stop.is_set():
            with trio.move_on_at(self.real(v)):
                await self.stop.wait()
        return not self.stop.is_set()

    async def _align(self, manager: Client) -> None:
        welcome = manager.welcome
        if welcome["hall"] != self.hall.id:
            raise LiveError(f"the server serves hall {welcome['hall']!r}, the scenario needs {self.hall.id!r}")
        speed = float(welcome["clock_speed"])
        wanted = self.settings.speed
        if wanted is not None and not math.isclose(wanted, speed):
            raise LiveError(f"the server's clock runs at speed {speed:g}; start it with --speed {wanted:g} "
                            f"(e.g. callsys serve --clock 2026-11-23T08:55 --speed {wanted:g}) or drop --speed")
        sent = trio.current_time()
        server_time = (await manager.request("ping"))["server_time"]
        self.speed, self.v0, self.r0 = speed, server_time, (sent + trio.current_time()) / 2
        day = self.hall.local_time(server_time).date()
        self.scenario = replace(self.scenario, first_day=day, days=1,
                                start=datetime.combine(day, clock_time(), self.hall.tz).timestamp())

    # ------------------------------------------------------------------ requests

    async def ask(self, client: Client | Device, kind: str, **fields: Any) -> tuple[Any, str | None, dict]:
        """Send a request; (result, None, {}) or (None, error code, details). Timed and counted."""
        self.inflight += 1
        started = trio.current_time()
        try:
            result = await client.request(kind, **fields)
            return result, None, {}
        except RequestFailed as exc:
            self.refusals[f"{kind}: {exc.code}"] += 1
            if exc.code not in EXPECTED:
                self.errors[f"{kind}: {exc.code}"] += 1
            return None, exc.code, exc.details
        except ConnectionLost as exc:
            self.errors[f"{kind}: connection lost ({exc.close_code})"] += 1
            return None, "connection_lost", {}
        finally:
            self.inflight -= 1
            self.lat.add(f"ack {kind}", trio.current_time() - started)

    def kiosk(self) -> Device:
        self._next_kiosk = (self._next_kiosk + 1) % len(self.kiosks)
        return self.kiosks[self._next_kiosk]

    # ------------------------------------------------------------------ devices

    def _token(self, role: str) -> str:
        tokens = self.hall.tokens.get(role)
        if not tokens:
            raise LiveError(f"the hall file has no {role} token ([tokens] {role} = [...])")
        return sorted(tokens)[0]

    async def _hold(self, hello: dict[str, Any], reader: Callable[[Device], Awaitable[None]] | None,
                    task_status: trio.TaskStatus[Device]) -> None:
        """A device for the whole run: it reconnects by itself and retries its commands with
        their idempotency keys, so a broken connection never issues a ticket twice."""
        async with connect_device(self.url, **hello) as client:
            self.connections[hello["role"]] += 1
            task_status.started(client)
            async with trio.open_nursery() as nursery:
                if reader is not None:
                    nursery.start_soon(reader, client)
                await self.closing.wait()
                nursery.cancel_scope.cancel()

    async def _open_all(self, devices: trio.Nursery) -> None:
        """Kiosks, a clerk per staffed window, and the displays, a few dozen at a time."""
        limiter = trio.CapacityLimiter(CONNECT_AT_ONCE)
        plan: list[tuple[dict[str, Any], Any, Callable[[Device], None]]] = []
        for _ in range(self.settings.kiosks):
            plan.append(({"role": "kiosk", "token": self._token("kiosk")}, None, self.kiosks.append))
        for w in self.staffed:
            plan.append(({"role": "clerk", "token": self._token("clerk"), "window": w}, _drain,
                         lambda c, w=w: self.clerks.__setitem__(w, c)))
        if self.settings.displays:
            display, speaker = self._token("display"), self._token("speaker")
            for w in self.hall.windows:
                plan.append(({"role": "display", "token": display, "subscribe": {"windows": [w.id]}},
                             self._display_reader("led"), _ignore))
            for z in self.hall.zones:
                plan.append(({"role": "display", "token": display, "subscribe": {"zones": [z.id]}},
                             self._display_reader("tv"), _ignore))
                plan.append(({"role": "speaker", "token": speaker, "subscribe": {"zones": [z.id]}},
                             self._speaker_reader, _ignore))

        async def one(hello: dict[str, Any], reader: Any, keep: Callable[[Device], None]) -> None:
            async with limiter:
                keep(await devices.start(self._hold, hello, reader))

        async with trio.open_nursery() as opening:
            for item in plan:
                opening.start_soon(one, *item)

    def _display_reader(self, what: str) -> Callable[[Device], Awaitable[None]]:
        async def read(client: Device) -> None:
            async for push in client.pushes():
                if push["type"] == "window_update" and push["event"] == "called":
                    self._seen(what, push["window"], push["ticket"])
        return read

    async def _speaker_reader(self, client: Device) -> None:
        async for push in client.pushes():
            if push["type"] == "announce" and push["recall"] == 0:
                self._seen("speaker", push["window"], push["number"])

    def _seen(self, what: str, window: int, key: Any) -> None:
        sent = self.call_sent.get(window)
        if sent is not None:
            self.lat.add(f"call -> {what}", trio.current_time() - sent)
        self.seen[what][(window, key)] += 1

    # ------------------------------------------------------------------ the run

    async def run(self) -> dict[str, Any]:
        """Connect, play, settle, check; return the report.

        Raises:
            LiveError: the server serves another hall or runs at another speed.
            ClientError: the server cannot be reached or refuses a device.
        """
        started = time.perf_counter()
        try:
            async with connect(self.url, role="manager", token=self._token("manager")) as manager:
                self.connections["manager"] += 1
                self.manager = manager
                await self._align(manager)
                self.staffed = staffed_windows(self.scenario)
                before = (await manager.request("stats"))["totals"]
                async with trio.open_nursery() as devices:
                    self.devices = devices
                    await self._play(devices)
                    after = (await manager.request("stats"))["totals"]
                    check = await self._check(manager, before, after)
                    self.closing.set()
        except BaseExceptionGroup as group:
            raise _only(group) from None
        return self._report(check, time.perf_counter() - started)

    async def _play(self, devices: trio.Nursery) -> None:
        await self._open_all(devices)
        crowd = self._crowd()
        async with trio.open_nursery() as agents:
            agents.start_soon(self._stopper)
            if self.progress is not None:
                agents.start_soon(self._ticker)
            await self._book(crowd)
            agents.start_soon(self._feed, agents, crowd)
            for w in self.staffed:
                agents.start_soon(self._clerk, w)
            if self.settings.regulate:
                agents.start_soon(self._regulate)
        await self._settle()

    def _crowd(self) -> list[Citizen]:
        """Today's citizens from the server's now on, at most ``max_citizens``."""
        day_sessions = sessions(self.scenario)
        self.sessions = [(s, e) for s, e in day_sessions if e > self.v0]
        last = max((e for _, e in day_sessions), default=self.v0) + self.scenario.clerks.overtime_min * 60
        self.v_end = min(last, self.v0 + self.settings.duration_s * self.speed)
        slot = self.hall.appointments.slot_minutes * 60
        crowd = []
        for c in population(self.scenario, 0, self.crowd_rng, service_time_model(self.scenario)):
            upcoming = c.slot + slot > self.v0 if c.channel == "appointment" else c.arrive >= self.v0
            if upcoming and c.arrive < self.v_end:
                crowd.append(c)
            else:
                self.outcomes["skipped (before the run or after its end)"] += 1
        crowd.sort(key=lambda c: c.arrive)
        self.outcomes["skipped (max citizens)"] += max(0, len(crowd) - self.settings.max_citizens)
        return crowd[: self.settings.max_citizens]

    async def _stopper(self) -> None:
        await self.until(self.v_end)
        self.stop.set()
        for event in self.wakers.values():
            event.set()

    async def _ticker(self) -> None:
        while not self.stop.is_set():
            self.progress(self.status())
            with trio.move_on_after(TICK_S):
                await self.stop.wait()
        self.progress(self.status())

    def status(self) -> dict[str, Any]:
        span = max(self.v_end - self.v0, 1e-9)
        return {"virtual": self.vnow(), "share": min(1.0, (self.vnow() - self.v0) / span),
                "issued": self.ledger.counts["issued"] + self.ledger.counts["checked_in"],
                "served": self.ledger.counts["served"], "inflight": self.inflight,
                "errors": sum(self.errors.values()), "connections": sum(self.connections.values())}

    async def _settle(self) -> None:
        """Wait (a little) for the pushes of the last commands to reach every display."""
        deadline = trio.current_time() + SETTLE_S
        while trio.current_time() < deadline and (self.inflight or any(self._dropped().values())):
            await trio.sleep(0.05)

    # ------------------------------------------------------------------ citizens

    async def _book(self, crowd: list[Citizen]) -> None:
        """Book every appointment ahead of the day (refused bookers walk in or stay home)."""
        limiter = trio.CapacityLimiter(32 * len(self.kiosks))

        async def book(c: Citizen) -> None:
            async with limiter:
                result, code, _ = await self.ask(self.kiosk(), "book_slot", service=c.service, slot_start=c.slot,
                                                 green=c.green)
            if result is not None:
                c.ticket = self.ledger.ticket(result, "booked")
                self.by_ticket[c.ticket] = c
            elif code == "slot_full" and self.scenario.appointments.slot_full == "walk_in":
                c.channel, c.slot = "kiosk", None

        async with trio.open_nursery() as nursery:
            for c in crowd:
                if c.channel == "appointment":
                    nursery.start_soon(book, c)

    async def _feed(self, agents: trio.Nursery, crowd: list[Citizen]) -> None:
        for c in crowd:
            if not await self.until(c.arrive):
                return
            if c.channel != "appointment":
                agents.start_soon(self._walk_in, c)
            elif c.ticket is not None and c.shows:
                agents.start_soon(self._appointment, c)

    async def _door(self, c: Citizen) -> bool:
        """The hall is not issuing: wait for the next session if it opens soon enough."""
        now = self.vnow()
        opening = next((s for s, _ in self.sessions if s > now), None)
        if opening is None or opening - now > self.scenario.arrivals.door_wait_min * 60:
            self.outcomes["turned away: hall not issuing"] += 1
            return False
        return await self.until(opening)

    async def _walk_in(self, c: Citizen) -> None:
        for _ in range(2):
            result, code, _ = await self.ask(self.kiosk(), "take_number", service=c.service, channel=c.channel,
                                             green=c.green)
            if code != "hall_closed" or not await self._door(c):
                break
        if result is None:
            return
        c.ticket = self.ledger.ticket(result, "issued")
        self.by_ticket[c.ticket] = c
        self._wake(c.service)
        self._maybe_follow(c, result["secret"])
        await self._patience(c, self.vnow())

    async def _appointment(self, c: Citizen) -> None:
        for _ in range(2):
            result, code, details = await self.ask(self.kiosk(), "check_in", ticket=c.ticket)
            if code == "hall_closed" and await self._door(c):
                continue
            if code == "checkin_rejected" and "opens_at" in details and await self.until(details["opens_at"]):
                continue
            break
        if result is None:
            return
        self.ledger.mark(c.ticket, "waiting", "checked_in")
        late = self.vnow() > result["slot_end"] + self.hall.appointments.late_grace_s
        eligible = self.vnow() if late else max(self.vnow(), result["slot_start"])
        self._maybe_follow(c, result["secret"])
        if not await self.until(eligible):
            return
        self._wake(c.service)
        await self._patience(c, eligible)

    async def _patience(self, c: Citizen, since: float) -> None:
        if not math.isfinite(c.patience_s) or not await self.until(since + c.patience_s):
            return
        if self.ledger.status.get(c.ticket) != "waiting" or c.ticket in self.ledger.called:
            return
        c.gone = True
        self.outcomes["gave up waiting"] += 1
        if not c.silent:
            result, _, _ = await self.ask(self.kiosk(), "cancel", ticket=c.ticket)
            if result is not None:
                self.ledger.mark(c.ticket, "cancelled", "cancelled")

    def _maybe_follow(self, c: Citizen, secret: str) -> None:
        """QR and appointment citizens may follow their ticket on a phone (a connection each)."""
        if c.channel == "kiosk" or self.phone_rng.random() >= self.settings.phone_share:
            return
        try:
            self.phones.acquire_nowait()
        except trio.WouldBlock:
            self.outcomes["phones not opened (limit)"] += 1
            return
        self.devices.start_soon(self._phone, c.ticket, secret)

    async def _phone(self, ticket: int, secret: str) -> None:
        """Follow *ticket* until it is final or the run closes; remember the last status seen."""
        try:
            async with connect(self.url, role="phone", ticket=ticket, secret=secret) as phone:
                self.connections["phone"] += 1
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_cancel_on, self.closing, nursery.cancel_scope)
                    async for push in phone.pushes():
                        if push["type"] != "ticket_update":
                            continue
                        self.phone_last[ticket] = push["status"]
                        if push["event"] == "ticket_called":
                            self._seen("phone", push["window"], ticket)
                        if push["status"] in FINAL:
                            break
                    nursery.cancel_scope.cancel()
        except ClientError as exc:
            self.errors[f"phone: {exc.code}"] += 1
        finally:
            self.phones.release()

    # ------------------------------------------------------------------ the manager

    async def _regulate(self) -> None:
        """The manager's flow regulation, as in ``sim run --regulate``: every ``check_every_min``
        of open hours it asks the server for the ``cockpit`` and sends the ``reassign``
        commands of its ``suggestions`` and ``homecomings``, in order, within the hall's
        limits (:class:`callsys.regulator.Limits`); opening windows is left out (the
        scenario's unstaffed windows have no clerk)."""
        policy = sim_regulation(self.scenario)
        limits = Limits(policy)
        at = self.v0
        while await self.until(at := at + policy.every_s):
            if not any(s <= at < e for s, e in self.sessions):
                continue
            view, _, _ = await self.ask(self.manager, "cockpit", follow=False)
            if view is None:
                continue
            picks = [s for group in view["suggestions"].values() for s in group] + view["homecomings"]
            moved: set[int] = set()
            for s in picks:
                if s["action"] == OPEN or s["window"] in moved or not limits.admit(s["window"], view["at"]):
                    continue
                moved.add(s["window"])
                for command in s["commands"]:
                    fields = {k: v for k, v in command.items() if k != "type"}
                    result, _, _ = await self.ask(self.manager, command["type"], **fields)
                    if result is not None and command["type"] == "reassign":
                        self.outcomes["regulator reassignments"] += 1
                        self.idle.reassign(command["window"], tuple(command["skills"]))
                        waker = self.wakers.get(command["window"])
                        if waker is not None and command["window"] in self.idle:
                            waker.set()  # an idle clerk looks again at once

    # ------------------------------------------------------------------ clerks

    def _wake(self, service: str) -> None:
        window = self.idle.take(service)
        if window is not None:
            self.wakers[window].set()

    async def _clerk(self, w: int) -> None:
        client = self.clerks[w]
        info, _, _ = await self.ask(client, "window")
        if info is None:
            return
        is_open = info["status"] != "closed"
        if info["current"] is not None:  # left over from an earlier run: let it go
            result, _, _ = await self.ask(client, "finish", rating=None, score=None)
            if result is not None:
                self.outcomes["leftover citizens finished"] += 1
        rng = clerk_rng(self.seed, w)
        breaks = [t for s, e in self.sessions for t in break_times(self.scenario, s, e, rng)]
        for start, end in self.sessions:
            sign_in = start - rng.uniform(0, SIGN_IN_S)  # clerks open over the last minutes
            if not await self.until(sign_in):
                return
            if not is_open:
                await self.ask(client, "open_window", clerk=f"W{w}")  # the staff id, as in virtual time
                is_open = True
            if not await self._serve(w, client, end, breaks):
                return
            await self.ask(client, "close_window")
            is_open = False

    async def _serve(self, w: int, client: Device, end: float, breaks: list[float]) -> bool:
        """Serve one session (and its overtime); False when the run stopped."""
        deadline = end + self.scenario.clerks.overtime_min * 60
        while not self.stop.is_set():
            now = self.vnow()
            if breaks and breaks[0] <= now < end:
                breaks.pop(0)
                await self.ask(client, "pause")
                if not await self.until(now + self.scenario.clerks.break_min * 60):
                    return False
                await self.ask(client, "resume")
                continue
            if now >= deadline:
                return True
            self.call_sent[w] = trio.current_time()
            result, code, _ = await self.ask(client, "call_next")
            if code == "queue_empty":
                if self.vnow() >= end:
                    return True
                await self._idle(w, min(end, breaks[0] if breaks else math.inf, self.vnow() + IDLE_POLL_S))
                continue
            if result is None:
                return False
            event = result["events"][0]
            tid = event["ticket"]
            self.ledger.mark(tid, "called", "called")
            self.ledger.called.add(tid)
            self.ledger.calls[(w, tid)] += 1
            if self.hall.windows_by_id[w].zone not in self.hall.voice.silent_zones:  # silent zones: never spoken
                self.ledger.announced[(w, event["number"])] += 1
            if not await self._attend(w, client, tid):
                return False
            if not await self.until(self.vnow() + self.scenario.clerks.wrapup_s):
                return False
        return False

    async def _idle(self, w: int, until: float) -> None:
        waker = self.wakers[w] = trio.Event()
        self.idle.add(w, self.vnow())
        with trio.move_on_at(self.real(until)):
            await waker.wait()
        self.idle.discard(w)

    async def _attend(self, w: int, client: Device, tid: int) -> bool:
        """Recall until the citizen comes (or mark no-show), serve, finish or transfer."""
        c = self.by_ticket.get(tid)
        if c is None:  # a ticket from before this run: serve it like an average citizen
            c = _stranger(self.scenario, tid)
        interval, limit = self.scenario.clerks.recall_interval_s, self.hall.policy.recall_limit
        walk = math.inf if c.gone else c.walk_s
        called_at = self.vnow()
        for k in range(1, limit + 2):
            if walk <= k * interval:
                if not await self.until(called_at + walk):
                    return False
                if (await self.ask(client, "start"))[0] is not None:
                    self.ledger.mark(tid, "serving", "started")
                break
            if not await self.until(called_at + k * interval):
                return False
            if k <= limit:
                await self.ask(client, "recall")
                continue
            if (await self.ask(client, "no_show"))[0] is not None:
                self.ledger.mark(tid, "no_show", "no_show")
            return True
        if not await self.until(self.vnow() + c.service_s):
            return False
        if c.transfer is not None:
            service, c.transfer, c.service_s = c.transfer, None, c.transfer_s
            if (await self.ask(client, "transfer", service=service))[0] is not None:
                self.ledger.mark(tid, "waiting", "transferred")
                self._wake(service)
        elif (await self.ask(client, "finish", rating=c.rating, score=None))[0] is not None:
            self.ledger.mark(tid, "done", "served")
            self.ledger.finished[tid] += 1
        return True

    # ------------------------------------------------------------------ the end

    def _dropped(self) -> dict[str, int]:
        """Calls acknowledged to a clerk that a display or speaker never got; phones behind."""
        expected = {"led": self.ledger.calls, "tv": self.ledger.calls, "speaker": self.ledger.announced}
        if not self.settings.displays:
            expected = {}
        out = {what: sum(max(0, n - self.seen[what][key]) for key, n in counts.items())
               for what, counts in expected.items()}
        # a phone is behind when the last status it saw is not its ticket's (as the clerks know it)
        out["phone"] = sum(1 for tid, status in self.phone_last.items() if status != self.ledger.status.get(tid))
        return out

    async def _check(self, manager: Client, before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
        items = []
        for key in TOTALS:
            server = after.get(key, 0) - before.get(key, 0)
            items.append({"what": f"{key} (server total vs clients)", "server": server,
                          "clients": self.ledger.counts[key], "ok": server == self.ledger.counts[key]})
        twice = sum(1 for n in self.ledger.finished.values() if n > 1)
        items.append({"what": "tickets finished twice", "server": None, "clients": twice, "ok": twice == 0})
        dupes = sum(1 for n in self.ledger.numbers.values() if n > 1)
        items.append({"what": "numbers handed out twice", "server": None, "clients": dupes, "ok": dupes == 0})
        tickets = sorted(self.ledger.status)
        sample = tickets[:: max(1, len(tickets) // CHECK_SAMPLE)][:CHECK_SAMPLE]
        agree = 0
        for tid in sample:
            result, _, _ = await self.ask(manager, "ticket", ticket=tid)
            agree += result is not None and result["status"] == self.ledger.status[tid]
        items.append({"what": "sampled tickets with the same status", "server": agree, "clients": len(sample),
                      "ok": agree == len(sample)})
        return {"ok": all(i["ok"] for i in items), "items": items}

    def _report(self, check: dict[str, Any], real_s: float) -> dict[str, Any]:
        ack = sorted(n for n in self.lat.samples if n.startswith("ack ") and n[4:] in COMMANDS)
        played = [n for n in ack if n != "ack book_slot"]  # bookings are made in one burst before play
        return {
            "scenario": self.scenario.name, "hall": self.hall.id, "url": self.url, "speed": self.speed,
            "virtual_start": self.v0, "virtual_end": self.v_end, "real_s": real_s,
            "connections": dict(self.connections),
            "requests": sum(len(v) for n, v in self.lat.samples.items() if n.startswith("ack ")),
            "latency": {
                "command -> ack": self.lat.summary(played),
                **{n: self.lat.summary([n]) for n in ack},
                **{f"call -> {w}": self.lat.summary([f"call -> {w}"]) for w in ("led", "tv", "speaker", "phone")},
            },
            "timeline": self.lat.timeline(played),
            "flow": dict(self.ledger.counts) | dict(self.outcomes),
            "refusals": dict(self.refusals),
            "errors": dict(self.errors),
            "dropped": self._dropped(),
            "check": check,
        }


async def _drain(client: Device) -> None:
    """Read and forget a connection's pushes (a clerk sees its own window's updates)."""
    async for _ in client.pushes():
        pass


def _ignore(client: Device) -> None:
    return None


def _only(group: BaseExceptionGroup) -> BaseException:
    """The single error inside (nested) exception groups, or the group when there are several."""
    leaves = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _stranger(scenario: Scenario, tid: int) -> Citizen:
    """A citizen nobody in this run drew (a ticket left from earlier): average behaviour."""
    return Citizen(id=-tid, channel="kiosk", service="", green=False, arrive=0.0, slot=None, shows=True,
                   patience_s=math.inf, silent=False, walk_s=scenario.citizens.walk_mean_s,
                   service_s=60.0 * float(np.mean([s.minutes for s in scenario.hall.services])),
                   transfer=None, transfer_s=0.0, rating="good")


def play(scenario: Scenario, url: str, *, settings: LiveSettings = LiveSettings(),
         progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a live play to the end (``trio.run``) and return its report."""
    return trio.run(LivePlayer(scenario, url, settings=settings, progress=progress).run)


def check_loopback(url: str) -> None:
    """Live mode talks to a server on this machine only.

    Raises:
        LiveError: the URL's host is not a loopback address.
    """
    import ipaddress
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LiveError(f"live mode plays against a server on this machine only (127.0.0.1), not {host!r}")
