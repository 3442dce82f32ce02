"""The public surface of ``callsys``: names re-exported by the package, and the wire shapes
of commands and events that the event log, the protocol and the simulator depend on.

Changing these breaks other code and stored logs; update the lists here on purpose only.
"""

from __future__ import annotations

import dataclasses
import types

import pytest

import callsys
from callsys import commands, engine, errors, events, hall, state

PUBLIC = {
    # commands
    "Command", "TakeNumber", "BookSlot", "CheckIn", "Cancel", "Requeue", "ReturnTicket", "CallNext",
    "CallNumber", "Recall", "NoShow", "StartService", "FinishService", "Transfer", "Park", "Pause",
    "Resume", "OpenWindow", "CloseWindow", "ReassignSkills", "ResetDay", "Reschedule", "FlagGreen",
    # engine
    "QueueEngine", "decide", "apply", "Position", "EngineStatistics", "HallState",
    # events
    "Event", "to_record", "from_record",
    # hall
    "Hall", "load_hall", "hall_from_mapping",
    # errors
    "CallsysError", "ConfigError", "EngineError",
}

COMMAND_FIELDS = {
    "take_number": ("TakeNumber", ["at", "service", "channel", "green", "person", "birth_year", "green_reason"]),
    "book_slot": ("BookSlot", ["at", "service", "slot_start", "green", "person", "birth_year", "green_reason"]),
    "reschedule": ("Reschedule", ["at", "ticket", "slot_start"]),
    "check_in": ("CheckIn", ["at", "ticket"]),
    "cancel": ("Cancel", ["at", "ticket"]),
    "requeue": ("Requeue", ["at", "ticket"]),
    "return_ticket": ("ReturnTicket", ["at", "ticket"]),
    "call_next": ("CallNext", ["at", "window"]),
    "call_number": ("CallNumber", ["at", "window", "ticket"]),
    "recall": ("Recall", ["at", "window"]),
    "no_show": ("NoShow", ["at", "window"]),
    "start": ("StartService", ["at", "window"]),
    "finish": ("FinishService", ["at", "window", "rating", "score"]),
    "transfer": ("Transfer", ["at", "window", "service", "to_window"]),
    "park": ("Park", ["at", "window"]),
    "flag_green": ("FlagGreen", ["at", "window", "ticket"]),
    "pause": ("Pause", ["at", "window"]),
    "resume": ("Resume", ["at", "window"]),
    "open_window": ("OpenWindow", ["at", "window", "clerk"]),
    "close_window": ("CloseWindow", ["at", "window"]),
    "reassign": ("ReassignSkills", ["at", "window", "skills"]),
    "reset_day": ("ResetDay", ["at"]),
}

EVENT_FIELDS = {
    "ticket_issued": ["at", "ticket", "number", "service", "channel", "green", "klass", "rank", "day", "seq",
                      "person", "birth_year", "green_reason", "closing_warning"],
    "slot_booked": ["at", "ticket", "service", "slot_start", "slot_end", "green", "person", "birth_year",
                    "green_reason"],
    "slot_rescheduled": ["at", "ticket", "slot_start", "slot_end"],
    "green_flagged": ["at", "ticket", "by_window", "klass", "rank"],
    "checked_in": ["at", "ticket", "number", "klass", "rank", "not_before", "day", "seq", "late"],
    "ticket_cancelled": ["at", "ticket"],
    "ticket_called": ["at", "ticket", "window", "number", "service", "by_number"],
    "ticket_recalled": ["at", "ticket", "window", "number", "recalls"],
    "ticket_no_show": ["at", "ticket", "window", "clerk"],
    "ticket_requeued": ["at", "ticket", "rank"],
    "service_started": ["at", "ticket", "window"],
    "service_finished": ["at", "ticket", "window", "rating", "score", "clerk"],
    "ticket_transferred": ["at", "ticket", "from_window", "service", "to_window", "clerk"],
    "ticket_parked": ["at", "ticket", "window"],
    "ticket_returned": ["at", "ticket", "window"],
    "window_opened": ["at", "window", "clerk"],
    "window_closed": ["at", "window"],
    "window_paused": ["at", "window"],
    "window_resumed": ["at", "window"],
    "skills_reassigned": ["at", "window", "skills"],
    "day_reset": ["at", "expired"],
    "command_keyed": ["at", "key", "command", "digest", "events"],
}


def _exported() -> set[str]:
    return {name for name, value in vars(callsys).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_is_importable_and_real(name):
    value = getattr(callsys, name)
    assert value.__module__.startswith("callsys.")
    assert not value.__name__.startswith("_")


def test_nothing_else_is_exported():
    assert _exported() == PUBLIC


def test_star_import_brings_the_public_names():
    namespace: dict = {}
    exec("from callsys import *", namespace)
    exported = {n for n, v in namespace.items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert exported == PUBLIC


def test_version():
    assert callsys.__version__.count(".") == 2


@pytest.mark.parametrize("module, names", [
    (engine, ["QueueEngine", "decide", "apply", "Position", "EngineStatistics"]),
    (errors, ["CallsysError", "ConfigError", "EngineError", "QueueEmpty", "WindowBusy", "HallClosed"]),
    (hall, ["Hall", "Window", "Service", "Policy", "load_hall", "hall_from_mapping", "compile_hall"]),
    (state, ["HallState", "Ticket", "WindowState", "apply"]),
    (events, ["EVENTS", "to_record", "from_record", "CommandKeyed"]),
    (errors, ["KeyReused"]),
    (commands, ["COMMANDS"]),
])
def test_module_names_other_code_uses(module, names):
    for name in names:
        assert hasattr(module, name), f"{module.__name__}.{name}"
    if hasattr(module, "__all__"):
        assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("kind", COMMAND_FIELDS)
def test_command_shape(kind):
    name, fields = COMMAND_FIELDS[kind]
    cls = commands.COMMANDS[kind]
    assert cls.__name__ == name and cls is getattr(callsys, name)
    assert [f.name for f in dataclasses.fields(cls) if f.name != "key"] == fields
    key = next(f for f in dataclasses.fields(cls) if f.name == "key")
    assert key.kw_only and key.default is None  # every command may carry an idempotency key


def test_no_unpinned_commands_or_events():
    assert set(commands.COMMANDS) == set(COMMAND_FIELDS)
    assert set(events.EVENTS) == set(EVENT_FIELDS)


@pytest.mark.parametrize("kind", EVENT_FIELDS)
def test_event_shape(kind):
    cls = events.EVENTS[kind]
    assert cls.kind == kind
    assert [f.name for f in dataclasses.fields(cls)] == EVENT_FIELDS[kind]
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
