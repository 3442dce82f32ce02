"""Checking a store end to end: what ``callsys store check`` runs.

Recovery reads only the newest snapshot and the records after it; the check reads
everything, from one consistent point in time, beside a running server:

* every record decodes into a known event of the right shape, and seqs run 1, 2, 3 ...
  without a gap;
* the snapshot decodes, and equals the state that replaying the log up to its seq
  gives (so a restart from it and a replay from scratch agree);
* the whole log replays onto the hall's engine.

The first damage found ends the check; its :class:`~callsys.log.StoreDamaged` line names
the seq, as recovery's would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgpack

from ..engine import QueueEngine
from ..hall import Hall
from .base import StoreDamaged
from .journal import replay, restore_state
from .sqlite import FileLog


@dataclass(slots=True)
class CheckReport:
    """The result of :func:`check_store`; ``damage`` is None when the store is healthy."""

    path: str
    hall: str
    schema_version: int
    marked: bool  # carries callsys's application_id (False: written before it existed)
    bytes: int
    records: int
    first_seq: int
    last_seq: int
    snapshot_seq: int | None
    tickets: int  # in the state after the replay (up to the damage, if any)
    damage: str | None = None
    damaged_seq: int | None = None

    @property
    def healthy(self) -> bool:
        return self.damage is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


async def check_store(path: str | Path, hall: Hall) -> CheckReport:
    """Verify the store at *path* of *hall* (see the module docstring).

    Raises:
        StoreRefused: there is no callsys store of *hall* at *path* (nothing to check).
    """
    log, info = await FileLog.open_readonly(path, hall.id)
    try:
        records, first, last = await log.count()
        snap = await log.load_snapshot()
        report = CheckReport(str(path), hall.id, info.schema_version, not info.legacy, Path(path).stat().st_size,
                             records, first, last, snap[0] if snap else None, 0)
        engine = QueueEngine(hall)
        try:
            seq = 0 if snap is None else await _check_snapshot(log, engine, hall, *snap)
            await replay(log, engine, seq)
        except StoreDamaged as exc:
            report.damage, report.damaged_seq = str(exc), exc.seq
        report.tickets = len(engine.state.tickets)
        return report
    finally:
        await log.aclose()


async def _check_snapshot(log: FileLog, engine: QueueEngine, hall: Hall, seq: int, data: bytes) -> int:
    """Replay *engine* up to the snapshot at *seq* and compare the two states; returns *seq*.

    The saved state is compared as recovery would restore it (older snapshots lack fields
    that restoring fills in), not byte for byte.
    """
    restored = restore_state(log.name, hall, seq, data)
    restored.seq = seq  # as recovery sets it
    reached = await replay(log, engine, 0, upto=seq)
    if reached < seq:
        raise StoreDamaged(f"store {log.name} is damaged at seq {seq}: the snapshot is newer than the "
                           f"last record ({reached})", seq)
    replayed, saved = _plain(engine.snapshot()), _plain(restored.snapshot())
    if replayed != saved:
        parts = sorted(k for k in set(replayed) | set(saved) if replayed.get(k) != saved.get(k))
        raise StoreDamaged(f"store {log.name} is damaged at seq {seq}: the snapshot differs from the replay "
                           f"of the log up to it (in {', '.join(map(str, parts))})", seq)
    return seq


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """*state* as msgpack gives it back (tuples become lists), so two states compare by value."""
    return msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False)
