"""``GET /audio/{key}.wav``: the rendered audio of an announcement, as Starlette routes that
the server's HTTP app (:func:`callsys.server.http.build_app`) includes."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .announcer import Announcer
from .render import RenderError

# A key names one text, voice and rate: its audio never changes, so clients may keep it.
CACHE_CONTROL: Final = "public, max-age=86400, immutable"


def routes(announcer: Announcer) -> list[Route]:
    """The voice's HTTP routes, served from *announcer*."""

    async def audio(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            data = await announcer.wav(key)
        except RenderError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=503)
        if data is None:
            return PlainTextResponse(f"no audio {key!r}: unknown key\n", status_code=404)
        return Response(data, media_type="audio/wav", headers={"cache-control": CACHE_CONTROL})

    return [Route("/audio/{key}.wav", audio, methods=["GET"], name="audio")]
