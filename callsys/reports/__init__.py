"""Reports rebuilt from the event log: any past day (or range of days) of a hall, from its store alone.

The store keeps every event since the hall's first (snapshots never drop records), so a
report reads the log from seq 1 through the store interface (:class:`~callsys.log.EventLog`:
the file store or Redis alike) and folds it with the simulator's own
:class:`sim.tracker.Tracker` — the same records, and :func:`sim.metrics.wait_stats` the same
figures, as ``callsys sim run`` prints. A report of a simulated day written to a store
therefore equals the simulator's summary of that day (``tests/test_reports.py`` checks it).

**The period**: ``--date D``, or ``--from D1 --to D2`` (both included), are dates in the
hall's time zone; the period runs from local midnight of the first day to local midnight
after the last. A ticket belongs to the period when it became *eligible* (number taken;
for an appointment the later of check-in and slot start) inside it.

**Definitions** (those of :mod:`sim.metrics`, whose docstring is the reference):

* **tickets** — tickets that queued, by channel and by service, and what became of them:
  ``served``, ``no_show`` (called, did not come, not served after a requeue), ``cancelled``
  (abandonment: the citizen cancelled while waiting), ``expired`` (still waiting at the
  night's reset), ``waiting`` (still waiting when the log ends).
* **waits** — :func:`sim.metrics.wait_stats`: wait until the first call, percentiles of the
  called (min), *within target* as a share of everyone who queued.
* **service time** — from ``service_started`` to ``service_finished`` at the window (min),
  per service as called; services finished inside the period.
* **ratings** — :class:`callsys.ratings.Ratings`, per window and per clerk (the staff id
  each ``service_finished`` names, see :mod:`callsys.ratings`), with one alert per ``bad``
  rating naming the window and the clerk. ``clerks_identified`` is false when no service of
  the period named its clerk (windows opened without a staff id, or an older log).
* **hours** — per hour of the day (local, summed over the days): tickets that queued, and the
  mean number waiting; ``busiest`` are the :data:`BUSIEST` hours with the most tickets.
* **heatmap** — mean waiting citizens per zone (the home zone of the ticket's service,
  :func:`sim.tracker.home_zones`) and hour of the day, averaged over the days; hours are
  counted in steps of 3600 s from the first local midnight (as the simulator's heatmap).

What the log cannot know, a report cannot tell: a citizen who left *without* cancelling
is, to the log, still waiting and then a no-show when called (the simulator knows they
left); a citizen warned at the kiosk who cancelled at once counts as a cancel.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Any, Final

import numpy as np
import trio

from sim.metrics import CHANNEL_ORDER, binned_average, wait_stats
from sim.tracker import TicketRecord, Tracker

from .. import events as ev
from ..errors import CallsysError, InvalidArgument
from ..hall import Hall
from ..log import EventLog
from ..log.journal import READ_CHUNK, decode_record
from ..ratings import Ratings

MAX_DAYS: Final = 366  # longest period one report covers (days)
FIRST_DAY: Final = date(1970, 1, 2)  # the earliest and latest days a report may name (POSIX times stay in range)
LAST_DAY: Final = date(2099, 12, 31)
BUSIEST: Final = 3  # hours listed as the busiest
OUTCOMES: Final = ("served", "no_show", "cancelled", "expired", "waiting")

__all__ = ["MAX_DAYS", "HallMismatch", "Period", "period", "Report", "report_from_log"]


class HallMismatch(CallsysError):
    """The log names a window, service or ticket the hall file does not know: the report was
    given another hall file (or an edited one) than the one that wrote the store."""

    code = "hall_mismatch"


class Period:
    """Local days *first* .. *last* (both included) of *hall*, as POSIX ``start`` / ``end``."""

    def __init__(self, hall: Hall, first: date, last: date) -> None:
        self.first, self.last = first, last
        self.days = (last - first).days + 1
        self.start = datetime.combine(first, time(0), tzinfo=hall.tz).timestamp()
        self.end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=hall.tz).timestamp()


def period(hall: Hall, first: date, last: date | None = None) -> Period:
    """The period from *first* to *last* (default: *first* alone), checked.

    Raises:
        InvalidArgument: *last* is before *first*, the period is longer than :data:`MAX_DAYS`, or
            a day is outside :data:`FIRST_DAY` .. :data:`LAST_DAY`.
    """
    last = first if last is None else last
    if not FIRST_DAY <= first <= LAST_DAY or not FIRST_DAY <= last <= LAST_DAY:
        raise InvalidArgument(f"a report covers days from {FIRST_DAY} to {LAST_DAY}, not {first} to {last}")
    if last < first:
        raise InvalidArgument(f"the period ends ({last}) before it starts ({first})")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidArgument(f"a report covers at most {MAX_DAYS} days, not {(last - first).days + 1} "
                              f"({first} to {last})")
    return Period(hall, first, last)


class Report:
    """The fold of one hall's events for one :class:`Period`; :meth:`figures` gives the report.

    Feed every event of the log in order (:meth:`apply`), from seq 1 (tickets booked before
    the period, windows opened before it), then call :meth:`figures` once.
    """

    def __init__(self, hall: Hall, when: Period) -> None:
        self.hall = hall
        self.period = when
        self.tracker = Tracker(hall, when.start)
        self.ratings = Ratings(when.start, when.end)
        self.service_s: dict[str, list[float]] = {}
        self._serving: dict[int, tuple[float, str]] = {}  # ticket -> (service start, service)
        self._service: dict[int, str] = {}  # ticket -> service it was called for
        self.events = 0  # events folded
        self.complete = False  # True once the log past the period need not be read
        self._done = False

    def apply(self, event: ev.Event) -> None:
        """Fold one event (events at or after the period's end are skipped).

        A ``day_reset`` at or after the period's end sets :attr:`complete`: the night after
        the period has come, so the rest of the log cannot belong to it.
        """
        if event.at >= self.period.end:
            self.complete = self.complete or isinstance(event, ev.DayReset)
            return
        self.events += 1
        self.tracker.observe([event])
        self.ratings.apply(event)
        if isinstance(event, ev.TicketCalled):
            self._service[event.ticket] = event.service
        elif isinstance(event, ev.ServiceStarted):
            self._serving[event.ticket] = (event.at, self._service.pop(event.ticket, "?"))
        elif isinstance(event, ev.ServiceFinished):
            started = self._serving.pop(event.ticket, None)
            if started is not None and event.at >= self.period.start:
                self.service_s.setdefault(started[1], []).append(event.at - started[0])
        elif isinstance(event, ev.DayReset):
            self._serving.clear()
            self._service.clear()

    def queued(self) -> list[TicketRecord]:
        """The tickets that queued in the period (eligible inside it)."""
        start, end = self.period.start, self.period.end
        return [r for r in self.tracker.tickets.values()
                if r.outcome not in ("booked", "told_early") and start <= r.eligible < end]

    def figures(self) -> dict[str, Any]:
        """The report as plain data (JSON-ready); see the module docstring for each figure."""
        if not self._done:
            self.tracker.finish(self.period.end)
            self._done = True
        hall, when = self.hall, self.period
        queued = self.queued()
        by_channel, by_service = self._groups(queued)
        outcomes = Counter(r.outcome for r in queued)
        targets = {s.code: s.target_wait_s for s in hall.services}
        heatmap = self._heatmap()
        hours = self._hours(queued, heatmap)
        return {
            "hall": hall.id, "timezone": hall.timezone, "from": when.first.isoformat(), "to": when.last.isoformat(),
            "days": when.days, "start": when.start, "end": when.end, "events": self.events,
            "tickets": {"queued": len(queued), "by_channel": {c: len(v) for c, v in by_channel.items()},
                        "by_service": {c: len(v) for c, v in by_service.items()},
                        "outcomes": {o: outcomes[o] for o in OUTCOMES}},
            "waits": {"all": wait_stats(queued, targets),
                      "by_channel": {c: wait_stats(v, targets) for c, v in by_channel.items()},
                      "by_service": {c: wait_stats(v, targets) for c, v in by_service.items()}},
            "service_time": {"all": _durations([s for v in self.service_s.values() for s in v]),
                             "by_service": {s.code: _durations(self.service_s[s.code])
                                            for s in hall.services if s.code in self.service_s}},
            "ratings": self.ratings.to_dict(),
            "hours": hours,
            "busiest": sorted((h for h in hours if h["tickets"]), key=lambda h: (-h["tickets"], h["hour"]))[:BUSIEST],
            "heatmap": heatmap,
        }

    def _groups(self, queued: list[TicketRecord]) -> tuple[dict[str, list[TicketRecord]],
                                                             dict[str, list[TicketRecord]]]:
        """*queued* by channel (the simulator's order, then any other) and by service (the hall's order)."""
        channels: dict[str, list[TicketRecord]] = {}
        services: dict[str, list[TicketRecord]] = {}
        for r in queued:
            channels.setdefault(r.channel, []).append(r)
            services.setdefault(r.service, []).append(r)
        channel_order = [c for c in CHANNEL_ORDER if c in channels] + sorted(set(channels) - set(CHANNEL_ORDER))
        return ({c: channels[c] for c in channel_order},
                {s.code: services[s.code] for s in self.hall.services if s.code in services})

    def _hours(self, queued: list[TicketRecord], heatmap: dict[str, Any]) -> list[dict[str, Any]]:
        """Per local hour of the day: tickets that queued, and the mean waiting (the heatmap's zones summed)."""
        waiting = np.asarray(heatmap["values"]).sum(axis=0) if heatmap["values"] else np.zeros(24)
        tickets = Counter(self.hall.local_time(r.eligible).hour for r in queued)
        return [{"hour": h, "tickets": tickets[h], "waiting": round(float(waiting[h]), 3)} for h in range(24)]

    def _heatmap(self) -> dict[str, Any]:
        zones = [z.id for z in self.hall.zones]
        spells: dict[str, list[tuple[float, float]]] = {z: [] for z in zones}
        for start, end, zone in self.tracker.spells:
            spells[zone].append((start, end))
        days = self.period.days
        values = []
        for z in zones:
            hourly = binned_average(np.array(spells[z], dtype=float).reshape(-1, 2), self.period.start, 3600.0,
                                    24 * days)
            values.append([round(float(v), 3) for v in hourly.reshape(days, 24).mean(axis=0)])
        return {"zones": zones, "hours": list(range(24)), "values": values}


def _durations(seconds: list[float]) -> dict[str, Any]:
    """``served``, ``mean_min``, ``p50_min``, ``p90_min`` of service durations (None when empty)."""
    out: dict[str, Any] = {"served": len(seconds)}
    values = np.asarray(seconds, dtype=float) / 60
    out["mean_min"] = float(values.mean()) if len(values) else None
    for q in (50, 90):
        out[f"p{q}_min"] = float(np.percentile(values, q)) if len(values) else None
    return out


async def report_from_log(log: EventLog, hall: Hall, when: Period, *, upto: int | None = None,
                          chunk: int = READ_CHUNK) -> Report:
    """Read *log* from seq 1 (to *upto*, default its end) and fold it into a :class:`Report`.

    Stops early at the first ``day_reset`` after the period (:attr:`Report.complete`).

    Reads *chunk* records at a time and lets other tasks run between chunks: the fold is
    CPU work on the event loop (~10 us an event), so a server answering a report passes a
    small *chunk* to keep serving meanwhile.

    Raises:
        StoreDamaged: a record cannot be decoded.
        HallMismatch: a record names a window, service or zone *hall* does not have.
        LogError: the store failed.
    """
    report = Report(hall, when)
    last = await log.last_seq() if upto is None else upto
    seq = 0
    while seq < last:
        rows = await log.read(seq, limit=min(chunk, last - seq))
        if not rows:
            break
        for row_seq, data in rows:
            event = decode_record(log.name, row_seq, data)
            try:
                report.apply(event)
            except KeyError as exc:
                raise HallMismatch(f"the {event.kind} record at seq {row_seq} of store {log.name} names "
                                   f"{exc.args[0]!r}, which hall file {hall.source} does not have (or a ticket "
                                   f"the log never issued): is it the hall file that wrote this store, "
                                   f"unchanged?") from None
            seq = row_seq
            if report.complete:
                return report
        await trio.lowlevel.checkpoint()
    return report
