"""The integration API over HTTP: ``/api/v1``, JSON, described by its own OpenAPI document.

FastAPI (Starlette + pydantic, both already in callsys) builds the app: the request and
response models of :mod:`.models` validate every request and are the schemas of the OpenAPI
document served at ``/api/v1/openapi.json``, so the document cannot drift from the checks.
It is mounted into the server's Starlette app (:func:`callsys.server.http.build_app`), so it
shares the one port, hypercorn's keep-alive and the connection caps.

Why FastAPI and not plain Starlette routes with a hand-written document: measured on one
server (8 kept-alive connections, 2-core EPYC, docs/performance.md), a plain Starlette
``GET /healthz`` costs the server ~1.3 ms of CPU per request — hypercorn's HTTP/1.1 handling
and Starlette's routing — while FastAPI's ``GET /api/v1/tickets/{id}`` (path validation, the
API-key dependency, the JSON answer) costs ~1.4 ms: FastAPI adds about a tenth to what any
HTTP request costs here, so dropping it would not change what limits ``benchmarks.api`` and
would leave a second description of the API to keep in step. The handlers return
``JSONResponse`` themselves (``response_model`` is for the document only), so no second
validation runs per answer.

The docs page ``/api/v1/docs`` is Swagger UI from the ``fastapi-offline`` package's assets,
served by callsys itself: it works in a hall with no Internet access (no CDN).

Commands go through :meth:`CallsysServer.execute` exactly like the WebSocket handlers: one
engine, one log, one idempotency table. The answer to a command is sent only once its events
are durable (``await pending.wait()``); if the log fails meanwhile the server stops and the
answer is ``unavailable`` (503). A repeated ``Idempotency-Key`` answers with the same status
and the ticket as it stands now; the command ran once. On a standby of a hall on a Redis store
a write is forwarded to the hall's owner (:mod:`.forward`) and the owner's answer returned.
"""

import hmac
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import fastapi_offline
from fastapi import Depends, FastAPI, Header, Path as PathParam, Query, Security
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import APIKeyHeader
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from .. import commands as cmd
from .. import qrcodes
from ..errors import InvalidState, QrRefused, UnknownTicket
from ..identity import derive_key
from ..events import Event
from ..log import LogError
from ..reports import period, report_from_log
from ..server import queries
from ..server.auth import phone_secret
from ..server.handlers import closing_warning, identify
from ..server.limits import address_key
from ..server.projections import service_summaries
from . import errors
from .auth import Caller, Gate, command_key
from .errors import ApiError
from .models import (BookingRequest, CheckInRequest, ErrorOut, HallOut, QrOut, ReportOut, RescheduleRequest,
                     ServiceOut, SlotOut, TicketOut, TicketRequest)

if TYPE_CHECKING:
    from ..server.serve import CallsysServer

BASE: Final = "/api/v1"  # where the API is mounted
ASSETS_DIR: Final = Path(fastapi_offline.__file__).resolve().parent / "static"  # Swagger UI, offline
FAVICON_URL: Final = "/static/favicon.svg"  # the server's own (displays/favicon.svg)
MAX_TICKET_ID: Final = 2**53  # larger ticket ids in a path are refused as invalid, not looked up
API_VERSION: Final = "1"
REPORT_CHUNK: Final = 2_000  # events folded between checkpoints while answering GET /reports (~20 ms of CPU)

TicketId = Annotated[int, PathParam(ge=1, le=MAX_TICKET_ID, description="the ticket id (`ticket` of a ticket object)")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", description="retrying with the same key executes the request once "
                                         "(per client, for the hall's day)")]

ERRORS: Final = {status: {"model": ErrorOut, "description": text} for status, text in (
    (400, "refused: the request can never succeed as written"), (401, "no API key, or an unknown one"),
    (404, "no such ticket or service"), (409, "refused by the hall's state (full slot, double booking, ...)"),
    (422, "invalid_request: a field does not fit the schema"), (429, "rate_limited; see Retry-After"))}


def build_api(server: "CallsysServer") -> FastAPI:
    """The API app of *server*, to mount at :data:`BASE`."""
    hall = server.hall
    qr_key = derive_key(server.secret, "qr")
    gate = Gate(hall.integrations, server.settings.api_public_rate_per_s, server.settings.api_public_burst)
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="the integration client's key (hall file, `[integrations.<name>]`)")

    app = FastAPI(
        title=f"callsys integration API — {hall.name.en}", version=API_VERSION,
        description="Book, reschedule and cancel appointments, take numbers remotely, check in with the "
                    "appointment's QR code, follow tickets and read the hall's queues. Errors: "
                    '`{"error": {"code", "message", "details"}}` (codes as on the WebSocket, docs/protocol.md).',
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )
    app.state.gate = gate
    errors.install(app)
    app.mount("/docs/assets", StaticFiles(directory=ASSETS_DIR, check_dir=False), name="docs-assets")

    # ------------------------------------------------------------------ helpers

    async def client(key: Annotated[str | None, Security(api_key)] = None) -> Caller:
        return gate.client(key)

    Client = Annotated[Caller, Depends(client)]
    ApiKey = Annotated[str | None, Security(api_key)]
    TicketSecret = Annotated[str | None, Query(max_length=64, description="the ticket's `secret`, instead of an "
                                                                          "API key (a phone, or after a restart)")]

    async def durable(command: cmd.Command) -> list[Event]:
        """Execute *command*; its events once durable."""
        events, pending = server.execute(command)
        if not pending.durable:
            try:
                await pending.wait()
            except LogError as exc:
                server.fail(exc)
        if server.failure is not None and not pending.durable:
            raise ApiError("unavailable", "the server stopped: its event log failed; retry once it is back")
        return events

    def ticket_object(tid: int) -> dict[str, Any]:
        t = server.engine.state.tickets[tid]
        p = server.engine.position(tid)
        qr = queries.ticket_qr(hall, server.secret, t)
        return {"ticket": tid, "number": t.number, "service": t.service, "channel": t.channel, "status": t.status,
                "ahead": p.ahead, "estimated_wait_s": p.estimated_wait_s, "window": p.window,
                "slot_start": t.slot_start, "slot_end": t.slot_end, "green": t.green,
                "qr": qr, "qr_svg": f"/qr/{qr}.svg", "phone_url": f"/phone?q={qr}",
                "secret": phone_secret(server.secret, hall.id, tid), "closing_warning": None}

    def owned(caller: Caller, tid: int, secret: str | None) -> int:
        """*tid* if *caller* may act on it (its client, or the ticket's secret); else not found."""
        known = tid in server.engine.state.tickets
        if known and (gate.may_see(caller, tid) or (secret is not None and hmac.compare_digest(
                secret, phone_secret(server.secret, hall.id, tid)))):
            return tid
        raise UnknownTicket(f"no ticket {tid} of yours in hall {hall.id!r}", ticket=tid)

    def identity(resident_id: str | None, green: bool = False) -> dict[str, Any]:
        """The command fields of a resident id (see :func:`callsys.server.handlers.identify`)."""
        fields = {"resident_id": resident_id, "green": green}
        identify(server, fields)
        return fields

    def acting(request: Request, key: str | None, tid: int, secret: str | None) -> tuple[Caller, int]:
        """Who acts on ticket *tid*: the API client of *key* (rate limit taken) that took or
        booked it, or — with no key — whoever holds the ticket's *secret* (limited per address)."""
        caller = gate.client(key) if key is not None or secret is None else gate.public(_host(request, server))
        return caller, owned(caller, tid, secret)

    def namespace(caller: Caller, tid: int) -> str:
        """Whose idempotency keys these are: the client's, or the ticket's for a secret holder."""
        return caller.name if caller.client is not None else f"ticket:{tid}"

    def services() -> list[dict[str, Any]]:
        capacity = hall.appointments.capacity
        return [{"code": s["code"], "name": s["name"], "waiting": s["waiting"],
                 "estimated_wait_s": s["estimated_wait_s"], "open_windows": s["windows_open"],
                 "bookable": capacity[s["code"]] > 0} for s in service_summaries(server.engine).values()]

    def answer(body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status)

    # ------------------------------------------------------------------ docs

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{BASE}/openapi.json", title=app.title,
                                   swagger_js_url=f"{BASE}/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url=f"{BASE}/docs/assets/swagger-ui.css",
                                   swagger_favicon_url=FAVICON_URL)

    # ------------------------------------------------------------------ reading

    @app.get("/services", response_model=list[ServiceOut], responses=ERRORS, tags=["hall"],
             summary="every service: queue, estimated wait, open windows, bookable")
    async def list_services(caller: Client) -> Response:
        return answer(services())

    @app.get("/services/{code}/slots", response_model=list[SlotOut], responses=ERRORS, tags=["appointments"],
             summary="a service's appointment slots on a day, with the places left")
    async def list_slots(caller: Client, code: Annotated[str, PathParam(max_length=32)],
                         day: Annotated[date | None, Query(alias="date", description="the hall's local date "
                                                           "(YYYY-MM-DD); today by default")] = None) -> Response:
        now = server.clock.now()
        day = hall.local_time(now).date() if day is None else day
        return answer(queries.slots(server.engine, code, day, now))

    @app.get("/hall", response_model=HallOut, responses=ERRORS, tags=["hall"],
             summary="the hall's name, local time and services")
    async def hall_status(caller: Client) -> Response:
        return answer({"hall": hall.id, "name": {"zh": hall.name.zh, "en": hall.name.en},
                       "time": hall.local_time(server.clock.now()).isoformat(timespec="seconds"),
                       "services": services()})

    @app.get("/reports", response_model=ReportOut, responses=ERRORS, tags=["hall"],
             summary="a past day (or days) rebuilt from the event log: tickets, waits, service times, ratings, "
                     "busiest hours, the zone x hour heatmap (as `callsys report --json`)")
    async def get_report(caller: Client, first: Annotated[date, Query(
            alias="date", description="the hall's local date (YYYY-MM-DD); with `to`: the first day")],
                         last: Annotated[date | None, Query(
            alias="to", description="the last local date of a range (included)")] = None) -> Response:
        report = await report_from_log(server.journal.log, hall, period(hall, first, last),
                                       upto=server.journal.durable_seq, chunk=REPORT_CHUNK)
        return answer(report.figures())

    @app.get("/tickets/{ticket}", response_model=TicketOut, responses=ERRORS, tags=["tickets"],
             summary="a ticket: status, people ahead, estimated wait, window when called")
    async def get_ticket(request: Request, ticket: TicketId, key: ApiKey = None,
                         secret: TicketSecret = None) -> Response:
        return answer(ticket_object(acting(request, key, ticket, secret)[1]))

    # ------------------------------------------------------------------ commands

    @app.post("/appointments", response_model=TicketOut, status_code=201, responses=ERRORS, tags=["appointments"],
              summary="book a slot (201: booked and durable)")
    async def book(body: BookingRequest, caller: Client, idempotency_key: IdempotencyKey = None) -> Response:
        command = cmd.BookSlot(server.clock.now(), body.service, body.slot_start,
                               **identity(body.resident_id, body.green), key=command_key(caller.name, idempotency_key))
        events = await durable(command)
        tid = events[0].ticket
        gate.owners[tid] = caller.name
        return answer(ticket_object(tid), 201)

    @app.post("/appointments/{ticket}/reschedule", response_model=TicketOut, responses=ERRORS,
              tags=["appointments"], summary="move a booking to another slot of its service (same ticket)")
    async def reschedule(request: Request, ticket: TicketId, body: RescheduleRequest, key: ApiKey = None,
                         secret: TicketSecret = None, idempotency_key: IdempotencyKey = None) -> Response:
        caller, tid = acting(request, key, ticket, secret)
        await durable(cmd.Reschedule(server.clock.now(), tid, body.slot_start,
                                     key=command_key(namespace(caller, tid), idempotency_key)))
        return answer(ticket_object(tid))

    @app.delete("/appointments/{ticket}", response_model=TicketOut, responses=ERRORS, tags=["appointments"],
                summary="cancel a booking (the ticket object, now cancelled)")
    async def cancel(request: Request, ticket: TicketId, key: ApiKey = None, secret: TicketSecret = None,
                     idempotency_key: IdempotencyKey = None) -> Response:
        caller, tid = acting(request, key, ticket, secret)
        await durable(cmd.Cancel(server.clock.now(), tid, key=command_key(namespace(caller, tid), idempotency_key)))
        return answer(ticket_object(tid))

    @app.post("/check-in", response_model=TicketOut, responses=ERRORS, tags=["appointments"],
              summary="check an appointment in with its QR code: the ticket, now waiting with a number")
    async def check_in(body: CheckInRequest, caller: Client, idempotency_key: IdempotencyKey = None) -> Response:
        tid = _ticket_of(qrcodes.verify(qr_key, hall.id, body.qr, server.clock.now(), {qrcodes.APPOINTMENT}))
        try:
            await durable(cmd.CheckIn(server.clock.now(), tid, key=command_key(caller.name, idempotency_key)))
        except InvalidState as exc:  # checked in or cancelled before: the code is spent
            raise QrRefused(f"this appointment code was already used (the booking is {exc.details['status']})",
                            reason="already_used", ticket=tid, status=exc.details["status"]) from None
        return answer(ticket_object(tid))

    @app.get("/qr/{payload}", response_model=QrOut, responses=ERRORS, tags=["tickets"],
             summary="PUBLIC: verify a ticket or appointment QR code; the ticket and its secret, for the phone page")
    async def qr_lookup(request: Request, payload: Annotated[str, PathParam(max_length=qrcodes.MAX_PAYLOAD)]) -> Response:
        gate.public(_host(request, server))
        claim = qrcodes.verify(qr_key, hall.id, payload, server.clock.now(), {qrcodes.TICKET, qrcodes.APPOINTMENT})
        tid = _ticket_of(claim)
        return answer({"ticket": tid, "secret": phone_secret(server.secret, hall.id, tid),
                       "kind": "appointment" if claim.kind == qrcodes.APPOINTMENT else "ticket"})

    def _ticket_of(claim: qrcodes.QrClaim) -> int:
        """The ticket a verified ticket or appointment code names (it must still exist)."""
        tid = int(claim.ident)
        if tid not in server.engine.state.tickets:
            raise UnknownTicket(f"ticket {tid} is no longer known in hall {hall.id!r}", ticket=tid)
        return tid

    @app.post("/tickets", response_model=TicketOut, status_code=201, responses=ERRORS, tags=["tickets"],
              summary="take a number remotely (channel qr): with an API key, or on site with the door code")
    async def take(request: Request, body: TicketRequest, idempotency_key: IdempotencyKey = None,
                   key: ApiKey = None) -> Response:
        if body.door_code is not None:  # a phone on site: PUBLIC, limited per address
            host = _host(request, server)
            gate.public(host)
            qrcodes.verify(qr_key, hall.id, body.door_code, server.clock.now(), {qrcodes.DOOR})
            namespace = f"door:{address_key(host)}"
        else:
            namespace = gate.client(key).name
        command = cmd.TakeNumber(server.clock.now(), body.service, "qr", **identity(body.resident_id),
                                 key=command_key(namespace, idempotency_key))
        events = await durable(command)
        tid = events[0].ticket
        if body.door_code is None:
            gate.owners[tid] = namespace
        return answer(ticket_object(tid) | {"closing_warning": closing_warning(events)}, 201)

    return app


def _host(request: Request, server: "CallsysServer") -> str:
    """The client's address: the peer's, or the one a trusted proxy (e.g. a standby forwarding
    to the owner, :mod:`.forward`) names last in ``X-Forwarded-For``."""
    peer = request.client.host if request.client is not None else "?"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and server.admission.is_trusted(peer):
        return forwarded.rsplit(",", 1)[-1].strip() or peer
    return peer
