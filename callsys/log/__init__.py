"""The durable event log: one interface (:class:`EventLog`), pluggable stores, and the
:class:`Journal` that group-commits, snapshots and recovers on top of any store."""

from .base import (EventLog as EventLog, LogError as LogError, StoreDamaged as StoreDamaged,
                   StoreFenced as StoreFenced,
                   StoreInUse as StoreInUse, StoreLost as StoreLost, StoreRefused as StoreRefused)
from .journal import (Journal as Journal, Pending as Pending, decode as decode, encode as encode,
                      open_journal as open_journal, open_store as open_store)
from .sqlite import FileLog as FileLog
