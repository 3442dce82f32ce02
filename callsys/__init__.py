"""callsys: one merged queue of appointments, QR and kiosk tickets for a service hall.

The public names are re-exported here; the modules behind them are:

* :mod:`callsys.hall` — hall configuration (TOML -> immutable objects)
* :mod:`callsys.commands` / :mod:`callsys.events` — what is asked / what happened
* :mod:`callsys.engine` — the pure engine: ``decide`` and ``apply``
* :mod:`callsys.policy` — the calling rules (rank, interleave, wait threshold, skill order)
* :mod:`callsys.queues` — the indexed waiting room
* :mod:`callsys.errors` — every error, with a stable ``code``
* :mod:`callsys.identity` / :mod:`callsys.qrcodes` — resident ids and signed QR payloads
"""

from .commands import (BookSlot as BookSlot, Cancel as Cancel, CallNext as CallNext,
                       CallNumber as CallNumber, CheckIn as CheckIn, CloseWindow as CloseWindow,
                       Command as Command, FinishService as FinishService, FlagGreen as FlagGreen,
                       NoShow as NoShow, OpenWindow as OpenWindow, Park as Park, Pause as Pause,
                       ReassignSkills as ReassignSkills, Recall as Recall, Requeue as Requeue,
                       Reschedule as Reschedule, ResetDay as ResetDay, Resume as Resume,
                       ReturnTicket as ReturnTicket,
                       StartService as StartService, TakeNumber as TakeNumber, Transfer as Transfer)
from .engine import (EngineStatistics as EngineStatistics, Position as Position,
                     QueueEngine as QueueEngine, apply as apply, decide as decide)
from .errors import CallsysError as CallsysError, ConfigError as ConfigError, EngineError as EngineError
from .events import Event as Event, from_record as from_record, to_record as to_record
from .hall import Hall as Hall, hall_from_mapping as hall_from_mapping, load_hall as load_hall
from .state import HallState as HallState

__version__ = "0.1.0"
