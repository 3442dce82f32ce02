"""Idempotency keys: a command sent twice is executed once.

A kiosk whose connection breaks after sending ``take_number`` cannot know whether it got
a number. So every command may carry a client-chosen ``key`` (at most
:data:`~callsys.commands.MAX_KEY` characters, unique for the client's day), and the rule is:

* the first command with a key is executed as usual; its events are preceded by one
  :class:`~callsys.events.CommandKeyed` event naming the key, the command and how many
  events follow — so the key is in the event log, durable with the command itself;
* folding that event (live, or on replay after a crash) records a :class:`KeyEntry`:
  the command's kind, a digest of its fields, the log seq of its last event and the events;
* a repeat of the key (same kind, same fields — only ``at`` may differ) causes no new
  event: the server answers it with the recorded events, once they are durable;
* a repeat with another command or other fields is refused (:class:`~callsys.errors.KeyReused`);
* a command the engine rejects records nothing, so its retry is decided afresh;
* keys are kept for the hall's day: the night's ``day_reset`` forgets them.

The table lives in the hall state (:attr:`HallState.keys`), is part of snapshots, and is
rebuilt by replay, so a repeat after a kill -9 and restart answers as before the crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Callable

import msgpack

if TYPE_CHECKING:
    from .commands import Command
    from .events import Event


@dataclass(slots=True)
class KeyEntry:
    """What a key's first command did.

    Attributes:
        key: the idempotency key.
        command: the command's kind (``take_number``...).
        digest: :func:`digest` of the command's fields.
        seq: the log seq of the command's last event (the reply's ``seq``).
        events: the command's events, in order (without the ``command_keyed`` marker).
    """

    key: str
    command: str
    digest: str
    seq: int
    events: list["Event"] = field(default_factory=list)


def digest(command: "Command") -> str:
    """A stable fingerprint of *command*'s kind and fields except ``at`` and ``key``.

    Stable across processes (unlike ``hash``), so it can live in the event log: a
    BLAKE2b-64 of the msgpack encoding of the kind and the field values.
    """
    getter = _GETTERS.get(type(command)) or _getter(type(command))
    return hashlib.blake2b(_packer.pack((command.kind, getter(command))), digest_size=8).hexdigest()


def _getter(cls: type) -> Callable[["Command"], object]:
    """Reads the fields *cls*'s digest covers (one value, or a tuple of several); cached."""
    names = [f.name for f in fields(cls) if f.name not in ("at", "key")]
    getter = _GETTERS[cls] = attrgetter(*names) if names else (lambda command: ())
    return getter


_GETTERS: dict[type, Callable[["Command"], object]] = {}
_packer = msgpack.Packer(use_bin_type=True)
