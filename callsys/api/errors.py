"""The API's error answers: every refusal is a 4xx JSON body, never a 5xx for bad input.

Body: ``{"error": {"code": str, "message": str, "details": {...}}}``. The codes are the
WebSocket protocol's (docs/protocol.md, "Errors") plus ``unauthorized`` (401),
``rate_limited`` (429, with ``Retry-After``), ``invalid_request`` (422: the body, a query or a
path parameter does not fit the schema; ``details`` names the field and the reason) and
``not_found`` (404: no such path). An engine refusal keeps the engine's code; its HTTP status
says what kind of refusal it is (:data:`STATUS`): 404 for something that does not exist, 409
for a conflict with the hall's state (a full slot, a double booking, a ticket in the wrong
state), 400 for a request that can never succeed as written.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..errors import EngineError
from ..protocol.errors import ProtocolError

STATUS: Final = {  # engine/protocol error code -> HTTP status (any other code: 400)
    "unknown_service": 404, "unknown_ticket": 404, "unknown_window": 404, "not_found": 404,
    "slot_full": 409, "already_holding": 409, "booking_blocked": 409, "invalid_state": 409, "key_reused": 409,
    "hall_closed": 409, "checkin_rejected": 409, "window_closed": 409, "window_busy": 409, "window_idle": 409,
    "queue_empty": 409, "daily_cap_reached": 409, "past_closing": 409,
    "unauthorized": 401, "forbidden": 403, "rate_limited": 429, "invalid_request": 422,
    "unavailable": 503, "internal": 500,
}


class ApiError(Exception):
    """A refusal of the API layer itself (auth, rate limit, not found, unavailable).

    Args:
        code: the error code (a key of :data:`STATUS`).
        message: what went wrong, for a person.
        retry_after_s: seconds for a ``Retry-After`` header, or None.
        details: machine-readable specifics.
    """

    def __init__(self, code: str, message: str, *, retry_after_s: float | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.details = details


def error_response(code: str, message: str, details: dict[str, Any] | None = None,
                   retry_after_s: float | None = None) -> JSONResponse:
    """The JSON answer for error *code* with its status."""
    headers = {"retry-after": str(max(1, math.ceil(retry_after_s)))} if retry_after_s is not None else None
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=STATUS.get(code, 400), headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error of *app* with the JSON body above."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.code, exc.message, exc.details, exc.retry_after_s)

    @app.exception_handler(EngineError)
    async def engine_error(request: Request, exc: EngineError) -> JSONResponse:
        return error_response(exc.code, exc.message, _plain(exc.details))

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        # a standby's `unavailable` says when to retry (callsys.server.standby): a Retry-After header too
        return error_response(exc.code, exc.message, _plain(exc.details), exc.details.get("retry_after_s"))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(part) for part in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        first = problems[0] if problems else {"field": "?", "reason": "invalid"}
        return error_response("invalid_request", f"{first['field']}: {first['reason']}",
                              {"field": first["field"], "reason": first["reason"], "problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response("not_found", f"no such endpoint: {request.url.path}; see /api/v1/docs")
        if exc.status_code == 405:
            response = error_response("method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
            response.status_code = 405
            if exc.headers:
                response.headers.update(exc.headers)
            return response
        response = error_response("invalid_request", str(exc.detail))
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:  # a bug: logged, the server keeps serving
        logging.getLogger("callsys.api").exception("API request failed: %s %s", request.method, request.url.path)
        return error_response("internal", f"internal error: {type(exc).__name__}")


async def outer_not_found(request: Request, exc: Exception) -> Response:
    """The server app's 404: JSON under ``/api/v1/`` (a path the mount cannot match, e.g. one
    with a newline in it, still gets the API's error body), Starlette's plain text elsewhere."""
    if request.url.path.startswith("/api/v1/"):
        return error_response("not_found", "no such endpoint; see /api/v1/docs")
    return PlainTextResponse("Not Found", status_code=404)


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """*details* with values JSON can carry (NaN and infinities become None)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in details.items()}
