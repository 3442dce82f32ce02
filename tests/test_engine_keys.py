"""Idempotency keys in the engine: a key is executed once a day, repeats answer the original.

The property at the end plays kiosks that send keyed take-number commands, a server that
crashes (losing what was not yet durable) and recovers from its log (from scratch or from
a snapshot), and clients that retry whatever they have no answer for: every key's ticket
is issued exactly once, every answer to a key names the same ticket, and replay of the
durable log equals the live state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsys import commands as cmd
from callsys import events as ev
from callsys.engine import QueueEngine
from callsys.errors import KeyReused, QueueEmpty, WindowClosed, WindowIdle
from callsys.hall import Hall
from callsys.keys import digest
from callsys.state import HallState

from conftest import hall_time
from engine_support import Desk


@pytest.fixture
def desk(demo_hall: Hall) -> Desk:
    return Desk(demo_hall, hall_time(9))


def test_a_repeated_key_issues_no_second_ticket(desk):
    first = desk.do(cmd.TakeNumber, service="BIZ", key="kiosk-1/1")
    marker, issued = first
    assert marker == ev.CommandKeyed(marker.at, "kiosk-1/1", "take_number", marker.digest, 1)
    before = desk.engine.snapshot()
    assert desk.do(cmd.TakeNumber, service="BIZ", key="kiosk-1/1") == []  # later, same key: nothing new
    assert desk.engine.snapshot() == before  # not even the time it came
    entry = desk.engine.repeat_of(cmd.TakeNumber(desk.tick(), "BIZ", key="kiosk-1/1"))
    assert entry.events == [issued] and entry.seq == desk.engine.state.seq
    assert desk.engine.statistics().totals["issued"] == 1


def test_without_a_key_every_command_counts(desk):
    desk.take("BIZ")
    desk.take("BIZ")
    assert desk.engine.statistics().totals["issued"] == 2


def test_a_key_belongs_to_one_command(desk):
    desk.do(cmd.TakeNumber, service="BIZ", key="k")
    error = desk.rejects(KeyReused, cmd.TakeNumber, service="SOC", key="k")  # other fields
    assert error.details == {"key": "k", "command": "take_number"}
    desk.rejects(KeyReused, cmd.OpenWindow, window=1, key="k")  # another command


def test_the_digest_ignores_time_and_key_only():
    assert digest(cmd.TakeNumber(1.0, "BIZ", key="a")) == digest(cmd.TakeNumber(99.0, "BIZ", key="b"))
    assert digest(cmd.TakeNumber(1.0, "BIZ")) != digest(cmd.TakeNumber(1.0, "BIZ", green=True))
    assert digest(cmd.CallNext(1.0, window=1)) != digest(cmd.CallNext(1.0, window=2))


def test_a_rejected_keyed_command_is_decided_again(desk):
    desk.take("BIZ")
    desk.rejects(WindowClosed, cmd.CallNext, window=1, key="clerk-1")
    desk.open(1)
    (marker, called) = desk.do(cmd.CallNext, window=1, key="clerk-1")
    assert called.kind == "ticket_called"
    assert desk.do(cmd.CallNext, window=1, key="clerk-1") == []  # the clerk's retry calls nobody else
    assert desk.engine.repeat_of(cmd.CallNext(desk.tick(), window=1, key="clerk-1")).events == [called]


def test_a_keyed_command_with_several_events_keeps_them_all(desk):
    desk.take("BIZ")
    desk.open(1)
    desk.call(1)
    events = desk.do(cmd.ResetDay, key="night")
    assert [e.kind for e in events] == ["command_keyed", "day_reset"]
    assert desk.engine.repeat_of(cmd.ResetDay(desk.tick(), key="night")).events == events[1:]


def test_the_night_forgets_the_day_s_keys(desk):
    desk.do(cmd.TakeNumber, service="BIZ", key="k")
    desk.do(cmd.ResetDay)
    assert desk.engine.state.keys == {}
    desk.until(hall_time(9, day=1))
    (_, issued) = desk.do(cmd.TakeNumber, service="BIZ", key="k")  # a new day: a new ticket
    assert issued.number == "A001" and issued.kind == "ticket_issued"


def test_keys_survive_snapshot_and_replay(desk, demo_hall):
    desk.open(1)
    desk.do(cmd.TakeNumber, service="BIZ", key="a")
    desk.do(cmd.CallNext, window=1, key="b")
    desk.do(cmd.TakeNumber, service="SOC", key="c")
    live = desk.engine.snapshot()
    replayed = QueueEngine.restore(demo_hall, None, desk.events)
    assert replayed.snapshot() == live
    data = msgpack.unpackb(msgpack.packb(live, use_bin_type=True), raw=False)
    restored = QueueEngine(demo_hall, HallState.from_snapshot(demo_hall, data))
    assert restored.snapshot() == live
    assert restored.repeat_of(cmd.CallNext(desk.tick(), window=1, key="b")).events == \
        desk.engine.repeat_of(cmd.CallNext(desk.tick(), window=1, key="b")).events


def test_seq_counts_the_folded_events(desk):
    desk.take("BIZ")
    desk.do(cmd.TakeNumber, service="BIZ", key="k")
    assert desk.engine.state.seq == len(desk.events) == 3


# ---------------------------------------------------------------------- the property


@dataclass
class Server:
    """The server's execute path over a log that loses what was not yet committed on a crash."""

    hall: Hall
    durable: list[ev.Event] = field(default_factory=list)
    pending: list[ev.Event] = field(default_factory=list)
    snapshot: tuple[int, dict] | None = None
    engine: QueueEngine = None

    def __post_init__(self) -> None:
        self.engine = QueueEngine(self.hall)

    def execute(self, command: cmd.Command) -> tuple[list[ev.Event], int]:
        """(the answer's events, the seq they are durable at) — as callsys.server does."""
        original = self.engine.repeat_of(command)
        if original is not None:
            return original.events, original.seq
        events = self.engine.decide(command)
        self.engine.apply_all(events)
        self.pending.extend(events)
        return (events[1:] if command.key is not None else events), self.engine.state.seq

    def commit(self) -> None:
        self.durable.extend(self.pending)
        self.pending.clear()

    def save_snapshot(self) -> None:
        self.commit()
        data = msgpack.unpackb(msgpack.packb(self.engine.snapshot(), use_bin_type=True), raw=False)
        self.snapshot = (len(self.durable), data)

    def crash(self) -> None:
        """kill -9: memory is gone; recover from the snapshot (if any) and the durable log."""
        self.pending.clear()
        seq, data = self.snapshot if self.snapshot else (0, None)
        state = HallState.from_snapshot(self.hall, data) if data else HallState(self.hall)
        state.seq = seq
        self.engine = QueueEngine(self.hall, state)
        self.engine.apply_all(self.durable[seq:])


OPS = st.lists(st.tuples(st.sampled_from(["send", "send", "retry", "retry", "commit", "commit", "crash",
                                          "snapshot", "call"]),
                         st.integers(0, 5)), min_size=5, max_size=80)


@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_each_key_s_ticket_is_issued_exactly_once(demo_hall, ops):
    server = Server(demo_hall)
    now = hall_time(9)
    server.execute(cmd.OpenWindow(now, window=1))
    server.commit()
    outstanding: dict[str, tuple[str, int, int]] = {}  # key -> (service, seq the answer waits for, epoch)
    answers: dict[str, set[tuple[int, str]]] = {}  # key -> every (ticket, number) answered
    sent = epoch = 0  # epoch: crashes so far (a crash breaks every connection: no answer comes)

    def send(key: str, service: str) -> None:
        events, seq = server.execute(cmd.TakeNumber(now, service, key=key))
        outstanding[key] = (service, seq, epoch)

    def acknowledge() -> None:
        for key, (service, seq, sent_in) in list(outstanding.items()):
            if sent_in == epoch and seq <= len(server.durable):  # durable: the answer reaches the client
                (issued,) = server.engine.repeat_of(cmd.TakeNumber(now, service, key=key)).events
                answers.setdefault(key, set()).add((issued.ticket, issued.number))
                del outstanding[key]

    for op, n in ops:
        now += 7
        if op == "send":
            sent += 1
            send(f"kiosk-{n}/{sent}", ("BIZ", "SOC", "PERMIT")[n % 3])
        elif op == "retry" and outstanding:
            key = sorted(outstanding)[n % len(outstanding)]
            send(key, outstanding[key][0])
        elif op == "retry" and answers:  # a retry after the answer came (it was lost on the way)
            key = sorted(answers)[n % len(answers)]
            send(key, _service_of(server.durable, key))
            acknowledge()
        elif op == "commit":
            server.commit()
            acknowledge()
        elif op == "crash":
            server.crash()
            epoch += 1
        elif op == "snapshot":
            server.save_snapshot()
            acknowledge()
        elif op == "call":
            try:
                server.execute(cmd.FinishService(now, window=1))
            except WindowIdle:
                pass
            try:
                server.execute(cmd.CallNext(now, window=1, key=f"clerk/{sent}/{n}"))
            except QueueEmpty:
                pass
    for _ in range(3):  # clients retry until they hear back (one retry after a commit is enough)
        if not outstanding:
            break
        now += 7
        for key, (service, _, _) in list(outstanding.items()):
            send(key, service)
        server.commit()
        acknowledge()

    assert not outstanding
    server.commit()
    issued = Counter(e.ticket for e in server.durable if e.kind == "ticket_issued")
    keyed = [e for e in server.durable if e.kind == "command_keyed" and e.command == "take_number"]
    assert len(keyed) == len({e.key for e in keyed}) == len(issued)  # one ticket per key, none without
    for key, seen in answers.items():
        assert len(seen) == 1, f"key {key} answered with {seen}"
    numbers = [t for t, _ in (next(iter(s)) for s in answers.values())]
    assert len(numbers) == len(set(numbers))
    assert QueueEngine.restore(demo_hall, None, server.durable).snapshot() == server.engine.snapshot()


def _service_of(log: list[ev.Event], key: str) -> str:
    """The service the command with *key* asked for (from its ticket_issued event)."""
    for i, e in enumerate(log):
        if e.kind == "command_keyed" and e.key == key:
            return log[i + 1].service
    raise AssertionError(key)
