"""HTTP beside the WebSocket fast path, on the same port: pages, static files, the hall, health.

One address for everything. The server reads the first request head of every accepted TCP
connection with h11 (:func:`read_opening`, after admission — so the connection caps apply
to every connection, whatever serves it):

* an upgrade request for ``/ws`` stays on the fast path: wsproto checks it, then a
  :class:`~callsys.server.session.Session` frames the WebSocket itself (no ASGI layer on
  the path of a call);
* anything else — any other path, any method, bytes that are not HTTP at all — is handed,
  with the bytes already read, to hypercorn's trio ``TCPServer`` (:class:`HttpFrontend`),
  which serves the Starlette app of :func:`build_app` for the rest of that connection:
  keep-alive, pipelining, the 400 for a malformed request and the 404 for an unknown path
  are hypercorn's and Starlette's, not ours.

A kept-alive HTTP connection stays with hypercorn: a WebSocket upgrade sent on it later is
refused by the app with a 400 that says to open the WebSocket on a connection of its own
(browsers always do). On shutdown the listener closes at once, kept-alive HTTP connections
keep answering — ``/readyz`` says 503, so a balancer stops sending — until every WebSocket
connection has closed, then they close when idle.

Hypercorn's ``TCPServer`` (and ``WorkerContext``, ``ConnectionState``) are what its own
``worker_serve`` runs per connection, not a documented API: pyproject pins hypercorn to
0.18.x and ``tests/test_http.py`` exercises the hand-off over real sockets.

Routes (docs/protocol.md, "HTTP"): ``/`` an index of every page per floor and zone;
``/board``, ``/led``, ``/clerk``, ``/kiosk``, ``/speaker`` the devices' pages, ``/manager`` the managers' cockpit in ``displays/``, ``/phone``
and ``/take`` the citizen's pages (a ticket's link, the door code's; no token);
``/static/...`` every file under ``displays/``; ``/api/hall`` the hall as JSON;
``/api/v1/...`` the integration API (:mod:`callsys.api`); ``/healthz`` and ``/readyz``
(on a store with a lease both name the ``role``, ``owner`` and ``owner_url``; a standby
that knows its owner is ready: it serves clients and forwards their commands, see
:mod:`~callsys.server.standby`).
Other parts add theirs through ``build_app(server, routes)``.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence
from urllib.parse import urlencode

import h11
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from ..hall import Hall, Names
from ..protocol import PATH
from ._websocket import RECEIVE_BYTES

if TYPE_CHECKING:
    from .serve import CallsysServer
    from .settings import ServerSettings

DISPLAYS_DIR: Final = Path(__file__).resolve().parents[2] / "displays"  # the pages and their static files
MAX_HEAD_BYTES: Final = 16 * 1024  # bytes of request line + headers before h11 (and hypercorn) answer 400
PAGES: Final = {  # route -> (file in displays/, the query parameters it takes, Chinese and English name)
    "board": ("board.html", ("zone", "floor"), "叫号大屏", "TV board"),
    "led": ("led.html", ("window",), "窗口 LED 屏", "Window LED strip"),
    "clerk": ("clerk.html", ("window",), "窗口工作台", "Clerk console"),
    "kiosk": ("kiosk.html", (), "取号机", "Ticket kiosk"),
    "speaker": ("speaker.html", ("zone",), "语音播报", "Zone speaker"),
    "phone": ("phone.html", (), "手机查看排队", "Phone: follow a ticket"),  # a citizen's: ?ticket=&secret= or ?q=
    "take": ("take.html", (), "手机取号", "Phone: take a number"),  # a citizen's: ?door=<door code>
    "manager": ("manager.html", (), "大厅管理驾驶舱", "Manager cockpit"),
}
PAGE_ROLES: Final = {"board": "display", "led": "display", "clerk": "clerk", "kiosk": "kiosk", "speaker": "speaker",
                     "manager": "manager"}
NO_CACHE: Final = {"cache-control": "no-cache"}  # revalidate pages on every load: a new release shows at once


# ---------------------------------------------------------------------- the hand-off


@dataclass(frozen=True, slots=True)
class Opening:
    """The start of a connection: every byte read so far and the first request in them.

    Attributes:
        data: the bytes read (the request head, maybe more behind it).
        request: the first request, or None if *data* is not valid HTTP/1.1.
        connection: the h11 connection that parsed it (can still answer, e.g. a refusal).
    """

    data: bytes
    request: h11.Request | None
    connection: h11.Connection

    @property
    def websocket(self) -> bool:
        """The request asks to upgrade at the WebSocket endpoint: the fast path serves it (and
        answers a malformed upgrade with 400). A plain request for ``/ws`` — a browser's address
        bar — goes to the HTTP app, which explains the endpoint."""
        request = self.request
        return (request is not None and request.target.split(b"?", 1)[0] == PATH.encode()
                and any(name == b"upgrade" for name, _ in request.headers))


async def read_opening(stream: trio.abc.ReceiveStream) -> Opening | None:
    """Read up to the end of the first request head; None if the client hung up first."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    data = bytearray()
    while True:
        chunk = await stream.receive_some(RECEIVE_BYTES)
        data += chunk
        connection.receive_data(chunk)  # b"": the client's EOF
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:  # not HTTP/1.1: hypercorn answers it (400)
            return Opening(bytes(data), None, connection) if chunk else None
        if type(event) is h11.Request:
            return Opening(bytes(data), event, connection)
        if event is not h11.NEED_DATA:  # ConnectionClosed
            return None


async def respond(stream: trio.abc.SendStream, opening: Opening, status: int, body: bytes,
                  headers: Sequence[tuple[bytes, bytes]] = (), *,
                  content_type: bytes = b"text/plain; charset=utf-8") -> None:
    """Answer the opening request with *status* and *body* (plain text by default), then
    nothing more (``connection: close``): for a connection that is refused before anything
    serves it, or answered by a network router itself."""
    head = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), *headers]
    conn = opening.connection
    data = conn.send(h11.Response(status_code=status, headers=head, reason=HTTPStatus(status).phrase.encode()))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


class _Replay(trio.abc.HalfCloseableStream):
    """*stream* with *head* put back in front of what it receives, for hypercorn.

    Hypercorn's ``TCPServer`` takes a trio stream with ``.socket`` (it reads the peer and
    local addresses from it); not having ``do_handshake`` tells it the stream is not TLS.
    *on_close* is called once hypercorn closed the stream.

    ``send_eof`` waits for a ``send_all`` in progress: hypercorn half-closes from its reading
    task (after ``keep_alive_max_requests``, say) while the app's task may still be writing
    the last response, and trio refuses two senders at once (BusyResourceError).
    """

    def __init__(self, stream: trio.SocketStream, head: bytes, on_close: Callable[[], object]) -> None:
        self.stream = stream
        self.socket = stream.socket
        self._head = head
        self._on_close = on_close
        self._sending = trio.Lock()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head:
            size = len(self._head) if max_bytes is None else max_bytes
            data, self._head = self._head[:size], self._head[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._sending:
            await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        async with self._sending:
            await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()
        self._on_close()


class HttpFrontend:
    """Hypercorn's trio worker, one connection at a time: what ``worker_serve`` sets up
    (config, worker context, connection state) without its listeners (the server's are shared
    with the fast path).

    Args:
        app: the ASGI app (:func:`build_app`).
        settings: the server settings (keep-alive).
    """

    def __init__(self, app: Any, settings: ServerSettings) -> None:
        config = Config()
        config.keep_alive_timeout = settings.http_keep_alive_s
        config.keep_alive_max_requests = settings.http_max_requests
        config.h11_max_incomplete_size = MAX_HEAD_BYTES
        config.include_server_header = False
        config.accesslog = None  # no line per request: the pages poll nothing, assets are few
        config.errorlog = logging.getLogger("callsys.http")  # an app error: its traceback, on our log
        self.config = config
        self.app = ASGIWrapper(app)
        self.context = WorkerContext(None)
        self.state = ConnectionState({})

    async def serve(self, stream: trio.SocketStream, head: bytes) -> None:
        """Serve the connection *stream* whose first bytes, *head*, were already read.

        Returns once hypercorn closed the connection: after an error answer (400, 431) its
        keep-alive timer would otherwise hold the connection's task — and its place under
        the connection caps — for ``http_keep_alive_s`` more.
        """
        with trio.CancelScope() as scope:
            await TCPServer(self.app, self.config, self.context, self.state, _Replay(stream, head, scope.cancel)).run()

    async def close_idle(self) -> None:
        """Close every kept-alive connection once it is idle (requests in progress finish)."""
        await self.context.terminated.set()


# ---------------------------------------------------------------------- the app


def build_app(server: CallsysServer, routes: Sequence[BaseRoute] = (), *,
              displays: Path | None = None) -> Starlette:
    """The HTTP app of *server*: the routes in the module docstring, then *routes*.

    Args:
        server: the running server (its hall, its health).
        routes: more Starlette routes (e.g. the voice's ``/audio/...``).
        displays: the directory of the pages and their static files (:data:`DISPLAYS_DIR`).
    """
    displays = DISPLAYS_DIR if displays is None else displays
    hall = server.hall
    hall_body = json.dumps(hall_json(hall), ensure_ascii=False, separators=(",", ":")).encode()
    index_body = index_html(hall).encode()

    async def index(request: Request) -> Response:
        return HTMLResponse(index_body, headers=NO_CACHE)

    async def api_hall(request: Request) -> Response:
        return Response(hall_body, media_type="application/json")

    def role() -> dict[str, Any]:
        """Who serves the hall: this process's role, and the owner (a store with a lease only)."""
        if not server.journal.log.leased:
            return {}
        return {"role": "owner" if server.owning else "standby", "owner": server.owner_id,
                "owner_url": server.owner_url}

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", **role()})

    async def readyz(request: Request) -> Response:
        reason = _not_ready(server)
        if reason is not None:
            return JSONResponse({"ready": False, "reason": reason, **role()}, status_code=503)
        detail = server.journal.log.unavailable()
        if detail is not None:  # commands wait for the store (a bounded time): send new clients elsewhere
            return JSONResponse({"ready": False, "reason": "store_unreachable", "detail": detail, **role()},
                                status_code=503)
        if not server.owning and server.owner_url is None:  # a standby with nowhere to forward commands
            return JSONResponse({"ready": False, "reason": "no_owner", **role()}, status_code=503,
                                headers={"retry-after": "1"})
        return JSONResponse({"ready": True, "durable_seq": server.journal.durable_seq, **role()})

    def page(name: str) -> Route:
        filename, params, _, _ = PAGES[name]

        async def endpoint(request: Request) -> Response:
            wrong = _wrong_place(hall, request.query_params, params)
            if wrong is not None:
                return PlainTextResponse(wrong + "\n", status_code=404)
            file = displays / filename
            if not file.is_file():
                return PlainTextResponse(f"the {name} page is not installed: displays/{filename} is missing\n",
                                         status_code=404)
            return FileResponse(file, media_type="text/html; charset=utf-8", headers=NO_CACHE)

        return Route(f"/{name}", endpoint, name=name)

    async def websocket_endpoint(request: Request) -> Response:
        body = (f"{PATH} is callsys's WebSocket endpoint: connect with a WebSocket client offering the "
                f"subprotocol callsys.v1.json or callsys.v1.msgpack; the pages are listed at /\n")
        return PlainTextResponse(body, status_code=426, headers={"upgrade": "websocket"})

    async def websocket_elsewhere(websocket: WebSocket) -> None:
        if websocket.url.path == PATH:  # an upgrade on a kept-alive HTTP connection
            body, status = f"open the WebSocket at {PATH} on a new connection, not after an HTTP request\n", 400
        else:
            body, status = f"callsys serves WebSockets at {PATH}\n", 404
        await websocket.send_denial_response(PlainTextResponse(body, status_code=status))

    from ..api import BASE, build_api, outer_not_found  # the API imports the server's parts: not at load
    from ..api.forward import ForwardToOwner

    return Starlette(routes=[
        Route("/", index, name="index"),
        *(page(name) for name in PAGES),
        Mount("/static", _Static(directory=displays, check_dir=False), name="static"),
        Route("/api/hall", api_hall, name="hall"),
        Route("/healthz", healthz, name="healthz"),
        Route("/readyz", readyz, name="readyz"),
        Route(PATH, websocket_endpoint),
        Mount(BASE, ForwardToOwner(build_api(server), server), name="api"),  # a standby forwards its writes
        *routes,
        WebSocketRoute("/{path:path}", websocket_elsewhere),
    ], exception_handlers={404: outer_not_found})


class _Static(StaticFiles):
    """Starlette's static files, revalidated on every load (``no-cache``: a 304 when unchanged),
    so a page never runs yesterday's script against today's server."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("cache-control", "no-cache")
        return response


def _not_ready(server: CallsysServer) -> str | None:
    if server.failure is not None:
        return "event_log_failed"
    if server.stopping:
        return "shutting_down"
    if not server.port:
        return "starting"
    return None


def _wrong_place(hall: Hall, query: Any, params: Sequence[str]) -> str | None:
    """Why the zone, floor or window in *query* is not one of *hall*'s, or None."""
    checks = {"zone": lambda v: v in hall.zones_by_id,
              "floor": lambda v: v.isdigit() and any(f.number == int(v) for f in hall.floors),
              "window": lambda v: v.isdigit() and int(v) in hall.windows_by_id}
    for param in params:
        value = query.get(param)
        if value is not None and not checks[param](value):
            return f"hall {hall.id!r} has no {param} {value!r}; see / for the hall's pages"
    return None


def _names(names: Names) -> dict[str, str]:
    return {lang: text for lang in ("zh", "en", "ja", "ko") if (text := getattr(names, lang))}


def hall_json(hall: Hall) -> dict[str, Any]:
    """The hall as pages need it (``GET /api/hall``): names, floors, zones, windows, services and
    their groups (the kiosk's headings)."""
    return {
        "id": hall.id, "name": _names(hall.name), "timezone": hall.timezone, "number_width": hall.number_width,
        "floors": [{"number": f.number, "name": _names(f.name)} for f in hall.floors],
        "zones": [{"id": z.id, "floor": z.floor, "name": _names(z.name)} for z in hall.zones],
        "windows": [{"id": w.id, "display": w.display, "zone": w.zone, "floor": w.floor, "skills": list(w.skills)}
                    for w in hall.windows],
        "services": [{"code": s.code, "prefix": s.prefix, "name": _names(s.name), "group": s.group,
                      "minutes": s.minutes} for s in hall.services],
        "groups": [{"code": g.code, "name": _names(g.name)} for g in hall.groups],
    }


# ---------------------------------------------------------------------- the index page


def _both(zh: str, en: str) -> str:
    return f'{html.escape(zh)} <span class="en">{html.escape(en)}</span>'


def _link(path: str, zh: str, en: str, **query: Any) -> str:
    href = path + ("?" + urlencode(query) if query else "")
    return f'<a href="{html.escape(href)}">{_both(zh, en)}</a>'


def index_html(hall: Hall) -> str:
    """The index page: every page kind per floor and zone, and a window picker. No tokens:
    each page asks for its device token (or takes ``?token=``). Its links are relative, so
    they work under a network router's ``/halls/<hall_id>/`` prefix too."""
    name = hall.name
    floors = []
    for floor in hall.floors:
        zones = []
        for zone in (z for z in hall.zones if z.floor == floor.number):
            windows = [w.id for w in hall.windows if w.zone == zone.id]
            span = f"{windows[0]}–{windows[-1]}" if len(windows) > 1 else "".join(map(str, windows))
            zones.append(
                f"<li><b>{_both(zone.name.zh, zone.name.en)}</b> "
                f"<small>{len(windows)} 个窗口 windows {span}</small><br>"
                f"{_link('board', *PAGES['board'][2:], zone=zone.id)} · "
                f"{_link('speaker', *PAGES['speaker'][2:], zone=zone.id)}</li>")
        floors.append(
            f"<section><h2>{_both(floor.name.zh, floor.name.en)}</h2>"
            f"<p>{_link('board', '整层大屏', 'Floor board', floor=floor.number)}</p>"
            f"<ul>{''.join(zones)}</ul></section>")
    options = "".join(f'<option value="{w.id}">{html.escape(w.display)} · '
                      f'{html.escape(hall.zones_by_id[w.zone].name.zh)}</option>' for w in hall.windows)
    first = _first_window(hall)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(name.zh)} · {html.escape(name.en)}</title>
<link rel="icon" href="static/favicon.svg" type="image/svg+xml">
<style>
body {{ font: 18px/1.5 system-ui, "Noto Sans CJK SC", sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #1b1b1b; }}
h1 {{ color: #a40000; }} .en {{ color: #555; font-size: .9em; }} small {{ color: #666; }}
section {{ border-top: 1px solid #ddd; }} li {{ margin: .4rem 0; }}
form {{ display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }}
input, button {{ font: inherit; padding: .3rem .6rem; }}
</style></head>
<body>
<h1>{_both(name.zh, name.en)}</h1>
<p>每个页面会询问设备令牌（或在地址后加 <code>?token=…</code>）。
<span class="en">Each page asks for its device token (or add <code>?token=…</code> to its address).</span></p>
<section><h2>{_both('窗口', 'Windows')}</h2>
<form action="led" method="get">
<label for="window">{_both('窗口号', 'Window')}</label>
<input id="window" name="window" list="windows" inputmode="numeric" required value="{first}">
<datalist id="windows">{options}</datalist>
<button type="submit">{_both(*PAGES['led'][2:])}</button>
<button type="submit" formaction="clerk">{_both(*PAGES['clerk'][2:])}</button>
</form></section>
<section><h2>{_both('取号', 'Tickets')}</h2><p>{_link('kiosk', *PAGES['kiosk'][2:])}</p></section>
<section><h2>{_both('管理', 'Managers')}</h2><p>{_link('manager', *PAGES['manager'][2:])}</p></section>
{''.join(floors)}
<section><p><small><a href="api/hall">/api/hall</a> · <a href="healthz">/healthz</a> ·
<a href="readyz">/readyz</a></small></p></section>
</body></html>
"""


def page_urls(server: CallsysServer, host: str | None = None) -> dict[str, str]:
    """The full URL of every page kind (the first zone and floor, that zone's first window)
    with a token of the hall file for its role — what ``callsys serve`` prints for the operator."""
    hall = server.hall
    base = f"http://{host or _public_host(server.host)}:{server.port}"
    zone, floor, window = hall.zones[0].id, hall.floors[0].number, _first_window(hall)
    where = {"board": {"zone": zone}, "board_floor": {"floor": floor}, "led": {"window": window},
             "clerk": {"window": window}, "kiosk": {}, "speaker": {"zone": zone}, "manager": {}}
    if hall.qr.doors:  # the entrance board, with the door code phones scan to take a number
        where["board_door"] = {"zone": zone, "door": hall.qr.doors[0]}
    urls = {"index": base + "/"}
    for name, query in where.items():
        page = name.split("_")[0]
        tokens = sorted(hall.tokens.get(PAGE_ROLES[page], ()))
        if tokens:
            query = {**query, "token": tokens[0]}
        urls[name] = f"{base}/{page}?{urlencode(query)}" if query else f"{base}/{page}"
    urls["api_docs"] = f"{base}/api/v1/docs"  # the integration API, tried from the browser
    return urls


def _first_window(hall: Hall) -> int:
    """The lowest-numbered window of the hall's first zone: the example window."""
    return min(w.id for w in hall.windows if w.zone == hall.zones[0].id)


def _public_host(host: str) -> str:
    """A host a browser on this machine can open for a server listening on *host*."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
