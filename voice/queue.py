"""One speaker group's announcement queue: the order rule every player follows.

A speaker group (the speakers of one zone) says one announcement at a time, so calls
never talk over each other. The rule, which ``callsys speaker`` uses and the speaker page
mirrors in JavaScript:

* **Order follows the calls**: announcements play in ``seq`` order (the order their events
  became durable), whatever order they arrive in.
* **A recall merges**: an ``announce`` for a window and number that is already queued (a
  clerk pressed "recall" before the first call was even said) does not play twice: it
  keeps the queued entry's place and gives it the newer recall count.
* **The one being said is not merged**: a recall that comes while its call is playing is
  queued again, since the clerk asked for it after the citizen heard the start of it.
* **No overlap**: :meth:`AnnouncementQueue.start` hands out the next announcement only
  when the previous one is :meth:`~AnnouncementQueue.done`.
* An announcement delivered twice (the same ``seq``, e.g. around a reconnect) plays once.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, Mapping

SEEN_SEQS: Final = 4096  # seqs remembered to drop a redelivered announce (hours of one zone's calls)


@dataclass(slots=True)
class Entry:
    """A queued announcement."""

    seq: int
    window: int
    number: str
    recall: int
    message: dict[str, Any] = field(compare=False, repr=False)
    merged: int = 0  # recalls merged into it

    @property
    def call(self) -> tuple[int, str]:
        return self.window, self.number


class AnnouncementQueue:
    """The announcements of one speaker group, played one at a time in ``seq`` order."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []  # sorted by seq
        self._seqs: set[int] = set()  # the last SEEN_SEQS seqs offered (queued, playing or played)
        self._seq_order: deque[int] = deque()
        self.playing: Entry | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(self._entries)

    def offer(self, message: Mapping[str, Any]) -> str:
        """Take an ``announce`` push.

        Returns:
            ``"queued"`` (a new entry), ``"merged"`` (a recall of a queued entry) or
            ``"duplicate"`` (this ``seq`` was offered before).
        """
        seq = message["seq"]
        if seq in self._seqs:
            return "duplicate"
        self._seqs.add(seq)
        self._seq_order.append(seq)
        if len(self._seq_order) > SEEN_SEQS:
            self._seqs.discard(self._seq_order.popleft())
        call = (message["window"], message["number"])
        for entry in self._entries:
            if entry.call == call:
                if message["recall"] > entry.recall:
                    entry.recall = message["recall"]
                    entry.message = {**dict(message), "seq": entry.seq}
                entry.merged += 1
                return "merged"
        entry = Entry(seq, message["window"], message["number"], message["recall"], dict(message))
        bisect.insort(self._entries, entry, key=lambda e: e.seq)
        return "queued"

    def start(self) -> Entry | None:
        """The next announcement to say, now playing; None if one is playing or none is queued."""
        if self.playing is not None or not self._entries:
            return None
        self.playing = self._entries.pop(0)
        return self.playing

    def done(self) -> None:
        """The playing announcement has been said."""
        self.playing = None
