"""Announcement audio (voice.render, voice.announcer, voice.http, voice.chime): real speech
from espeak-ng, rendered off the trio thread, once per key, cached in memory and on disk."""

from __future__ import annotations

import io
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from voice import render
from voice.announcer import Announcer, audio_directory
from voice.chime import SAMPLE_RATE, chime_wav
from voice.http import routes
from voice.render import RenderError, Renderer, espeak_synthesise, speech_thread
from voice.templates import Announcements, Utterance

from server_support import client, guard, push_of, server  # noqa: F401 (fixture)
from test_http import get as http_get

ROOT = Path(__file__).resolve().parent.parent
MIN_RMS = 500  # of 32767: speech is far louder; silence (and a broken voice) is ~0


def wav_info(data: bytes) -> dict[str, Any]:
    """Format, duration and loudness of a WAV file."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as w:
        rate, channels, width, frames = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        samples = np.frombuffer(w.readframes(frames), dtype="<i2").astype(np.float64)
    return {"rate": rate, "channels": channels, "width": width, "seconds": frames / rate,
            "rms": float(np.sqrt(np.mean(samples ** 2))) if frames else 0.0}


def utterances(lang_text: dict[str, str] | None = None, number: str = "A023", window: str = "15",
               languages=("zh", "en", "ja", "ko")) -> dict[str, Utterance]:
    from callsys.hall import Voice

    return {u.lang: u for u in Announcements(Voice(languages=languages)).utterances(number, window)}


class Counting:
    """A synthesiser that counts its calls and the threads they run on."""

    def __init__(self, inner=espeak_synthesise, fail: bool = False, gated: bool = False) -> None:
        self.inner, self.fail = inner, fail
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()  # a gated synthesiser starts once the test opens the gate
        if not gated:
            self.gate.set()

    def __call__(self, utterance: Utterance, path: Path) -> None:
        self.calls.append(utterance.spoken)
        self.threads.add(threading.get_ident())
        self.gate.wait()
        if self.fail:
            raise RuntimeError("no such voice")
        self.inner(utterance, path)


async def test_a_chinese_announcement_is_real_speech(tmp_path):
    renderer = Renderer(tmp_path)
    zh = utterances()["zh"]
    info = wav_info(await renderer.wav(zh))
    assert (info["rate"], info["channels"], info["width"]) == (22_050, 1, 2)
    assert 0.8 <= info["seconds"] <= 6.0
    assert info["rms"] > MIN_RMS


@pytest.mark.parametrize("lang", ["en", "ja", "ko"])
async def test_every_language_is_real_speech(tmp_path, lang):
    info = wav_info(await Renderer(tmp_path).wav(utterances()[lang]))
    assert 0.8 <= info["seconds"] <= 8.0 and info["rms"] > MIN_RMS


async def test_duration_grows_with_the_text(tmp_path):
    renderer = Renderer(tmp_path)
    short = Utterance("zh", "请 A 零 二 三 号", "cmn-latn-pinyin", 150)
    long = Utterance("zh", "请 A 零 二 三 号到 二千一百零五 号窗口办理, 请 A 零 二 三 号到 二千一百零五 号窗口办理",
                     "cmn-latn-pinyin", 150)
    assert wav_info(await renderer.wav(long))["seconds"] > 2 * wav_info(await renderer.wav(short))["seconds"]


async def test_a_slower_rate_is_longer(tmp_path):
    renderer = Renderer(tmp_path)
    fast, slow = (Utterance("en", "Number A-zero two three, please go to window fifteen", "en", rate)
                  for rate in (300, 100))
    assert wav_info(await renderer.wav(slow))["seconds"] > 1.5 * wav_info(await renderer.wav(fast))["seconds"]


async def test_renders_run_on_the_speech_thread_never_the_trio_thread(tmp_path):
    synth = Counting()
    await Renderer(tmp_path, synthesise=synth).wav(utterances()["en"])
    assert synth.threads == {speech_thread().ident}
    assert threading.get_ident() not in synth.threads


async def test_a_cached_key_is_not_rendered_again_memory_then_disk(tmp_path):
    synth = Counting()
    renderer = Renderer(tmp_path, synthesise=synth)
    zh = utterances()["zh"]
    first = await renderer.wav(zh)
    assert await renderer.wav(zh) == first
    assert (len(synth.calls), renderer.statistics().memory_hits) == (1, 1)
    assert renderer.path(zh.key).read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == [f"{zh.key}.wav"]  # no temporary file left
    restarted = Renderer(tmp_path, synthesise=synth)  # a new process: the disk has it
    restarted.prepare(zh)
    assert await restarted.wav(zh) == first
    assert (len(synth.calls), restarted.statistics().disk_hits) == (1, 1)


async def test_concurrent_requests_for_one_key_render_once(tmp_path):
    synth = Counting(gated=True)
    renderer = Renderer(tmp_path, synthesise=synth)
    zh = utterances()["zh"]
    results = []

    async def ask() -> None:
        results.append(await renderer.wav(zh))

    async with trio.open_nursery() as nursery:
        renderer.prepare(zh)
        for _ in range(10):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        synth.gate.set()
    assert len(synth.calls) == 1 and renderer.statistics().joined == 10
    assert len(results) == 10 and len(set(results)) == 1


async def test_a_failed_render_raises_for_every_waiter_and_is_retried(tmp_path):
    broken = Counting(fail=True, gated=True)
    renderer = Renderer(tmp_path, synthesise=broken)
    en = utterances()["en"]
    errors = []

    async def ask() -> None:
        try:
            await renderer.wav(en)
        except RenderError as exc:
            errors.append(str(exc))

    async with trio.open_nursery() as nursery:
        renderer.prepare(en)
        for _ in range(3):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        broken.gate.set()
    assert errors == ["rendering failed: RuntimeError: no such voice"] * 3 and len(broken.calls) == 1
    broken.fail = False
    assert wav_info(await renderer.wav(en))["rms"] > MIN_RMS
    assert list(tmp_path.iterdir()) == [renderer.path(en.key)]


async def test_an_unknown_voice_is_a_render_error(tmp_path):
    with pytest.raises(RenderError):
        await Renderer(tmp_path).wav(Utterance("en", "hello", "no-such-voice-xx", 150))


async def test_the_memory_cache_is_bounded_least_recently_used_first(tmp_path):
    synth = Counting()
    u = utterances()
    renderer = Renderer(None, synthesise=synth, memory_bytes=1)
    await renderer.wav(u["zh"])
    await renderer.wav(u["en"])
    stats = renderer.statistics()
    assert stats.memory_items == 1 and renderer.cached(u["en"].key) and renderer.cached(u["zh"].key) is None
    await renderer.wav(u["zh"])  # no directory: evicted means rendered again
    assert len(synth.calls) == 3


async def test_the_disk_cache_is_bounded_oldest_render_first(tmp_path):
    u = utterances()
    first = Renderer(tmp_path)
    await first.wav(u["zh"])
    await first.wav(u["en"])
    second = Renderer(tmp_path, disk_bytes=len(await first.wav(u["ja"])) + 1)  # room for one more WAV
    await second.wav(u["ko"])
    assert sorted(tmp_path.iterdir()) == [second.path(u["ko"].key)]
    await second.wav(u["zh"])  # rendered again: it had gone
    assert sorted(tmp_path.iterdir()) == [second.path(u["zh"].key)]


async def test_the_announcer_serves_prepared_keys_and_refuses_others(tmp_path):
    from callsys.hall import Voice

    announcer = Announcer(Renderer(tmp_path))
    message = Announcements(Voice()).fields("C007", "2105")
    announcer.prepare(message)
    key = message["audio"][1]["url"].removeprefix("/audio/").removesuffix(".wav")
    assert wav_info(await announcer.wav(key))["rms"] > MIN_RMS
    assert await announcer.wav("0" * 24) is None
    assert await announcer.wav("../../etc/passwd") is None
    assert await Announcer(Renderer(tmp_path)).wav(key) is not None  # a restart: from disk


def test_audio_directory_is_next_to_the_store():
    assert audio_directory("file:var/callsys.db") == Path("var/audio")
    assert audio_directory("file:/srv/hall/x.db") == Path("/srv/hall/audio")
    assert audio_directory("redis://localhost") == render.DEFAULT_DIRECTORY


async def asgi_get(app, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET through an ASGI app, in process."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [], "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "root_path": ""}
    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def test_audio_route_serves_wav_and_404s_unknown_keys(tmp_path):
    from starlette.applications import Starlette

    from callsys.hall import Voice

    announcer = Announcer(Renderer(tmp_path))
    app = Starlette(routes=routes(announcer))
    message = Announcements(Voice()).fields("A001", "3")
    announcer.prepare(message)
    status, headers, body = await asgi_get(app, message["audio"][0]["url"])
    assert (status, headers["content-type"]) == (200, "audio/wav")
    assert wav_info(body)["rms"] > MIN_RMS
    status, _, body = await asgi_get(app, "/audio/" + "f" * 24 + ".wav")
    assert status == 404 and b"unknown key" in body


def test_the_shipped_chime_is_the_synthesised_one():
    shipped = (ROOT / "displays" / "chime.wav").read_bytes()
    assert shipped == chime_wav()
    info = wav_info(shipped)
    assert (info["rate"], info["channels"], info["width"]) == (SAMPLE_RATE, 1, 2)
    assert 0.8 <= info["seconds"] <= 1.5 and info["rms"] > MIN_RMS


@guard()
async def test_the_server_renders_an_announcement_when_it_pushes_it(server):
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=10) as clerk, \
            client(server, "speaker", subscribe={"zones": ["social"]}) as speaker:
        await kiosk.request("take_number", service="CIVIL")
        await clerk.request("open_window")
        await clerk.request("call_next")
        announce = await push_of(speaker, "announce")
        assert announce["chime"] == "/static/chime.wav" and announce["repeat"] == 1
        for audio in announce["audio"]:  # fetched as a speaker page does: over HTTP, same port
            reply = await http_get(server, audio["url"])
            assert reply.status == 200 and reply.headers["content-type"] == "audio/wav"
            info = wav_info(reply.body)
            assert 0.8 <= info["seconds"] <= 8.0 and info["rms"] > MIN_RMS
        assert server.announcer.renderer.statistics().renders == len(announce["audio"])
        assert (await http_get(server, "/audio/" + "0" * len(key_of(announce)) + ".wav")).status == 404


def key_of(announce: dict) -> str:
    return announce["audio"][0]["url"].removeprefix("/audio/").removesuffix(".wav")


async def test_prepare_stops_queueing_past_the_backlog_and_renders_on_request(tmp_path):
    """A burst of calls (a load test calling hundreds a second) never piles up renders:
    past PREPARE_BACKLOG, prepare starts nothing, and a speaker's request still gets the audio."""
    from voice.render import PREPARE_BACKLOG
    from voice.templates import Utterance

    synth = Counting(gated=True)
    renderer = Renderer(tmp_path, synthesise=synth)
    zh = utterances()["zh"]
    many = [Utterance(zh.lang, f"请 A {i} 号到 一 号窗口办理", zh.voice, zh.rate) for i in range(PREPARE_BACKLOG + 5)]
    for utterance in many:
        renderer.prepare(utterance)
    assert renderer.statistics().skipped == 5
    synth.gate.set()
    assert await renderer.wav(many[-1])  # skipped, then asked for: rendered on request
    assert renderer.statistics().renders == PREPARE_BACKLOG + 1


async def test_the_speech_process_renders_real_speech_and_comes_back_after_dying(tmp_path):
    """The server's synthesiser: a child process with its own engine (the event loop keeps
    the GIL); killed, the next render starts another."""
    speech = render.SpeechProcess()
    renderer = Renderer(tmp_path, synthesise=speech)
    try:
        zh = utterances()["zh"]
        info = wav_info(await renderer.wav(zh))
        assert 0.8 <= info["seconds"] <= 6.0 and info["rms"] > MIN_RMS
        first = speech._process
        first.kill()
        await trio.to_thread.run_sync(first.join)
        en = utterances()["en"]
        assert wav_info(await renderer.wav(en))["rms"] > MIN_RMS
        assert speech._process is not first and speech._process.is_alive()
    finally:
        await trio.to_thread.run_sync(speech.close)
