"""The API's request and response bodies (pydantic): they validate requests and are the
OpenAPI document's schemas, so the document and the checks cannot disagree.

Requests forbid unknown fields (a misspelt ``slot_strat`` is an error, not silently
ignored). Times go out as POSIX seconds (``slot_start``, ``slot_end``) like on the WebSocket;
a slot start comes in as POSIX seconds or as ISO 8601 with a UTC offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_TIME: Final = 4102444800.0  # 2100-01-01T00:00Z: the latest POSIX time a request may name (s)
RESIDENT_ID_CHARS: Final = 18  # characters of a resident id (GB 11643)

ServiceCode = Annotated[str, Field(min_length=1, max_length=32, description="a service code, e.g. `SOC`",
                                   examples=["SOC"])]
Epoch = Annotated[float, Field(ge=0, le=MAX_TIME, allow_inf_nan=False)]


def _posix(value: float | str) -> float:
    """A slot start as POSIX seconds: a number as it is, ISO 8601 text with its UTC offset."""
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not a time: give POSIX seconds or ISO 8601 (2026-11-23T10:00:00+08:00)") from None
        if at.tzinfo is None:
            raise ValueError("an ISO 8601 time needs its UTC offset (e.g. +08:00)")
        value = at.timestamp()
        if not 0 <= value <= MAX_TIME:
            raise ValueError("the time is out of range (1970-2100)")
    return float(value)


SlotStart = Annotated[Epoch | Annotated[str, Field(max_length=40, json_schema_extra={"format": "date-time"})],
                      AfterValidator(_posix), Field(
    description="the slot's start: POSIX seconds, or ISO 8601 with a UTC offset (`2026-11-23T10:00:00+08:00`)",
    examples=["2026-11-23T10:00:00+08:00"])]
ResidentId = Annotated[str, Field(min_length=RESIDENT_ID_CHARS, max_length=RESIDENT_ID_CHARS,
                                  description="the 18-character resident id (GB 11643); stored only as a keyed "
                                              "hash and a birth year, never shown")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BookingRequest(_Request):
    """Book an appointment slot."""

    service: ServiceCode
    slot_start: SlotStart
    resident_id: ResidentId | None = None
    green: bool = Field(default=False, description="the green channel (e.g. a disability the platform verified)")


class RescheduleRequest(_Request):
    """Move a booking to another slot of the same service."""

    slot_start: SlotStart


class CheckInRequest(_Request):
    """Check an appointment in with its signed QR payload."""

    qr: str = Field(min_length=1, max_length=512, description="the appointment's signed QR payload (`CS1.a....`)")


class TicketRequest(_Request):
    """Take a number remotely: with an API key, or on site with the door's current code."""

    service: ServiceCode
    resident_id: ResidentId | None = None
    door_code: str | None = Field(default=None, min_length=1, max_length=512,
                                  description="the door code payload from the entrance screen's QR (no API key then)")


class Names(BaseModel):
    zh: str
    en: str


class ServiceOut(BaseModel):
    code: str
    name: Names
    waiting: int = Field(description="tickets waiting for it now")
    estimated_wait_s: float | None = Field(description="a new ticket's estimated wait; null when no window is open")
    open_windows: int
    bookable: bool = Field(description="it takes appointments")


class SlotOut(BaseModel):
    slot_start: float = Field(description="POSIX seconds")
    slot_end: float
    capacity: int
    remaining: int


class ClosingWarning(BaseModel):
    """The hall's capacity-aware cutoff warns: the call is predicted past closing (hall ``[issuing]``)."""

    predicted_wait_s: float = Field(description="the estimated wait the ticket was issued with")
    closing: float = Field(description="POSIX seconds the day's last session ends")


class TicketOut(BaseModel):
    """A ticket or booking: where it stands, and how a phone follows it. Nothing personal."""

    ticket: int
    number: str | None = Field(description="the display number, e.g. `A023`; null while only booked")
    service: str
    channel: str = Field(description="`kiosk`, `qr` or `appointment`")
    status: str = Field(description="`booked`, `waiting`, `called`, `serving`, `done`, `cancelled`, ...")
    ahead: int = Field(description="tickets ahead of it in its queue")
    estimated_wait_s: float | None
    window: int | None = Field(description="the window it is called to")
    slot_start: float | None
    slot_end: float | None
    green: bool
    qr: str | None = Field(description="the signed QR payload")
    qr_svg: str | None = Field(description="URL of the QR image")
    phone_url: str | None = Field(description="URL of the phone page that follows the ticket")
    secret: str = Field(description="lets a phone follow this ticket (and `GET /tickets/{ticket}?secret=`)")
    closing_warning: ClosingWarning | None = Field(
        default=None, description="on `POST /tickets` only: the predicted call falls past closing (the hall's "
                                  "cutoff is `warn`); null otherwise")


class QrOut(BaseModel):
    ticket: int
    secret: str
    kind: str = Field(description="`ticket` or `appointment`")


class HallOut(BaseModel):
    hall: str
    name: Names
    time: str = Field(description="the hall's local time, ISO 8601 with offset")
    services: list[ServiceOut]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict


class ErrorOut(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------------- reports (GET /reports)


class WaitStatsOut(BaseModel):
    """Wait until the first call (:func:`sim.metrics.wait_stats`); the minutes are absent when nobody was called."""

    queued: int
    called: int
    p_wait: float | None = Field(description="share of the called who waited more than 0 s")
    mean_min: float | None = None
    p50_min: float | None = None
    p90_min: float | None = None
    p99_min: float | None = None
    max_min: float | None = None
    within_target: float | None = Field(description="share of all who queued called within the service's target")


class DurationsOut(BaseModel):
    """Service time at the window, from `service_started` to `service_finished` (min)."""

    served: int
    mean_min: float | None
    p50_min: float | None
    p90_min: float | None


class TicketsOut(BaseModel):
    queued: int = Field(description="tickets eligible in the period")
    by_channel: dict[str, int]
    by_service: dict[str, int]
    outcomes: dict[str, int] = Field(description="served, no_show, cancelled (abandonment), expired, waiting")


class WaitsOut(BaseModel):
    all: WaitStatsOut
    by_channel: dict[str, WaitStatsOut]
    by_service: dict[str, WaitStatsOut]


class ServiceTimeOut(BaseModel):
    all: DurationsOut
    by_service: dict[str, DurationsOut]


class WindowRatingsOut(BaseModel):
    window: int | None = Field(description="the window; null for the hall's total and for a clerk's figures")
    clerk: str | None = Field(None, description="the clerk's staff id (工号) in by_clerk; null otherwise")
    good: int
    bad: int
    unrated: int
    good_share: float | None
    scored: int
    mean_score: float | None


class RatingAlertOut(BaseModel):
    """A `bad` rating."""

    at: float = Field(description="POSIX seconds of the finish")
    ticket: int
    number: str | None
    window: int
    clerk: str | None = Field(None, description="staff id of the clerk who served; null when not named")
    score: int | None


class RatingsOut(BaseModel):
    all: WindowRatingsOut
    by_window: list[WindowRatingsOut]
    by_clerk: list[WindowRatingsOut] = Field(
        [], description="per clerk, by staff id: services finished at a window opened with a `clerk`")
    clerks_identified: bool = Field(description="true when a counted service named its clerk (by_clerk not empty)")
    alerts: list[RatingAlertOut]


class HourOut(BaseModel):
    hour: int = Field(ge=0, le=23)
    tickets: int
    waiting: float = Field(description="mean citizens waiting in that hour")


class HeatmapOut(BaseModel):
    zones: list[str]
    hours: list[int]
    values: list[list[float]] = Field(description="mean citizens waiting, one row per zone, one column per hour")


class ReportOut(BaseModel):
    """A past day (or days) rebuilt from the event log; definitions in `callsys/reports/__init__.py`."""

    hall: str
    timezone: str
    from_: str = Field(alias="from", description="first local date, YYYY-MM-DD")
    to: str = Field(description="last local date (included)")
    days: int
    start: float = Field(description="POSIX seconds of the first local midnight")
    end: float = Field(description="POSIX seconds of the local midnight after the last day")
    events: int = Field(description="events of the log folded (those before the period's end)")
    tickets: TicketsOut
    waits: WaitsOut
    service_time: ServiceTimeOut
    ratings: RatingsOut
    hours: list[HourOut]
    busiest: list[HourOut]
    heatmap: HeatmapOut
