"""The waiting room as a data structure: every waiting ticket, indexed for O(log n) calls.

Tickets wait in one sorted queue per (service, class) — class is ``"normal"`` or
``"priority"`` — ordered by (rank, id); tickets sent to one particular window (transfer to
a window, return from park) wait in that window's own queue. Two indexes over the *heads*
of the service queues make "best head among the services a window serves" cheap even for
universal windows that serve everything:

* ``heads[klass]``: the heads ordered by rank;
* ``deadlines``: the heads ordered by the moment they pass their service's target wait.

The head indexes hold at most two entries per service (a hundred or so), so they are plain
sorted lists kept with :mod:`bisect`, which beats a ``SortedList`` at that size.

Appointment holders who check in before their slot wait in ``pending`` until the slot
starts (:meth:`QueueBook.release`). Every operation is O(log n) in waiting tickets.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Final, Iterable, Iterator, Mapping

from sortedcontainers import SortedList

NORMAL: Final = "normal"
PRIORITY: Final = "priority"
CLASSES: Final = (NORMAL, PRIORITY)

# A service queue is named by (service code, class); a window's own queue by its id.
QueueKey = tuple[str, str] | int


class QueueBook:
    def __init__(self, targets: Mapping[str, float]) -> None:
        """*targets*: the target wait in seconds of every service code."""
        self.targets = dict(targets)
        self.queues: dict[tuple[str, str], SortedList] = {
            (code, klass): SortedList() for code in self.targets for klass in CLASSES
        }
        self.direct: dict[int, SortedList] = {}
        self.heads: dict[str, list[tuple[float, int, str]]] = {klass: [] for klass in CLASSES}
        self.deadlines: list[tuple[float, int, str, str]] = []
        self.pending = SortedList()
        # ticket id -> (rank, queue key, eligible since); pending ones are in `held`
        self.where: dict[int, tuple[float, QueueKey, float]] = {}
        self.held: dict[int, tuple[float, float, QueueKey]] = {}
        self._head: dict[tuple[str, str], tuple[float, int, float] | None] = {}

    # ------------------------------------------------------------------ updates

    def add(self, ticket: int, rank: float, key: QueueKey, since: float) -> None:
        """Queue *ticket* with *rank* in *key*; it counts as waiting from *since*."""
        self.where[ticket] = (rank, key, since)
        if isinstance(key, int):
            self.direct.setdefault(key, SortedList()).add((rank, ticket))
            return
        self.queues[key].add((rank, ticket))
        head = self._head.get(key)
        if head is None or (rank, ticket) < (head[0], head[1]):
            self._refresh(key)

    def hold(self, ticket: int, not_before: float, rank: float, key: QueueKey) -> None:
        """Keep *ticket* out of the queue until *not_before* (early appointment check-in)."""
        self.held[ticket] = (not_before, rank, key)
        self.pending.add((not_before, ticket))

    def release(self, now: float) -> list[int]:
        """Queue every held ticket whose time has come; return them."""
        pending = self.pending
        released = []
        while pending and pending[0][0] <= now:
            not_before, ticket = pending.pop(0)
            _, rank, key = self.held.pop(ticket)
            self.add(ticket, rank, key, not_before)
            released.append(ticket)
        return released

    def unrelease(self, ticket: int) -> None:
        """Hold a released *ticket* again (the inverse of :meth:`release` for one ticket)."""
        rank, key, not_before = self.where[ticket]
        self.remove(ticket)
        self.hold(ticket, not_before, rank, key)

    def remove(self, ticket: int) -> None:
        """Take *ticket* out, wherever it waits (queued or held)."""
        if ticket in self.held:
            not_before, _, _ = self.held.pop(ticket)
            self.pending.remove((not_before, ticket))
            return
        rank, key, _ = self.where.pop(ticket)
        if isinstance(key, int):
            queue = self.direct[key]
            queue.remove((rank, ticket))
            if not queue:
                del self.direct[key]
            return
        if self._head[key][1] == ticket:
            self.queues[key].pop(0)  # the usual case ("next"), and much cheaper than remove()
            self._refresh(key)
        else:
            self.queues[key].remove((rank, ticket))

    def _refresh(self, key: tuple[str, str]) -> None:
        code, klass = key
        old = self._head.get(key)
        if old is not None:
            _discard(self.heads[klass], (old[0], old[1], code))
            _discard(self.deadlines, (old[2], old[1], code, klass))
        queue = self.queues[key]
        if not queue:
            self._head[key] = None
            return
        rank, ticket = queue[0]
        deadline = self.where[ticket][2] + self.targets[code]
        self._head[key] = (rank, ticket, deadline)
        insort(self.heads[klass], (rank, ticket, code))
        insort(self.deadlines, (deadline, ticket, code, klass))

    # ------------------------------------------------------------------ queries

    def __contains__(self, ticket: int) -> bool:
        return ticket in self.where or ticket in self.held

    def __len__(self) -> int:
        return len(self.where) + len(self.held)

    def head(self, code: str, klass: str) -> tuple[float, int] | None:
        """(rank, ticket) at the front of a service queue, or None."""
        entry = self._head.get((code, klass))
        return None if entry is None else (entry[0], entry[1])

    def best_head(self, skills: Iterable[str], skillset: frozenset[str], klass: str, scan: bool) -> tuple[float, int] | None:
        """The smallest-rank head of class *klass* among *skills*.

        With *scan*, walk the global heads index until a served service turns up (cheap
        for windows that serve most services); otherwise look at each skill's head.
        """
        if scan:
            for rank, ticket, code in self.heads[klass]:
                if code in skillset:
                    return rank, ticket
            return None
        best = None
        for code in skills:
            entry = self._head.get((code, klass))
            if entry is not None and (best is None or entry[0] < best[0]):
                best = entry
        return None if best is None else (best[0], best[1])

    def overdue(self, skillset: frozenset[str], now: float, classes: tuple[str, ...] = CLASSES) -> int | None:
        """The served head that passed its target wait longest ago, or None."""
        for deadline, ticket, code, klass in self.deadlines:
            if deadline > now:
                return None
            if code in skillset and klass in classes:
                return ticket
        return None

    def direct_head(self, window: int) -> tuple[float, int] | None:
        queue = self.direct.get(window)
        return queue[0] if queue else None

    def ahead_of(self, ticket: int) -> int:
        """How many tickets wait before *ticket* in its service (both classes) or window queue."""
        if ticket in self.held:
            _, rank, key = self.held[ticket]
        else:
            rank, key, _ = self.where[ticket]
        if isinstance(key, int):
            return self.direct[key].bisect_left((rank, ticket)) if key in self.direct else 0
        code, entry, queues = key[0], (rank, ticket), self.queues
        return queues[(code, NORMAL)].bisect_left(entry) + queues[(code, PRIORITY)].bisect_left(entry)

    def waiting(self, code: str) -> int:
        """Tickets queued for service *code* (not counting held early check-ins)."""
        return sum(len(self.queues[(code, klass)]) for klass in CLASSES)

    def tickets(self) -> Iterator[int]:
        yield from self.where
        yield from self.held


def _discard(entries: list, entry: tuple) -> None:
    del entries[bisect_left(entries, entry)]
