"""QR images for the pages: a ticket's or an appointment's signed code, and the door code.

* ``GET /qr/{payload}.svg`` (public) — the image of a signed ticket or appointment payload
  (:mod:`callsys.qrcodes`), only for one that verifies now: a ticket's image encodes the phone
  page's address, ``<base>/phone?q=<payload>`` (scanning it opens the ticket on a phone), an
  appointment's the payload itself (the door scanner checks it in). A payload that does not
  verify gets no image: 400 when it is not a callsys payload at all (``malformed``), 404
  otherwise (forged, another hall's, a door code, expired), with the API's error body
  (``{"error": {"code": "qr_refused", "message", "details": {"reason"}}}``).
* ``GET /door/{door}.svg?token=<display or manager token>`` — the current door code of
  entrance *door* (one of the hall's ``[qr] doors``) as an image encoding
  ``<base>/take?door=<door code>``: a phone that scans it at the entrance takes a number on
  site. The code rotates every ``[qr] door_rotate_minutes``; the answer's
  ``X-Door-Rotates-At`` header says when (POSIX seconds, server clock), so the entrance
  board fetches the next one then (and every 30 s anyway). Only a device token may fetch
  it: the code is what lets a phone take a number, so it must not be had from home.

``<base>`` is the scheme and host the request came to (the address the board and the
phones use for this server). Images are SVG from ``segno`` (error correction M, a quiet zone
of 4 modules), ``cache-control: no-store``.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import segno
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import qrcodes
from ..errors import QrRefused
from ..identity import derive_key

if TYPE_CHECKING:
    from .serve import CallsysServer

SVG: Final = "image/svg+xml"
MODULE_PX: Final = 4  # pixels per QR module in the SVG's own size (pages scale it)
QUIET_ZONE: Final = 4  # modules of white border, as the QR standard asks
ERROR_LEVEL: Final = "m"  # error correction M: ~15 % of the code may be dirty or covered
DOOR_ROLES: Final = ("display", "manager")  # roles whose token may fetch the door code
NO_STORE: Final = {"cache-control": "no-store"}


def svg(content: str) -> bytes:
    """The QR image of *content* (the smallest version that holds it) as SVG."""
    buffer = io.BytesIO()
    segno.make(content, error=ERROR_LEVEL, micro=False).save(
        buffer, kind="svg", scale=MODULE_PX, border=QUIET_ZONE, xmldecl=False)
    return buffer.getvalue()


def phone_url(base: str, payload: str) -> str:
    """The phone page of the ticket whose signed payload is *payload*."""
    return f"{base.rstrip('/')}/phone?q={quote(payload, safe='')}"


def take_url(base: str, door_code: str) -> str:
    """The take-a-number page of a door code."""
    return f"{base.rstrip('/')}/take?door={quote(door_code, safe='')}"


def _error(status: int, code: str, message: str, **details: object) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status,
                        headers=NO_STORE)


def routes(server: CallsysServer) -> list[Route]:
    """The image routes of *server* (its hall, its secret, its clock)."""
    hall = server.hall
    key = derive_key(server.secret, "qr")
    device_tokens = frozenset(t for role in DOOR_ROLES for t in hall.tokens.get(role, ()))

    async def qr_image(request: Request) -> Response:
        payload = request.path_params["payload"]
        try:
            claim = qrcodes.verify(key, hall.id, payload, server.clock.now(), (qrcodes.TICKET, qrcodes.APPOINTMENT))
        except QrRefused as exc:
            status = 400 if exc.details.get("reason") == "malformed" else 404
            return _error(status, exc.code, exc.message, **exc.details)
        content = phone_url(str(request.base_url), payload) if claim.kind == qrcodes.TICKET else payload
        return Response(svg(content), media_type=SVG, headers=NO_STORE)

    async def door_image(request: Request) -> Response:
        door = request.path_params["door"]
        if request.query_params.get("token") not in device_tokens:
            return _error(401, "unauthorized", "the door code is for the entrance board: give a display token "
                                               "as ?token=")
        if door not in hall.qr.doors:
            return _error(404, "not_found", f"hall {hall.id!r} has no door {door!r}", doors=list(hall.qr.doors))
        now = server.clock.now()
        rotate_s = hall.qr.door_rotate_s
        code = qrcodes.door_code(key, hall.id, door, now, rotate_s)
        rotates_at = (qrcodes.door_period(now, rotate_s) + 1) * rotate_s
        return Response(svg(take_url(str(request.base_url), code)), media_type=SVG,
                        headers={**NO_STORE, "x-door-rotates-at": f"{rotates_at:.0f}", "x-door-code": code})

    return [Route("/qr/{payload}.svg", qr_image, name="qr_image"),
            Route("/door/{door}.svg", door_image, name="door_image")]
