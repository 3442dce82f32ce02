"""Announcement audio ready: how long after a call its WAVs can be served.

An announcement is "ready" when the audio of every language of the hall's ``[voice]`` table
is available: :meth:`voice.announcer.Announcer.prepare` is called as the server builds the
``announce`` push, then :meth:`~voice.announcer.Announcer.wav` is awaited for each of its
keys (what ``GET /audio/<key>.wav`` does).

* ``cold_p99_ms``: a new announcement (a ticket number not said before) rendered from scratch
  by the speech thread, already started; one announcement at a time, so this is the render
  itself, not a queue behind other renders;
* ``burst_p99_ms``: ``--burst`` new announcements prepared at once (a wave of calls at
  opening time), each measured until its audio is ready: the speech thread works through
  them one by one;
* ``warm_p99_ms``: an announcement said before, served from the memory cache;
* ``warm_disk_p99_ms``: served from the disk cache (a restarted server; memory cache empty).

Targets: 50 ms warm, 250 ms cold (issue 8).
"""

from __future__ import annotations

import tempfile
import time
from statistics import quantiles

import trio

from callsys.hall import load_hall
from voice.announcer import Announcer
from voice.render import Renderer, SpeechProcess
from voice.templates import Announcements

from ._report import Row, parser, report, row


def _ms(values: list[float], q: int) -> float:
    """The q-th percentile of *values* (seconds) in milliseconds."""
    return quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


async def _ready(announcer: Announcer, message: dict) -> float:
    """Seconds from prepare() until every language's audio is served."""
    start = time.perf_counter()
    announcer.prepare(message)
    for audio in message["audio"]:
        data = await announcer.wav(audio["url"].removeprefix("/audio/").removesuffix(".wav"))
        assert data is not None and data[:4] == b"RIFF"
    return time.perf_counter() - start


async def run(config: str, *, count: int, burst: int, warm: int) -> tuple[list[Row], int]:
    hall = load_hall(config)
    texts = Announcements(hall.voice)
    displays = [w.display for w in hall.windows]
    messages = [texts.fields(f"{'ABCDEFGH'[n % 8]}{n:03d}", displays[n % len(displays)]) for n in range(count + burst)]
    with tempfile.TemporaryDirectory(prefix="callsys-voice-") as tmp:
        speech = SpeechProcess()  # what the server renders with (Announcer.for_store)
        announcer = Announcer(Renderer(tmp, synthesise=speech))
        await _ready(announcer, texts.fields("Z999", displays[0]))  # start the speech process and its engine
        cold = [await _ready(announcer, m) for m in messages[:count]]
        bursts: list[float] = []

        async def one(message: dict) -> None:
            bursts.append(await _ready(announcer, message))

        async with trio.open_nursery() as nursery:
            for message in messages[count:]:
                nursery.start_soon(one, message)
        warm_memory = [await _ready(announcer, messages[i % count]) for i in range(warm)]
        restarted = Announcer(Renderer(tmp, memory_bytes=0))  # keeps only the last WAV: every other is a disk hit
        for message in messages[:count]:
            restarted.prepare(message)  # the server learns the keys again from its pushes
        warm_disk = [await _ready(restarted, messages[i % count]) for i in range(warm)]
        renders = announcer.renderer.statistics().renders
        await trio.to_thread.run_sync(speech.close)
    rows = [
        row("cold_p50_ms", _ms(cold, 50), "ms", None),
        row("cold_p99_ms", _ms(cold, 99), "ms", "<= 250"),
        row("burst_p99_ms", _ms(bursts, 99), "ms", None),
        row("warm_p99_ms", _ms(warm_memory, 99), "ms", "<= 50"),
        row("warm_disk_p99_ms", _ms(warm_disk, 99), "ms", "<= 50"),
    ]
    return rows, renders


def main() -> None:
    p = parser("Announcement audio ready: cold renders through pyttsx3/espeak-ng, warm from the caches.")
    p.add_argument("--config", default="config/qingdao.toml", help="hall file: its [voice] table (default: %(default)s)")
    p.add_argument("--count", type=int, default=100, help="cold announcements, one at a time (default: %(default)s)")
    p.add_argument("--burst", type=int, default=20, help="announcements prepared at once (default: %(default)s)")
    p.add_argument("--warm", type=int, default=1000, help="warm requests per cache (default: %(default)s)")
    args = p.parse_args()
    rows, renders = trio.run(lambda: run(args.config, count=args.count, burst=args.burst, warm=args.warm))
    languages = ", ".join(load_hall(args.config).voice.languages)
    notes = [f"an announcement = every language of {args.config} ({languages}); {renders} texts rendered",
             "rendered as the server does: a speech process with one pyttsx3 engine, fed by the speech thread "
             "(see voice/render.py)"]
    report("benchmarks.voice — announcement audio ready", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
