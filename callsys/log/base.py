"""The event-log interface every store implements: the embedded file store (:mod:`.sqlite`) and Redis (:mod:`.redis`).

A store keeps one hall's events as opaque records numbered 1, 2, 3, ... (``seq``) and the
newest snapshot. It knows nothing of events or engines: :class:`~callsys.log.journal.Journal`
encodes, batches and recovers on top of it, so a new backend only implements this class
and passes ``tests/test_log_conformance.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from ..errors import CallsysError


class LogError(CallsysError):
    """The store failed or refused: unreachable, corrupt, or owned by another hall.

    The fault is the environment's (disk, permissions, configuration), not a client's; a
    server that sees it on a commit stops, because its memory is then ahead of its log.
    """

    code = "log_error"


class StoreInUse(LogError):
    """Another process (or another open in this one) holds the store. The operator's to resolve.

    Attributes:
        pid: the holder's process id, or None when it could not be read.
    """

    code = "store_in_use"

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class StoreRefused(LogError):
    """The file is not a store this process may use: empty, another application's, another
    hall's, a newer schema version, or not writable. Nothing was written to it."""

    code = "store_refused"


class StoreDamaged(LogError):
    """A record or the snapshot cannot be read back, or ``seq`` has a gap. The fault is the
    disk's or whoever edited the file; ``callsys store check`` reports the whole damage.

    Attributes:
        seq: the seq of the damaged (or first missing) record, or of the damaged snapshot.
    """

    code = "store_damaged"

    def __init__(self, message: str, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class StoreFenced(LogError):
    """This process no longer owns the hall: its lease in Redis expired or another process
    took it (a newer fencing token). Nothing it writes now is accepted; it stops, and the
    owner (a standby that took over) serves the hall."""

    code = "store_fenced"


class StoreLost(LogError):
    """The store's files were removed or replaced while it was open: what is written now
    would not survive a restart, so nothing more may be acknowledged."""

    code = "store_lost"


class EventLog(ABC):
    """Durable, ordered records of one hall plus its newest snapshot.

    Attributes:
        hall_id: the hall whose records these are.
        leased: True when several processes may open the store at once and one owner is
            chosen by a lease (Redis, :mod:`.redis`: the others follow as standbys,
            :mod:`callsys.server.standby`); False when opening it makes this process its only
            writer (the file store's lock).
    """

    hall_id: str
    leased: bool = False

    @property
    def name(self) -> str:
        """How messages name this store (its path, its URL)."""
        return type(self).__name__

    @abstractmethod
    async def append(self, records: Sequence[bytes]) -> int:
        """Store *records* after the last one, atomically; return the last ``seq``.

        Returns only once the records are durable (survive kill -9 and power loss as far
        as the store can promise).
        """

    @abstractmethod
    async def read(self, after: int, *, limit: int) -> list[tuple[int, bytes]]:
        """Up to *limit* records with ``seq > after``, in order."""

    @abstractmethod
    async def last_seq(self) -> int:
        """The ``seq`` of the newest record (0 when empty)."""

    @abstractmethod
    async def save_snapshot(self, seq: int, data: bytes) -> None:
        """Keep *data* as the state after record *seq* (older snapshots may be dropped)."""

    @abstractmethod
    async def load_snapshot(self) -> tuple[int, bytes] | None:
        """The newest ``(seq, data)`` snapshot, or None."""

    async def verify(self) -> None:
        """Raise :class:`StoreLost` if the store can no longer keep what it is given.

        The journal calls it while idle (commits check by themselves); the default does nothing.
        """

    def unavailable(self) -> str | None:
        """Why the store cannot take a write now (its server does not answer), or None.

        A synchronous look at what the store saw last, for ``/readyz``; the default (a
        store on local files) is always available.
        """
        return None

    @abstractmethod
    async def aclose(self) -> None:
        """Release the store. Safe to call twice."""
