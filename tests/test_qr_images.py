"""The QR image routes over real HTTP: a ticket's signed payload gives the SVG of its phone-page
address, an appointment's the SVG of the payload itself, anything that does not verify gets no
image (with the reason); the door code's image needs a display (or manager) token, encodes the
take page with a door code that verifies, and says when it rotates."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
import segno

from callsys import qrcodes
from callsys.identity import derive_key
from callsys.server.pages import svg
from server_support import SECRET, TOKENS, client, guard, server  # noqa: F401  (fixture)
from test_http import get

KEY = derive_key(SECRET, "qr")
BASE = "http://127.0.0.1"  # the host the test requests name


def version_and_width(body: bytes) -> tuple[int, int]:
    """The QR version an SVG of segno's is drawn for, from its pixel width (4 px per module,
    a quiet zone of 4 modules each side), and that width."""
    width = int(re.search(rb'width="(\d+)"', body)[1])
    modules = width // 4 - 8
    return (modules - 17) // 4, width


def flip(payload: str) -> str:
    """*payload* with the last character of its signature changed."""
    return payload[:-1] + ("A" if payload[-1] != "A" else "B")


def expected_version(content: str) -> int:
    return segno.make(content, error="m", micro=False).version


@guard()
async def test_a_ticket_payload_is_the_image_of_its_phone_page(server):
    payload = qrcodes.sign(KEY, qrcodes.TICKET, "demo", 12, server.clock.now() + 3600)
    reply = await get(server, f"/qr/{payload}.svg")
    assert reply.status == 200 and reply.headers["content-type"] == "image/svg+xml"
    assert reply.headers["cache-control"] == "no-store"
    assert reply.body.startswith(b"<svg") and reply.body.rstrip().endswith(b"</svg>")
    content = f"{BASE}/phone?q={quote(payload, safe='')}"
    assert version_and_width(reply.body)[0] == expected_version(content)
    assert reply.body == svg(content)  # segno draws the same content the same way: the image is of that address


@guard()
async def test_an_appointment_payload_is_the_image_of_itself(server):
    payload = qrcodes.sign(KEY, qrcodes.APPOINTMENT, "demo", 3, server.clock.now() + 3600)
    reply = await get(server, f"/qr/{payload}.svg")
    assert reply.status == 200 and reply.body == svg(payload)
    assert version_and_width(reply.body)[0] == expected_version(payload)


@pytest.mark.parametrize("make, status, reason", [
    (lambda now: "not-a-payload", 400, "malformed"),
    (lambda now: flip(qrcodes.sign(KEY, "t", "demo", 12, now + 3600)), 404, "forged"),
    (lambda now: qrcodes.sign(b"another key", "t", "demo", 12, now + 3600), 404, "forged"),
    (lambda now: qrcodes.sign(KEY, "t", "demo", 12, now + 3600).replace(".12.", ".13."), 404, "forged"),
    (lambda now: qrcodes.sign(KEY, "t", "qingdao", 12, now + 3600), 404, "wrong_hall"),
    (lambda now: qrcodes.sign(KEY, "t", "demo", 12, now - 1), 404, "expired"),
    (lambda now: qrcodes.door_code(KEY, "demo", "main", now, 300), 404, "wrong_kind"),
])
@guard()
async def test_a_payload_that_does_not_verify_gets_no_image(server, make, status, reason):
    reply = await get(server, f"/qr/{make(server.clock.now())}.svg")
    assert reply.status == status
    error = reply.json()["error"]
    assert error["code"] == "qr_refused" and error["details"]["reason"] == reason and error["message"]


@guard()
async def test_the_door_code_image_needs_a_device_token_and_encodes_the_take_page(server):
    for query in ("", "?token=", f"?token={TOKENS['kiosk']}", f"?token={TOKENS['clerk']}", "?token=nope"):
        refused = await get(server, f"/door/main.svg{query}")
        assert refused.status == 401 and refused.json()["error"]["code"] == "unauthorized"
    unknown = await get(server, f"/door/back.svg?token={TOKENS['display']}")
    assert unknown.status == 404 and unknown.json()["error"]["details"] == {"doors": ["main"]}

    now = server.clock.now()
    for role in ("display", "manager"):
        reply = await get(server, f"/door/main.svg?token={TOKENS[role]}")
        assert reply.status == 200 and reply.headers["content-type"] == "image/svg+xml"
        code = reply.headers["x-door-code"]
        claim = qrcodes.verify(KEY, "demo", code, now, {qrcodes.DOOR})
        rotate_s = server.hall.qr.door_rotate_s
        period = int(now // rotate_s)
        assert claim.ident == f"main:{period}"
        assert float(reply.headers["x-door-rotates-at"]) == (period + 1) * rotate_s
        assert reply.body == svg(f"{BASE}/take?door={quote(code, safe='')}")
        assert reply.headers["cache-control"] == "no-store"
@guard()
async def test_the_kiosk_ticket_qr_gives_an_image(server):
    async with client(server, "kiosk") as kiosk:
        ticket = await kiosk.request("take_number", service="SOC")
    claim = qrcodes.verify(KEY, "demo", ticket["qr"], server.clock.now(), {qrcodes.TICKET})
    assert claim.ident == str(ticket["ticket"])
    reply = await get(server, f"/qr/{ticket['qr']}.svg")
    assert reply.status == 200 and reply.body == svg(f"{BASE}/phone?q={quote(ticket['qr'], safe='')}")
