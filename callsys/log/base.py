"""The event-log interface every store implements (the embedded file store today, Redis next).

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


class EventLog(ABC):
    """Durable, ordered records of one hall plus its newest snapshot."""

    hall_id: str

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

    @abstractmethod
    async def aclose(self) -> None:
        """Release the store. Safe to call twice."""
