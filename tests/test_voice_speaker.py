"""``callsys speaker`` as a user runs it, against a real server: a clerk calls, a WAV appears."""

from __future__ import annotations

import functools
import json
import os
import sys

import pytest
import trio

from voice.cli import SpeakerError, fetch, join_wavs
from voice.chime import chime_wav

from conftest import CONFIG
from server_support import client, hang_guard, server  # noqa: F401  (fixture)
from test_client_tools import TOOL_GUARD_S
from test_voice_render import MIN_RMS, wav_info


class Lines:
    """The JSON lines a tool prints, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream, self.buffer = stream, b""

    async def next(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            assert chunk, "the tool ended without printing the expected line"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    async def until(self, event: str) -> dict:
        while (record := await self.next())["event"] != event:
            pass
        return record


async def test_speaker_writes_each_announcement_as_a_wav(server, tmp_path):
    out = tmp_path / "said"
    argv = [sys.executable, "-m", "callsys", "speaker", "--zone", "social", "--out", str(out), "--json",
            "--count", "1", "--audio-dir", str(tmp_path / "cache"), "--url", server.url,
            "--config", str(CONFIG / "demo.toml")]
    with hang_guard(TOOL_GUARD_S):
        proc = await trio.lowlevel.open_process(argv, stdout=-1, env={**os.environ, "COLUMNS": "120"})
        try:
            lines = Lines(proc.stdout)
            assert (await lines.next()) == {"event": "connected", "zones": ["social"]}
            async with client(server, "kiosk") as kiosk, client(server, "clerk", window=10) as clerk:
                await kiosk.request("take_number", service="CIVIL")
                await clerk.request("open_window")
                await clerk.request("call_next")
            queued = await lines.until("queued")
            assert (queued["number"], queued["window"], queued["recall"]) == ("E001", 10, 0)
            written = await lines.until("written")
            assert await proc.wait() == 0  # --count 1: done after one announcement
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    path = out / "0001-E001-w10.wav"
    assert written["path"] == str(path) and os.listdir(out) == [path.name]
    info = wav_info(path.read_bytes())
    assert (info["rate"], info["channels"], info["width"]) == (22_050, 1, 2)
    chime_s = wav_info(chime_wav())["seconds"]
    assert chime_s + 2 * 0.8 < info["seconds"] < chime_s + 4 * 8.0  # chime + four languages of the demo hall
    assert info["rms"] > MIN_RMS


async def test_speaker_without_a_player_or_out_is_a_clear_error(server, tmp_path):
    argv = [sys.executable, "-m", "callsys", "speaker", "--zone", "social", "--url", server.url,
            "--config", str(CONFIG / "demo.toml")]
    with hang_guard(TOOL_GUARD_S):  # an empty PATH: no aplay, paplay or ffplay
        done = await trio.run_process(argv, env={**os.environ, "PATH": str(tmp_path)}, capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.returncode == 2
    assert b"no audio player found (aplay, paplay or ffplay)" in done.stderr and b"--out DIR" in done.stderr


def test_join_wavs_repeats_with_gaps():
    chime = chime_wav()
    once = wav_info(chime)["seconds"]
    twice = wav_info(join_wavs([chime, chime], repeat=2, gap_s=0.5))["seconds"]
    assert abs(twice - (4 * once + 3 * 0.5)) < 0.01


async def test_fetch_gets_audio_from_the_servers_http_side(nursery):
    chime = chime_wav()
    requests = []

    async def http(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some()
        target = head.split(b" ")[1].decode()
        requests.append(target)
        body, status = (chime, b"200 OK") if target == "/audio/abc.wav" else (b"unknown key\n", b"404 Not Found")
        await stream.send_all(b"HTTP/1.1 " + status + b"\r\ncontent-type: audio/wav\r\ncontent-length: "
                              + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, http, 0, host="127.0.0.1"))
    url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/ws"
    assert await fetch(url, "/audio/abc.wav") == chime
    with pytest.raises(SpeakerError, match="HTTP 404 unknown key"):
        await fetch(url, "/audio/nope.wav")
    assert requests == ["/audio/abc.wav", "/audio/nope.wav"]
