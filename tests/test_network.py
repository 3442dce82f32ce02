"""Many halls on one deployment (issue 12, item 3): the network file, shares by rendezvous
hashing, membership in a real redis-server, the router on one public port.

The process tests run network nodes in-process (each a member with its own id, router and
hall servers) against a real redis-server; nothing sleeps to synchronise: a test waits for
a node's own heartbeats to show the condition (:meth:`NetworkNode.wait_for`).
"""

from __future__ import annotations

import json
import signal
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from benchmarks._redis import RedisCluster
from benchmarks.failover import Served, spawn
from callsys.cli import main
from callsys.client import connect, connect_device
from callsys.clock import ScaledClock
from callsys.errors import ConfigError
from callsys.hall import read_toml
from callsys.log import open_journal
from callsys.log.redis import keys as hall_keys
from callsys.network import Network, load_network, network_from_mapping
from callsys.server import ServerSettings
from callsys.server.network import NetworkNode, assign, membership_keys, serve_network, share
from callsys.tokens import sample_token_roles
from conftest import CONFIG
from redis_support import raw, redis_server, redis_url  # noqa: F401  (fixtures)
from server_support import SECRET, START, TOKENS, guard, http_get, readyz_until

BAOAN = CONFIG / "baoan.toml"


def small_network(communities: int = 5) -> Network:
    """The Bao'an file cut down: its district hall, one street hall and *communities* community halls."""
    data = read_toml(BAOAN)
    data["layout"]["streets"] = data["layout"]["streets"][:1]
    data["layout"]["communities_per_street"] = communities
    return network_from_mapping(data, source="small.toml")


# ---------------------------------------------------------------------- the network file


def test_baoan_expands_to_133_valid_halls_with_44_windows_in_the_district_hall():
    network = load_network(BAOAN)
    assert network.id == "baoan" and len(network.halls) == 133
    kinds = list(network.kinds.values())
    assert (kinds.count("district"), kinds.count("street"), kinds.count("community")) == (1, 6, 126)
    district = network.halls[0]
    assert district.id == "baoan-district" and len(district.windows) == 44 and network.kinds[district.id] == "district"
    assert len({h.id for h in network.halls}) == 133
    streets = [h for h in network.halls if network.kinds[h.id] == "street"]
    assert [h.id for h in streets] == ["baoan-xinan", "baoan-xixiang", "baoan-hangcheng", "baoan-fuyong",
                                       "baoan-fuhai", "baoan-shajing"]
    assert streets[0].name.zh == "新安街道党群服务中心" and streets[0].name.en == "Xin'an Street Service Centre"
    communities = [h for h in network.halls if network.kinds[h.id] == "community"]
    assert communities[0].id == "baoan-xinan-c01" and communities[-1].id == "baoan-shajing-c21"
    assert {len(h.windows) for h in communities} == {4, 5, 6, 7, 8}
    assert communities[0].source == f"{BAOAN}#baoan-xinan-c01"
    assert all(h.timezone == "Asia/Shanghai" and h.tokens["kiosk"] == frozenset({"demo-kiosk"})
               for h in network.halls)  # [defaults] reaches every hall
    assert communities[0].hours.week[6] == () and district.hours.week[6] != ()  # a kind's own tables win
    # the published demo tokens: every hall warns about them at start, like a hall file with sample tokens
    assert all(set(sample_token_roles(h)) == {"kiosk", "clerk", "display", "speaker", "manager"}
               for h in network.halls)


def test_a_bad_hall_in_a_template_names_the_network_file_and_the_hall():
    data = read_toml(BAOAN)
    data["community"]["window_blocks"][0]["skills"] = ["NOPE"]
    with pytest.raises(ConfigError, match=r"^x\.toml#baoan-xinan-c01: window_blocks\[0\]"):
        network_from_mapping(data, source="x.toml")


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["community"]["window_blocks"].append(dict(d["community"]["window_blocks"][0])),
     "community.window_blocks"),
    (lambda d: d["layout"].update(community_windows=[0]), "layout.community_windows[0]"),
    (lambda d: d["layout"].update(colour="red"), "layout.colour"),
    (lambda d: d["layout"]["streets"].append(dict(d["layout"]["streets"][0])), "street xinan"),
    (lambda d: d["network"].update(id="Bad Id"), "network.id"),
])
def test_bad_network_tables_name_the_key(edit, key):
    data = read_toml(BAOAN)
    edit(data)
    with pytest.raises(ConfigError) as caught:
        network_from_mapping(data, source="x.toml")
    assert caught.value.key == key


def test_network_list_prints_every_hall(capsys):
    assert main(["network", "list", str(BAOAN), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["network"] == "baoan" and len(listed["halls"]) == 133
    assert listed["halls"][0] == {"id": "baoan-district", "kind": "district",
                                  "name": {"zh": "宝安区政务服务中心", "en": "Bao'an District Service Centre"},
                                  "windows": 44, "services": ["BIZ", "TAX", "PERMIT", "PROP", "SOC", "MED", "CIVIL"]}
    assert main(["network", "list", str(BAOAN)]) == 0
    assert "133 halls (1 district, 6 street, 126 community), 825 windows" in capsys.readouterr().out
    assert main(["network", "list", "missing.toml"]) == 2
    assert capsys.readouterr().err == "callsys: missing.toml: file not found\n"


# ---------------------------------------------------------------------- rendezvous hashing


def test_a_member_coming_or_going_moves_only_its_own_halls():
    halls = [h.id for h in load_network(BAOAN).halls]
    before = {h: assign(["a", "b", "c"], h) for h in halls}
    assert set(before.values()) == {"a", "b", "c"}
    assert all(20 < list(before.values()).count(m) < 70 for m in "abc")  # roughly a third each
    after_leave = {h: assign(["a", "b"], h) for h in halls}
    assert {h for h in halls if after_leave[h] != before[h]} == {h for h in halls if before[h] == "c"}
    after_join = {h: assign(["a", "b", "c", "d"], h) for h in halls}
    moved = {h for h in halls if after_join[h] != before[h]}
    assert moved and all(after_join[h] == "d" for h in moved)
    assert share(["a", "b", "c"], halls, "a") == {h for h in halls if before[h] == "a"}
    assert assign([], "x") is None


# ---------------------------------------------------------------------- processes on one Redis


async def start_node(nursery: trio.Nursery, network: Network, store: str, member: str,
                     **options: Any) -> NetworkNode:
    settings = ServerSettings(phone_refresh_s=float("inf"), shutdown_grace_s=5.0)
    return await nursery.start(partial(serve_network, network, store, host="127.0.0.1", port=0,
                                       clock=ScaledClock(START), secret=SECRET, settings=settings, member=member,
                                       **options))


def settled(members: set[str]) -> Any:
    """A node predicate: its view has exactly *members*, every hall is served by the member its
    rendezvous hash gives, and the node serves exactly its share."""

    def check(node: NetworkNode) -> bool:
        view = node.view
        halls = [h.id for h in node.network.halls]
        return (set(view.members) == members and node.serving() == node.share()
                and all(view.served.get(h) == assign(members, h) for h in halls))

    return check


async def wait_settled(nodes: list[NetworkNode]) -> None:
    members = {n.member for n in nodes}
    for node in nodes:
        await node.wait_for(settled(members))


async def ticket(port: int, hall_id: str, key: str) -> dict[str, Any]:
    """A keyed SOC ticket of *hall_id* through the router on *port*; its ``number`` without the
    service's prefix (E in the district hall, A elsewhere) as ``seq``."""
    async with connect(f"ws://127.0.0.1:{port}/halls/{hall_id}/ws", role="kiosk", token=TOKENS["kiosk"]) as kiosk:
        answer = await kiosk.request("take_number", service="SOC", key=key)
    return {**answer, "seq": answer["number"][1:]}


@guard(120)
async def test_two_processes_split_the_halls_and_either_router_reaches_every_hall(redis_url):
    network = small_network()
    halls = [h.id for h in network.halls]
    assert share(["m1", "m2"], halls, "m1") and share(["m1", "m2"], halls, "m2")  # both get some
    async with trio.open_nursery() as nursery:
        one = await start_node(nursery, network, redis_url, "m1")
        two = await start_node(nursery, network, redis_url, "m2")
        await wait_settled([one, two])
        assert one.serving() | two.serving() == set(halls) and not one.serving() & two.serving()
        numbers: dict[str, list[str]] = {}
        for hall_id in halls:  # through both routers: the same hall, so the numbers follow on
            first = await ticket(one.port, hall_id, f"{hall_id}-1")
            second = await ticket(two.port, hall_id, f"{hall_id}-2")
            numbers[hall_id] = [first["seq"], second["seq"]]
        assert all(n == ["001", "002"] for n in numbers.values())

        status, headers, body = await http_get(one.port, "/halls")
        listed = json.loads(body)
        assert status == 200 and headers["content-type"] == "application/json"
        assert {m["id"] for m in listed["members"]} == {"m1", "m2"}
        owners = {h["id"]: h["owner"] for h in listed["halls"]}
        assert owners == {h: assign(["m1", "m2"], h) for h in halls}
        entry = next(h for h in listed["halls"] if h["owner"] == "m2")
        assert entry["ws"] == f"ws://127.0.0.1:{two.port}/halls/{entry['id']}/ws"
        assert (await http_get(one.port, "/readyz"))[0] == 200

        # stop one process: its halls move to the other, and what was acknowledged is there
        two.shutdown()
        await one.wait_for(settled({"m1"}))
        assert one.serving() == set(halls)
        for hall_id in halls:
            again = await ticket(one.port, hall_id, f"{hall_id}-2")  # a retried key answers the first ticket
            assert again["seq"] == "002"
            assert (await ticket(one.port, hall_id, f"{hall_id}-3"))["seq"] == "003"

        # start it again: the shares are as before
        back = await start_node(nursery, network, redis_url, "m2")
        await wait_settled([one, back])
        assert back.serving() == share(["m1", "m2"], halls, "m2")
        for hall_id in halls:
            assert (await ticket(back.port, hall_id, f"{hall_id}-4"))["seq"] == "004"
        one.shutdown()
        back.shutdown()


@guard(60)
async def test_the_router_answers_unknown_halls_moving_halls_and_its_own_paths(redis_url):
    network = small_network(communities=1)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, network, redis_url, "solo")
        await node.wait_for(settled({"solo"}))
        status, _, body = await http_get(node.port, "/halls/nowhere/ws")
        assert status == 404 and body == b"no hall 'nowhere' in network baoan; GET /halls lists its 3 halls\n"
        status, headers, _ = await http_get(node.port, "/halls/baoan-xinan?x=1")
        assert status == 308 and headers["location"] == "/halls/baoan-xinan/?x=1"
        status, headers, body = await http_get(node.port, "/halls/baoan-xinan/api/hall")  # the hall's own HTTP
        assert status == 200 and json.loads(body)["id"] == "baoan-xinan" and headers["connection"] == "close"
        status, _, body = await http_get(node.port, "/halls/baoan-xinan/healthz")  # the hall server's own
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, _, body = await http_get(node.port, "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok", "member": "solo"}
        status, _, body = await http_get(node.port, "/")
        assert status == 200 and b'href="/halls/baoan-xinan-c01/"' in body
        assert (await http_get(node.port, "/elsewhere"))[0] == 404
        status, headers, _ = await http_get(node.port, "/phone?q=CS1.t.baoan-xinan.7.1790000000.sig")  # a QR's URL
        assert status == 307 and headers["location"] == "/halls/baoan-xinan/phone?q=CS1.t.baoan-xinan.7.1790000000.sig"
        status, headers, _ = await http_get(node.port, "/take?door=CS1.d.baoan-district.main:1.179.sig")
        assert status == 307 and headers["location"].startswith("/halls/baoan-district/take?door=")
        assert (await http_get(node.port, "/phone?q=CS1.t.nowhere.7.1.sig"))[0] == 404

        run = node.runs["baoan-xinan"]
        await node._stop_hall(run)  # noqa: SLF001  (the hall leaves this process: moving)
        status, headers, body = await http_get(node.port, "/halls/baoan-xinan/ws")
        assert status == 503 and headers["retry-after"] == "1" and b"is moving" in body
        await node.wait_for(lambda n: "baoan-xinan" in n.serving())  # still its share: started again
        node.shutdown()


@guard(60)
async def test_a_node_stops_once_its_halls_have_stopped(redis_url):
    """The slow-stop report must not hold the stop up: with a report due only after a day, the
    node still stops as soon as its halls have (the report once kept it waiting 10 s)."""
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, small_network(communities=1), redis_url, "solo", slow_stop_s=86400.0)
        await node.wait_for(settled({"solo"}))
        node.shutdown()
    assert node.runs == {}


@guard(60)
async def test_a_member_says_again_which_halls_it_serves_at_every_heartbeat(redis_server, redis_url):
    """Another member's heartbeat drops a member whose heartbeat expired (a stall) and the halls
    it served; back, it must be whole again, or routers answer 503 for its halls for ever."""
    network = small_network(communities=1)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, network, redis_url, "solo")
        await node.wait_for(settled({"solo"}))
        client = raw(redis_server)
        try:
            client.delete(membership_keys(network.id)[2])  # what the script does to an expired member's halls
            served = node.beats
            await node.wait_for(lambda n: n.beats > served + 1)
            assert client.hgetall(membership_keys(network.id)[2]) == {h.id.encode(): b"solo" for h in network.halls}
        finally:
            client.close()
        node.shutdown()


@guard(180)
async def test_a_network_on_a_redis_cluster_spreads_its_halls_over_the_shards(tmp_path):
    network = small_network()
    with RedisCluster.start(tmp_path / "cluster") as cluster:
        slots = {h.id: _node_of(cluster, hall_keys(h.id)[0]) for h in network.halls}
        assert len(set(slots.values())) >= 2  # the halls live on several shards
        async with trio.open_nursery() as nursery:
            node = await start_node(nursery, network, cluster.url, "solo")
            await node.wait_for(settled({"solo"}))
            for hall in network.halls:
                assert (await ticket(node.port, hall.id, "k"))["seq"] == "001"
            node.shutdown()
        for hall in network.halls:  # each hall's events on its own shard
            client = raw(next(n for n in cluster.nodes if n.port == slots[hall.id]))
            try:
                assert client.xlen(hall_keys(hall.id)[1]) >= 2
            finally:
                client.close()


def _node_of(cluster: RedisCluster, key: str) -> int:
    """The port of the cluster node that holds *key*."""
    client = raw(cluster.nodes[0])
    try:
        slot = client.cluster("KEYSLOT", key)
        for start, end, (_, port, *_rest), *_replicas in client.cluster("SLOTS"):
            if start <= slot <= end:
                return port
    finally:
        client.close()
    raise AssertionError(f"no node holds slot of {key}")


@pytest.mark.parametrize("store, message", [
    ("file:x.db", "store file:x.db: a network of halls needs a Redis store"),
    ("redis://127.0.0.1:1/0", "network membership in redis://127.0.0.1:1/0: ConnectionError"),
])
def test_a_network_process_with_no_redis_says_so_in_one_line(capsys, tmp_path, store, message):
    assert main(["serve", "--network", str(BAOAN), "--store", store, "--port", "0", "--log-level", "error",
                 "--secret-file", str(tmp_path / "secret")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"callsys: {message}")


# ---------------------------------------------------------------------- real processes, one killed


async def wait_after(served: Served, start: int, text: str) -> str:
    """The first log line of *served* after its *start*-th containing *text* (waiting for it)."""
    while True:
        for _, line in served.lines[start:]:
            if text in line:
                return line
        if served.ended:
            raise RuntimeError(f"the process ended before logging {text!r}")
        await served._changed.wait()  # noqa: SLF001  (the next line read)


@guard(180)
async def test_a_killed_process_loses_no_acknowledged_ticket_and_its_halls_move(redis_url, tmp_path):
    small = tmp_path / "network.toml"  # 13 halls: the Bao'an file with one community per street
    small.write_text(BAOAN.read_text(encoding="utf-8").replace("communities_per_street = 21",
                                                               "communities_per_street = 1"), encoding="utf-8")
    network = load_network(small)
    halls = [h.id for h in network.halls]
    args = ["--network", str(small), "--store", redis_url, "--secret-file", str(tmp_path / "secret"),
            "--host", "127.0.0.1", "--port", "0", "--clock", "2026-11-23T09:30"]
    async with trio.open_nursery() as nursery:
        processes: list[tuple[Served, str, str]] = []
        for _ in range(2):
            served = await spawn(nursery, args)
            line = await wait_after(served, 0, "event=network_listening")
            processes.append((served, line.split("member=", 1)[1].split()[0], line.split("url=", 1)[1].split()[0]))
        (a, member_a, url_a), (b, member_b, url_b) = processes
        owner = {h: assign([member_a, member_b], h) for h in halls}
        assert set(owner.values()) == {member_a, member_b}
        for h in halls:  # each hall owned by the process it is assigned to (the other may have had it first)
            served = a if owner[h] == member_a else b
            await wait_after(served, 0, f"event=owner hall={h} ")
        for url in (url_a, url_b):  # and each router routing its whole share (marked served at a heartbeat)
            await readyz_until(urlsplit(url).port, True)

        acked: dict[tuple[str, str], str] = {}  # (hall, key) -> number
        for h in halls:
            url = url_a if owner[h] == member_a else url_b
            async with connect_device(f"ws{url.removeprefix('http')}/halls/{h}/ws", role="kiosk",
                                      token=TOKENS["kiosk"]) as kiosk:
                for i in range(3):
                    acked[h, f"k{i}"] = (await kiosk.request("take_number", service="SOC", key=f"k{i}"))["number"]

        mark = len(a.lines)
        b.process.send_signal(signal.SIGKILL)  # no clean stop: its heartbeat and leases expire
        await b.process.wait()
        await wait_after(a, mark, f"left=\"[\\\"{member_b}\\\"]\"")
        moved = [h for h in halls if owner[h] == member_b]
        for h in moved:
            await wait_after(a, mark, f"event=owner hall={h} ")
        await readyz_until(urlsplit(url_a).port, True)
        for h in halls:  # through the survivor: a retried key answers its ticket; a new one follows on
            async with connect_device(f"ws{url_a.removeprefix('http')}/halls/{h}/ws", role="kiosk",
                                      token=TOKENS["kiosk"]) as kiosk:
                assert (await kiosk.request("take_number", service="SOC", key="k2"))["number"] == acked[h, "k2"]
                number = (await kiosk.request("take_number", service="SOC", key="k3"))["number"]
                assert number[1:] == "004"
        a.process.send_signal(signal.SIGTERM)
        assert await a.process.wait() == 0
    for hall in network.halls:  # every acknowledged ticket is in the hall's log, each number once
        async with open_journal(redis_url, hall) as journal:
            engine, _ = await journal.recover()
        numbers = [t.number for t in engine.state.tickets.values()]
        assert len(numbers) == len(set(numbers)) == 4
        assert {acked[hall.id, f"k{i}"] for i in range(3)} <= set(numbers)
