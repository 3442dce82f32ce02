"""Webhooks against a receiver on 127.0.0.1: every ticket event posted once acknowledged, in
log order, signed; failed deliveries retried; a receiver that hangs holds up nothing but its
own deliveries; a server restart in the middle loses nothing (repeats only by event id)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from callsys.clock import ScaledClock
from callsys.events import SlotBooked, SlotRescheduled, TicketCalled, TicketCancelled, TicketIssued, WindowOpened
from callsys.errors import ConfigError
from callsys.hall import Hall, Integration, hall_from_mapping, read_toml
from callsys.server import CallsysServer, ServerSettings, serve_callsys
from callsys.server.webhooks import Cursors, Target, payload, post, signature, targets_of
from conftest import CONFIG
from server_support import SECRET, START, client, guard

HOOK_SECRET = b"hook-secret"


@dataclass
class Receiver:
    """An HTTP receiver of webhooks: answers 503 to the first *fail* posts, leaves posts
    unanswered while *hang* is set (closing them when it is cleared), acknowledges the rest.

    Attributes:
        received: every body posted, in arrival order (acknowledged or not).
        acked: the bodies acknowledged (200), in order.
    """

    fail: int = 0
    hang: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    acked: list[dict[str, Any]] = field(default_factory=list)
    signatures_ok: bool = True
    port: int = 0
    changed: trio.Event = field(default_factory=trio.Event)
    released: trio.Event = field(default_factory=trio.Event)

    async def serve(self, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._connection, listeners)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?from=callsys"

    def release(self) -> None:
        self.hang = False
        self.released.set()
        self.released = trio.Event()

    def _note(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, condition) -> None:
        while not condition():
            await self.changed.wait()

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        request = None
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif type(event) is h11.Request:
                    request = event
                elif type(event) is h11.Data:
                    body += event.data
                elif type(event) is h11.EndOfMessage:
                    break
            assert request is not None and request.method == b"POST" and request.target == b"/hook?from=callsys"
            headers = dict(request.headers)
            self.signatures_ok &= hmac.compare_digest(headers[b"x-callsys-signature"].decode(),
                                                      signature(HOOK_SECRET, body))
            assert headers[b"content-type"] == b"application/json"
            message = json.loads(body)
            self.received.append(message)
            self._note()
            if self.hang:
                await self.released.wait()
                return  # closed without an answer: not acknowledged
            status = 200
            if self.fail > 0:
                self.fail -= 1
                status = 503
            await stream.send_all(conn.send(h11.Response(status_code=status, headers=[("content-length", "0")]))
                                  + conn.send(h11.EndOfMessage()))
            if status == 200:
                self.acked.append(message)
                self._note()


async def serve(nursery: trio.Nursery, hall: Hall, store: Path, receiver: Receiver) -> tuple[CallsysServer, trio.Event]:
    """A server for *hall* with an integration client "wechat" posting to *receiver* (retries at
    once: the test waits for deliveries, not time)."""
    stopped = trio.Event()
    hall = replace(hall, integrations={**hall.integrations, "wechat": Integration(
        "wechat", "wechat-test-key", 50.0, 100, receiver.url, HOOK_SECRET.decode())})
    settings = ServerSettings(phone_refresh_s=math.inf, webhook_retry_first_s=0.001, webhook_retry_max_s=0.01)

    async def run(task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as own:
            task_status.started(await own.start(partial(
                serve_callsys, hall, f"file:{store}", port=0, clock=ScaledClock(START), secret=SECRET,
                settings=settings)))
        stopped.set()

    return await nursery.start(run), stopped


async def take(server: CallsysServer, n: int) -> list[dict[str, Any]]:
    async with client(server, "kiosk") as kiosk:
        return [await kiosk.request("take_number", service="SOC") for _ in range(n)]


async def call_and_finish(server: CallsysServer, window: int = 7) -> dict[str, Any]:
    async with client(server, "clerk", window=window) as clerk:
        if (await clerk.request("window"))["status"] == "closed":
            await clerk.request("open_window")
        called = await clerk.request("call_next")
        await clerk.request("finish")
    return called


@guard(60)
async def test_deliveries_are_retried_in_order_and_signed(nursery, demo_hall, tmp_path):
    receiver = await nursery.start(Receiver(fail=3).serve)
    server, _ = await serve(nursery, demo_hall, tmp_path / "hall.db", receiver)
    tickets = await take(server, 3)
    await call_and_finish(server)
    async with client(server, "kiosk") as kiosk:
        await kiosk.request("cancel", ticket=tickets[2]["ticket"])
    await receiver.until(lambda: len(receiver.acked) == 6)
    events = [(m["event"], m["ticket"]) for m in receiver.acked]
    first, second, third = (t["ticket"] for t in tickets)
    assert events == [("issued", first), ("issued", second), ("issued", third), ("called", first),
                      ("finished", first), ("cancelled", third)]
    ids = [m["id"] for m in receiver.acked]
    assert ids == sorted(ids) and len(set(ids)) == 6
    assert ids[0] == tickets[0]["seq"]  # the id is the event's log seq
    assert receiver.signatures_ok
    assert receiver.received[:4] == [receiver.acked[0]] * 4  # the first one three times refused, then acknowledged
    called = receiver.acked[3]
    assert called["window"] == 7 and called["number"] == tickets[0]["number"] and called["hall"] == "demo"
    finished = receiver.acked[4]
    assert finished["number"] == tickets[0]["number"] and finished["service"] == "SOC"  # from the ticket
    while server.webhooks.cursors.seqs["wechat"] < ids[-1]:  # the server saves the cursor after the answer
        await trio.sleep(0.001)
    assert server.webhooks.failures == {"wechat": 3} and server.webhooks.attempts == {"wechat": 9}
    assert json.loads((tmp_path / "hall.db.webhooks.json").read_text()) == server.webhooks.cursors.seqs
    server.shutdown()


@guard(60)
async def test_a_hanging_receiver_blocks_nothing_and_a_restart_loses_nothing(nursery, demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    receiver = await nursery.start(Receiver().serve)
    server, stopped = await serve(nursery, demo_hall, store, receiver)
    first = await take(server, 2)
    await receiver.until(lambda: len(receiver.acked) == 2)

    receiver.hang = True  # deliveries now go unanswered: the queue goes on meanwhile
    more = await take(server, 3)
    await call_and_finish(server)
    await receiver.until(lambda: len(receiver.received) == 3)  # the first of them, waiting for its answer
    assert len(receiver.acked) == 2
    server.shutdown()  # the unanswered delivery is cancelled: not acknowledged
    await stopped.wait()
    receiver.release()

    server, stopped = await serve(nursery, demo_hall, store, receiver)  # resumes from the saved cursor
    last = await take(server, 1)
    await receiver.until(lambda: len(receiver.acked) == 2 + 3 + 2 + 1)
    tids = [t["ticket"] for t in first + more + last]
    assert [(m["event"], m["ticket"]) for m in receiver.acked] == [
        *(("issued", t) for t in tids[:5]), ("called", tids[0]), ("finished", tids[0]), ("issued", tids[5])]
    ids = [m["id"] for m in receiver.acked]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # acknowledged once each, in order
    # the only repeat is the delivery the restart cut off, with the same id and body
    repeats = [m for m in receiver.received if receiver.received.count(m) > 1]
    assert repeats == [receiver.acked[2]] * 2
    assert receiver.signatures_ok
    server.shutdown()


def test_payload_carries_public_fields_only():
    issued = TicketIssued(at=1.5, ticket=4, number="C004", service="SOC", channel="kiosk", green=False,
                          klass="normal", rank=1.5, day=0, seq=4)
    assert payload("demo", 9, issued) == {
        "id": 9, "event": "issued", "kind": "ticket_issued", "hall": "demo", "at": 1.5, "ticket": 4, "number": "C004",
        "service": "SOC", "channel": "kiosk", "green": False, "klass": "normal"}
    called = payload("demo", 10, TicketCalled(at=2.0, ticket=4, window=7, number="C004", service="SOC",
                                              by_number=False))
    assert called["event"] == "called" and called["window"] == 7 and "rank" not in called
    assert payload("demo", 11, TicketCancelled(at=3.0, ticket=4))["event"] == "cancelled"
    assert payload("demo", 12, WindowOpened(at=3.0, window=7)) is None  # not a ticket event
    booked = payload("demo", 13, SlotBooked(at=4.0, ticket=5, service="SOC", slot_start=10.0, slot_end=20.0, green=True,
                                            person="f00dfeed" * 4, birth_year=1950, green_reason="senior"))
    assert booked == {"id": 13, "event": "booked", "kind": "slot_booked", "hall": "demo", "at": 4.0, "ticket": 5,
                      "service": "SOC", "green": True, "slot_start": 10.0, "slot_end": 20.0}  # nothing of the person
    moved = payload("demo", 14, SlotRescheduled(at=5.0, ticket=5, slot_start=30.0, slot_end=40.0))
    assert moved["event"] == "rescheduled" and moved["slot_start"] == 30.0


def test_signature_is_hmac_sha256_of_the_body():
    body = b'{"id":1}'
    assert signature(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_target_and_cursors_refuse_what_they_cannot_use(tmp_path):
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        Target("x", "ftp://example.org/hook", b"")
    bad = tmp_path / "hall.db.webhooks.json"
    bad.write_text("not json")
    with pytest.raises(ValueError, match="delete the file"):
        Cursors.for_store(f"file:{tmp_path / 'hall.db'}")


@guard()
async def test_post_reports_a_receiver_that_is_not_there():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()  # nothing listens there now
    with pytest.raises(OSError):
        await post(f"http://127.0.0.1:{port}/hook", b"{}", [], 10.0)


@pytest.mark.parametrize("client, problem", [
    ({"webhook_url": "ftp://example.org/hook", "webhook_secret": "s3cret"}, "integrations.a.webhook_url"),
    ({"webhook_url": "example.org/hook", "webhook_secret": "s3cret"}, "integrations.a.webhook_url"),
    ({"webhook_url": "https://example.org/hook"}, "integrations.a.webhook_secret"),
])
def test_the_hall_file_refuses_a_webhook_it_cannot_post_or_sign(client, problem):
    data = read_toml(CONFIG / "demo.toml")
    data["integrations"] = {"a": {"key": "k" * 20, **client}}
    with pytest.raises(ConfigError) as caught:
        hall_from_mapping(data, source="x.toml")
    assert problem in str(caught.value)
    data["integrations"]["a"].update(webhook_url="https://example.org/hook", webhook_secret="s3cret")
    assert targets_of(hall_from_mapping(data, source="x.toml").integrations) == [
        Target("a", "https://example.org/hook", b"s3cret")]
