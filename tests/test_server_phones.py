"""Many phones following their tickets while the head of their queue moves; phones never
take the last connections from the hall's devices.

The periodic refresh is off (``phone_refresh_s`` infinite): each test runs the refresh
rounds itself (:meth:`Hub.refresh_phones`, or :meth:`Hub.phone_round` step by step), so
what a phone receives never depends on timing. "Nothing more arrived" is checked once
every task is blocked: the pushes a round queued have been written and read by then.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from callsys.client import Client, RequestFailed
from callsys.server import ServerSettings
from callsys.server.limits import Admission
from callsys.server.settings import MAX_CONNECTIONS
from server_support import client, guard, start_server

PHONES = 60  # phones on one service (SOC)
FAST = {"rate_per_s": 1e6, "rate_burst": 10**6}  # the kiosk sends as fast as the server answers


def _pending(c: Client) -> int:
    """Pushes *c* received that the test has not read yet."""
    return c._push_recv.statistics().current_buffer_used


async def _nothing_more(phones: list[Client]) -> None:
    await wait_all_tasks_blocked()
    assert [_pending(p) for p in phones] == [0] * len(phones)


async def _issue(kiosk: Client, service: str, count: int) -> list[dict[str, Any]]:
    return [await kiosk.request("take_number", service=service) for _ in range(count)]


async def _phones(stack: AsyncExitStack, server, tickets: list[dict[str, Any]]) -> list[Client]:
    return [await stack.enter_async_context(client(server, "phone", ticket=t["ticket"], secret=t["secret"]))
            for t in tickets]


@guard(60)
async def test_many_phones_get_every_change_of_their_own_ticket_and_nothing_else(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", **FAST)
    hub = server.hub
    async with AsyncExitStack() as stack:
        kiosk = await stack.enter_async_context(client(server, "kiosk"))
        clerks = [await stack.enter_async_context(client(server, "clerk", window=w)) for w in (7, 8)]
        tickets = await _issue(kiosk, "SOC", PHONES)
        other = (await _issue(kiosk, "BIZ", 1))[0]  # no open window serves BIZ: its place never changes
        phones = await _phones(stack, server, tickets)
        bystander = (await _phones(stack, server, [other]))[0]
        for i, (phone, ticket) in enumerate(zip(phones, tickets)):
            hello = await phone.next_push()  # no window open yet: the hall's configured SOC windows
            assert (hello["ticket"], hello["event"], hello["ahead"], hello["estimated_wait_s"]) == \
                (ticket["ticket"], "hello", i, server.engine.estimate_at("SOC", i))
        assert (await bystander.next_push())["event"] == "hello"

        for clerk in clerks:
            await clerk.request("open_window")
        await hub.refresh_phones(server.clock.now(), server.settings.fanout_slice)
        estimates = []
        for i, phone in enumerate(phones):  # same place, and the open windows' estimate
            update = await phone.next_push()
            assert (update["event"], update["status"], update["ahead"]) == ("position", "waiting", i)
            estimates.append(update["estimated_wait_s"])
        assert estimates == sorted(estimates) and estimates[:2] == [0, 0] and estimates[2] > 0  # two are free
        await _nothing_more(phones + [bystander])

        head = 0  # index of the first ticket still waiting
        for _ in range(5):
            for clerk in clerks:  # each clerk calls the head: it learns at once, before any round
                called = await clerk.request("call_next")
                tid = called["events"][0]["ticket"]
                assert tid == tickets[head]["ticket"]
                update = await phones[head].next_push()
                assert (update["ticket"], update["event"], update["status"]) == (tid, "ticket_called", "called")
                head += 1
            await _nothing_more(phones + [bystander])  # places moved; nothing pushed until the round
            await hub.refresh_phones(server.clock.now(), server.settings.fanout_slice)
            for i in range(head, PHONES):  # two calls moved everyone up by two: one push each
                update = await phones[i].next_push()
                assert (update["ticket"], update["event"], update["ahead"]) == \
                    (tickets[i]["ticket"], "position", i - head)
            for clerk, i in zip(clerks, (head - 2, head - 1)):  # the called ones: their own events only
                for kind, status in (("start", "serving"), ("finish", "done")):
                    await clerk.request(kind)
                    update = await phones[i].next_push()
                    assert (update["ticket"], update["status"]) == (tickets[i]["ticket"], status)
            await _nothing_more(phones + [bystander])

        before = hub.phone_positions
        await hub.refresh_phones(server.clock.now(), server.settings.fanout_slice)  # only starts and finishes since
        assert hub.phone_positions == before  # no queue moved: no place even computed
        await _nothing_more(phones + [bystander])
    server.shutdown()


@guard(60)
@pytest.mark.parametrize("slice_size", [1, 7, 32])
async def test_a_refresh_round_works_in_bounded_steps_on_the_services_that_moved(nursery, demo_hall, tmp_path,
                                                                                  slice_size):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", **FAST)
    hub = server.hub
    async with AsyncExitStack() as stack:
        kiosk = await stack.enter_async_context(client(server, "kiosk"))
        clerk = await stack.enter_async_context(client(server, "clerk", window=10))  # serves CIVIL and SOC
        soc = await _issue(kiosk, "SOC", 50)
        await _issue(kiosk, "SOC", 20)  # waiting without a phone: walked, not pushed
        civil = await _issue(kiosk, "CIVIL", 10)
        phones = await _phones(stack, server, soc + civil)
        for phone in phones:
            assert (await phone.next_push())["event"] == "hello"

        def steps() -> list[int]:
            """A round run step by step: the places computed in each step."""
            counts, before = [], hub.phone_positions
            for _ in hub.phone_round(server.clock.now(), slice_size):
                counts.append(hub.phone_positions - before)
                before = hub.phone_positions
            counts.append(hub.phone_positions - before)
            return counts

        await clerk.request("open_window")  # both services get an estimate
        counts = steps()
        assert max(counts) <= slice_size
        assert sum(counts) == 60 and len(counts) >= (50 + 20 + 10) // slice_size
        assert steps() == [0]  # nothing moved: nothing computed

        await kiosk.request("cancel", ticket=civil[3]["ticket"])  # CIVIL moved, SOC did not
        counts = steps()
        assert max(counts) <= slice_size and sum(counts) == 9  # the CIVIL phones still waiting
    server.shutdown()


@guard()
async def test_places_follow_pauses_transfers_to_a_window_and_its_closing(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", **FAST)
    hub = server.hub

    async def round_of(phones: list[Client]) -> list[tuple[int, float | None] | None]:
        """Run a round; each phone's (ahead, estimate) if it was pushed one, else None."""
        await hub.refresh_phones(server.clock.now(), server.settings.fanout_slice)
        await wait_all_tasks_blocked()
        places = []
        for phone in phones:
            update = await phone.next_push() if _pending(phone) else None
            assert update is None or update["event"] == "position"
            places.append(None if update is None else (update["ahead"], update["estimated_wait_s"]))
        await _nothing_more(phones)
        return places

    async with AsyncExitStack() as stack:
        kiosk = await stack.enter_async_context(client(server, "kiosk"))
        seven, eight = [await stack.enter_async_context(client(server, "clerk", window=w)) for w in (7, 8)]
        tickets = await _issue(kiosk, "SOC", 3)
        a, b, c = phones = await _phones(stack, server, tickets)
        for phone in phones:
            assert (await phone.next_push())["event"] == "hello"
        for clerk in (seven, eight):
            await clerk.request("open_window")
        two = await round_of(phones)
        rate = server.engine.state.eta.rate("SOC")  # two free windows take A and B at once
        assert two == [(0, 0.0), (1, 0.0), (2, round(1 / rate))]
        await eight.request("pause")  # one window serves SOC now, and one is free: no place moves
        assert await round_of(phones) == [None, (1, round(2 / rate)), (2, round(4 / rate))]

        await seven.request("call_next")
        assert (await a.next_push())["event"] == "ticket_called"
        await seven.request("transfer", to_window=8)  # A waits in window 8's own queue, first
        moved = await a.next_push()
        assert (moved["event"], moved["status"], moved["ahead"]) == ("ticket_transferred", "waiting", 0)
        # B and C moved up; A: no change. A's call was measured: the one estimator's rate now
        # blends it with the configured one (the phones get exactly what position() says);
        # window 7 is free again and takes the first in line at once
        wait = [server.engine.estimate_at("SOC", ahead) for ahead in range(3)]
        assert wait[0] == 0 and wait[2] == pytest.approx(2 * wait[1], abs=1)
        assert await round_of(phones) == [None, (0, wait[0]), (1, wait[1])]
        assert server.engine.position(tickets[2]["ticket"]).estimated_wait_s == wait[1]

        await eight.request("close_window")  # A goes back to the SOC queue, ahead of B and C by its rank
        # A: first either way, but now at the service's rate instead of window 8's configured minutes
        assert await round_of(phones) == [(0, wait[0]), (1, wait[1]), (2, wait[2])]
    server.shutdown()


# ---------------------------------------------------------------------------- devices before phones

def test_phones_hold_at_most_their_share_of_the_connections():
    admission = Admission(max_connections=10, max_per_address=10, trusted=(), retry_after_s=30,
                          hello_failures=3, hello_window_s=60.0, max_phones=2)
    assert admission.join_phone() is None and admission.join_phone() is None
    refusal = admission.join_phone()
    assert (refusal.reason, refusal.retry_after_s, admission.phones, admission.refused) == ("phones_full", 30, 2, 1)
    admission.phone_left()
    assert admission.join_phone() is None and admission.phones == 2
    assert ServerSettings().phone_share * MAX_CONNECTIONS >= 1.5 * 10_000  # the flagship's busiest hour, and more


@guard()
async def test_a_storm_of_phones_leaves_room_for_the_devices(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_connections=8, phone_share=0.25, **FAST)
    async with AsyncExitStack() as stack:
        kiosk = await stack.enter_async_context(client(server, "kiosk"))
        tickets = await _issue(kiosk, "SOC", 3)
        await _phones(stack, server, tickets[1:2])
        async with client(server, "phone", ticket=tickets[0]["ticket"], secret=tickets[0]["secret"]), \
                AsyncExitStack() as devices:
            with pytest.raises(RequestFailed) as refused:  # a third phone: over their share of 8
                await _phones(devices, server, tickets[2:])
            assert refused.value.code == "rate_limited" and refused.value.details["retry_after_s"] == 30
            assert "devices" in str(refused.value)
            for role, hello in (("clerk", {"window": 7}), ("display", {}), ("speaker", {}), ("manager", {})):
                device = await devices.enter_async_context(client(server, role, **hello))  # up to the cap
                assert device.role == role
        await wait_all_tasks_blocked()  # the server saw the first phone (and the devices) go
        assert server.admission.phones == 1
        third = (await _phones(stack, server, tickets[2:]))[0]
        assert (await third.next_push())["ticket"] == tickets[2]["ticket"]
    server.shutdown()
