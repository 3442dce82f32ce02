"""HTTP beside the WebSocket fast path, on one port: real sockets, a real hypercorn + Starlette.

Requests are written with h11 (the client side of the library hypercorn parses them with),
or byte by byte where the test is about bytes that are not valid HTTP.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Sequence

import h11
import pytest
import trio
import trio.testing

from callsys.server import http as http_module
from callsys.server.http import PAGE_ROLES, PAGES, hall_json, page_urls
from callsys.server.settings import RETRY_AFTER_S
from server_support import (TOKENS, captured_log, client, guard, push_of, server, start_server,  # noqa: F401
                            still_served)
from test_server_limits import half_open, tcp, until
from test_websocket_conformance import connect as raw_websocket

FAVICON = Path(http_module.__file__).resolve().parents[2] / "displays" / "favicon.svg"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


class Http:
    """One HTTP/1.1 connection to the server (keep-alive: several requests in turn)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, target: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        request = h11.Request(method="GET", target=target, headers=[("host", "127.0.0.1"), *headers])
        await self.stream.send_all(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))

    async def reply(self) -> Reply:
        response, body = None, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif type(event) is h11.Response:
                response = event
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                headers = {k.decode(): v.decode() for k, v in response.headers}
                return Reply(response.status_code, headers, body)
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def get(self, target: str, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        await self.send(target, headers)
        return await self.reply()

    async def closed_by_server(self) -> bool:
        """True once the server closed the connection: an EOF, or a reset (it closed with a
        request of ours unread) — never more data."""
        try:
            return await self.stream.receive_some(65536) == b""
        except trio.BrokenResourceError:
            return True


@asynccontextmanager
async def http_connection(server) -> AsyncIterator[Http]:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    try:
        yield Http(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def get(server, target: str) -> Reply:
    async with http_connection(server) as conn:
        return await conn.get(target)


async def until_open(server, count: int) -> None:
    """Wait until the server counts *count* open connections (on any clock: yields, never sleeps)."""
    while server.admission.open != count:
        await trio.testing.wait_all_tasks_blocked()


async def raw_exchange(server, data: bytes) -> bytes:
    """Send *data*, then read until the server closes the connection."""
    async with http_connection(server) as conn:
        await conn.stream.send_all(data)
        received = b""
        while chunk := await conn.stream.receive_some(65536):
            received += chunk
        return received


# ---------------------------------------------------------------------- health


@guard()
async def test_healthz_and_readyz_answer_while_serving(server):
    assert (await get(server, "/healthz")).json() == {"status": "ok"}
    ready = await get(server, "/readyz")
    assert ready.status == 200 and ready.json() == {"ready": True, "durable_seq": server.journal.durable_seq}
    async with client(server, "kiosk") as kiosk:
        await kiosk.request("take_number", service="SOC")
    later = (await get(server, "/readyz")).json()
    assert later["durable_seq"] == server.journal.durable_seq > ready.json()["durable_seq"]


@guard()
async def test_readyz_is_503_while_stopping_and_kept_alive_http_closes_once_websockets_drained(
        nursery, demo_hall, tmp_path, monkeypatch):
    from callsys.server import session as session_module

    monkeypatch.setattr(session_module, "CLOSE_TIMEOUT_S", 3600.0)  # the WebSocket below never answers its close
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", shutdown_grace_s=3600.0)
    async with http_connection(server) as conn:
        async with raw_websocket(server.port):
            assert (await conn.get("/readyz")).status == 200
            await until(lambda: len(server.sessions) == 1)
            server.shutdown()
            await until(lambda: server.stopping and not server.http.context.terminated.is_set())
            stopping = await conn.get("/readyz")  # the WebSocket is draining: HTTP still answers, not ready
            assert stopping.status == 503 and stopping.json() == {"ready": False, "reason": "shutting_down"}
            assert (await conn.get("/healthz")).status == 200
        # the WebSocket is gone: the idle HTTP connection is closed, the server stops
        assert await conn.closed_by_server()


# ---------------------------------------------------------------------- the app's routes


@guard()
async def test_api_hall_describes_the_hall(server, demo_hall):
    hall = (await get(server, "/api/hall")).json()
    assert hall == json.loads(json.dumps(hall_json(demo_hall)))
    assert (hall["id"], hall["timezone"], hall["number_width"]) == ("demo", "Asia/Shanghai", 3)
    assert hall["name"]["zh"] == "演示政务服务大厅" and hall["name"]["en"] == "Demo Service Hall"
    assert [w["id"] for w in hall["windows"]] == [w.id for w in demo_hall.windows]
    assert {z["id"] for z in hall["zones"]} == set(demo_hall.zones_by_id)
    assert [s["code"] for s in hall["services"]] == [s.code for s in demo_hall.services]
    first = hall["windows"][0]
    assert set(first) == {"id", "display", "zone", "floor", "skills"} and first["skills"]
    assert set(hall["services"][0]) == {"code", "prefix", "name", "group", "minutes"}


def test_hall_json_of_the_flagship_hall_has_every_window(qingdao_hall):
    hall = hall_json(qingdao_hall)
    assert len(hall["windows"]) == 400 and len(hall["floors"]) == 4
    assert {w["zone"] for w in hall["windows"]} <= {z["id"] for z in hall["zones"]}


@guard()
async def test_index_links_every_page_of_every_floor_and_zone_and_carries_no_token(server, demo_hall):
    index = await get(server, "/")
    assert index.status == 200 and index.headers["content-type"] == "text/html; charset=utf-8"
    page = index.body.decode()
    for zone in demo_hall.zones:
        assert zone.name.zh in page and zone.name.en in page
        assert f'href="board?zone={zone.id}"' in page and f'href="speaker?zone={zone.id}"' in page
    for floor in demo_hall.floors:
        assert floor.name.zh in page and f'href="board?floor={floor.number}"' in page
    assert 'href="kiosk"' in page and 'action="led"' in page and 'formaction="clerk"' in page
    for window in demo_hall.windows:
        assert f'<option value="{window.id}">' in page
    assert not any(token in page for tokens in demo_hall.tokens.values() for token in tokens)


@guard()
async def test_static_files_are_served_with_their_content_type_and_never_outside_displays(server):
    icon = await get(server, "/static/favicon.svg")
    assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.body == FAVICON.read_bytes() and icon.headers["cache-control"] == "no-cache"
    async with http_connection(server) as conn:  # revalidation: unchanged -> 304, no body
        again = await conn.get("/static/favicon.svg", [("if-none-match", icon.headers["etag"])])
    assert again.status == 304 and again.body == b""
    assert (await get(server, "/static/../pyproject.toml")).status == 404
    assert (await get(server, "/static/%2e%2e/pyproject.toml")).status == 404
    assert (await get(server, "/static/nothing.css")).status == 404


@guard()
async def test_pages_are_served_from_displays_or_404_with_why(nursery, demo_hall, tmp_path, monkeypatch):
    displays = tmp_path / "displays"
    displays.mkdir()
    (displays / "led.html").write_text("<!doctype html><title>LED</title>", encoding="utf-8")
    monkeypatch.setattr(http_module, "DISPLAYS_DIR", displays)
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db")
    led = await get(server, "/led?window=1&token=demo-display")
    assert led.status == 200 and led.headers["content-type"] == "text/html; charset=utf-8"
    assert led.body == b"<!doctype html><title>LED</title>" and led.headers["cache-control"] == "no-cache"
    missing = await get(server, "/board?zone=universal")
    assert missing.status == 404 and missing.body == b"the board page is not installed: displays/board.html is missing\n"
    wrong = await get(server, "/led?window=999")
    assert wrong.status == 404 and b"hall 'demo' has no window '999'" in wrong.body
    assert (await get(server, "/board?floor=7")).status == 404
    assert (await get(server, "/speaker?zone=roof")).status == 404
    assert set(PAGES) == {"board", "led", "clerk", "kiosk", "speaker", "phone", "take", "manager"}


@guard()
async def test_unknown_path_is_404_from_the_http_app(server):
    reply = await get(server, "/no/such/page")
    assert reply.status == 404 and reply.body == b"Not Found"


@guard()
async def test_a_plain_request_for_the_websocket_endpoint_is_told_what_it_is(server):
    reply = await get(server, "/ws")  # a browser's address bar: no upgrade
    assert reply.status == 426 and reply.headers["upgrade"] == "websocket"
    assert reply.body.startswith(b"/ws is callsys's WebSocket endpoint")
    broken = await raw_exchange(server, b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n\r\n")
    assert broken.startswith(b"HTTP/1.1 400 ")  # an upgrade without its headers: the fast path refuses it


# ---------------------------------------------------------------------- one port


@guard()
async def test_websocket_and_http_share_the_port_at_once(server):
    async with client(server, "kiosk") as kiosk, client(server, "display", subscribe={"zones": ["universal"]}), \
            http_connection(server) as conn:
        assert server.url == f"ws://127.0.0.1:{server.port}/ws"
        first = await kiosk.request("take_number", service="SOC")
        hall = (await conn.get("/api/hall")).json()
        second = await kiosk.request("take_number", service="SOC")
        assert (await conn.get("/healthz")).status == 200
        assert hall["id"] == "demo" and (first["number"], second["number"]) == ("C001", "C002")
        assert server.admission.open == 3 and len(server.sessions) == 2


@guard()
async def test_keep_alive_serves_two_requests_on_one_connection_and_pipelined_ones(server):
    async with http_connection(server) as conn:
        assert (await conn.get("/healthz")).status == 200
        assert (await conn.get("/api/hall")).json()["id"] == "demo"
        assert server.admission.open == 1
        # two requests in one write: the second is already read when the first is handed over
        c = conn.conn
        c.start_next_cycle()
        first = c.send(h11.Request(method="GET", target="/healthz", headers=[("host", "x")])) + c.send(h11.EndOfMessage())
        await conn.stream.send_all(first + b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await conn.reply()).json() == {"status": "ok"}
        c.start_next_cycle()
        c.send(h11.Request(method="GET", target="/readyz", headers=[("host", "x")]))
        c.send(h11.EndOfMessage())
        assert (await conn.reply()).json()["ready"] is True


@guard()
async def test_an_idle_kept_alive_connection_closes_after_the_keep_alive_time(nursery, demo_hall, tmp_path,
                                                                              mock_clock):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db")
    async with http_connection(server) as conn:
        assert (await conn.get("/healthz")).status == 200
        await trio.testing.wait_all_tasks_blocked()  # the server armed its keep-alive timer
        mock_clock.jump(server.settings.http_keep_alive_s)
        assert await conn.closed_by_server()
    await until_open(server, 0)


@guard()
async def test_a_connection_closes_cleanly_after_its_last_allowed_request(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", http_max_requests=3)
    with captured_log(logging.DEBUG, "callsys.http") as errors:
        async with http_connection(server) as conn:
            for _ in range(3):
                assert (await conn.get("/healthz")).status == 200
            # a fourth request right behind the third answer: hypercorn reads it (and half-closes)
            # while its app task may still be writing that answer's end
            await conn.stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert await conn.closed_by_server()
        await until_open(server, 0)
    assert errors == []


@guard()
async def test_malformed_http_gets_400_and_the_server_keeps_serving(server):
    assert (await raw_exchange(server, b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    assert (await raw_exchange(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64))
            ).startswith(b"HTTP/1.1 400 ")  # a TLS ClientHello on the plain port
    huge = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (100 * 1024) + b"\r\n\r\n"  # > MAX_HEAD_BYTES
    assert (await raw_exchange(server, huge)).startswith(b"HTTP/1.1 4")
    assert (await get(server, "/healthz")).status == 200
    await still_served(server)
    await until(lambda: server.admission.open == 0)


@guard()
async def test_websocket_upgrade_on_a_kept_alive_http_connection_is_refused_with_400(server):
    async with http_connection(server) as conn:
        assert (await conn.get("/healthz")).status == 200
        upgrade = [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-version", "13"),
                   ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="), ("sec-websocket-protocol", "callsys.v1.json")]
        refused = await conn.get("/ws", upgrade)
        assert refused.status == 400
        assert refused.body == b"open the WebSocket at /ws on a new connection, not after an HTTP request\n"
    await still_served(server, "json")


@guard()
async def test_admission_refuses_http_requests_with_503_too(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_connections=1)
    socks = await half_open(server, 1)
    await until(lambda: server.admission.open == 1)
    refused = await get(server, "/healthz")
    assert refused.status == 503 and int(refused.headers["retry-after"]) == RETRY_AFTER_S
    assert b"limit of 1 connections" in refused.body and refused.headers["connection"] == "close"
    socks[0].close()
    await until(lambda: server.admission.open == 0)
    assert (await get(server, "/healthz")).status == 200


# ---------------------------------------------------------------------- page URLs


@guard()
async def test_page_urls_name_every_page_kind_with_a_token_of_its_role(server, demo_hall):
    urls = page_urls(server)
    base = f"http://127.0.0.1:{server.port}"
    assert urls["index"] == base + "/"
    assert urls["board"] == f"{base}/board?zone=universal&token={TOKENS['display']}"
    assert urls["board_floor"] == f"{base}/board?floor=1&token={TOKENS['display']}"
    assert urls["led"] == f"{base}/led?window=1&token={TOKENS['display']}"
    assert urls["clerk"] == f"{base}/clerk?window=1&token={TOKENS['clerk']}"
    assert urls["kiosk"] == f"{base}/kiosk?token={TOKENS['kiosk']}"
    assert urls["speaker"] == f"{base}/speaker?zone=universal&token={TOKENS['speaker']}"
    assert urls["board_door"] == f"{base}/board?zone=universal&door=main&token={TOKENS['display']}"
    assert urls["manager"] == f"{base}/manager?token={TOKENS['manager']}"
    assert urls["api_docs"] == f"{base}/api/v1/docs"
    assert set(urls) == {"index", "board_floor", "board_door", "api_docs", *PAGE_ROLES}  # the devices' pages: a phone's need a ticket or a door code


@guard()
async def test_shutdown_drops_connections_still_waiting_for_their_first_request(demo_hall, tmp_path):
    """A browser keeps spare connections open without a request: shutdown closes them at
    once instead of waiting out the handshake timeout or the grace period (an hour here)."""
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, tmp_path / "hall.db", shutdown_grace_s=3600.0,
                                    handshake_timeout_s=3600.0)
        silent = await tcp(server)
        (partial,) = await half_open(server, 1)
        await until_open(server, 2)
        server.shutdown()
    # the server has stopped (the nursery is done): both were closed by it
    for sock in (silent, partial):
        assert await sock.recv(100) == b""
