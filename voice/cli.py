"""``callsys speaker --zone Z``: a zone's speaker — plays the announcements of its windows.

It signs in as a ``speaker`` device (reconnecting by itself), keeps one
:class:`~voice.queue.AnnouncementQueue` per zone (calls in ``seq`` order, one at a time, a
recall merged into its queued call), and for each announcement plays the chime and then
every language, ``repeat`` times, through the system player (``aplay``, ``paplay`` or
``ffplay``, the first found) — or, with ``--out DIR``, writes it as a numbered WAV file.

The audio is rendered here through :mod:`voice.render` (the same cache as the server's,
``var/audio`` by default), or fetched from the server's ``/audio/<key>.wav`` with
``--source server``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import wave
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import h11
import trio
from rich.console import Console
from rich.markup import escape

from callsys.cli import command
from callsys.client import connect_device
from callsys.errors import CallsysError
from callsys.tools.common import add_connection_args, run_tool, token_for

from .chime import chime_wav
from .queue import AnnouncementQueue, Entry
from .render import DEFAULT_DIRECTORY, RenderError, Renderer
from .templates import utterances_of

# (program, arguments before the file): the first one installed plays the announcements
PLAYERS: Final = (("aplay", ("-q",)), ("paplay", ()), ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "quiet")))
GAP_S: Final = 0.35  # silence between the chime, the languages and the repeats
FETCH_TIMEOUT_S: Final = 10.0


class SpeakerError(CallsysError):
    """The speaker cannot play: no system player and no ``--out``, or audio unavailable."""

    code = "speaker_error"


@command("speaker", help="a zone's speaker: play its announcements, or write them as WAV files")
def _speaker_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "A zone's speaker. Signs in as a speaker device (reconnecting by itself), keeps one queue per zone "
        "(calls in order, one at a time, a recall merged into its queued call) and says each announcement: "
        "the chime, then every language of the hall's [voice] table, 'repeat' times. Plays through aplay, "
        "paplay or ffplay (the first installed), or writes numbered WAV files with --out DIR. The audio is "
        "rendered here with espeak-ng (cached in --audio-dir, the server's cache by default) or fetched from "
        "the server with --source server.")
    add_connection_args(p)
    p.add_argument("--zone", action="append", required=True, metavar="Z",
                   help="a zone to announce (repeat for more; one queue per zone)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write each announcement as DIR/NNNN-<number>-w<window>.wav instead of playing it")
    p.add_argument("--source", choices=("local", "server"), default="local",
                   help="render the audio here (default) or fetch it from the server's /audio/<key>.wav")
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_DIRECTORY,
                   help="the render cache for --source local (default: %(default)s)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N announcements (for scripts)")
    p.set_defaults(run=_speaker)


def _speaker(args: argparse.Namespace) -> int:
    console = Console()
    player = None if args.out else find_player()
    if args.out is None and player is None:
        raise SpeakerError("no audio player found (aplay, paplay or ffplay): install alsa-utils, pulseaudio-utils "
                           "or ffmpeg, or pass --out DIR to write WAV files")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    token = token_for(args, "speaker")
    speaker = Speaker(args, player, console)

    async def main() -> int:
        async with connect_device(args.url, role="speaker", token=token, subscribe={"zones": args.zone},
                                  fmt=args.fmt) as device:
            if args.json:
                print(json.dumps({"event": "connected", "zones": args.zone}), flush=True)
            else:
                console.print(f"[bold]speaker[/] for {', '.join(args.zone)} at {device.welcome['hall_name']['zh']} "
                              f"({'writing to ' + str(args.out) if args.out else 'playing with ' + player[0]})")
            await speaker.run(device)
        return 0

    return run_tool(main, console)


def find_player() -> tuple[str, ...] | None:
    """The command line (without the file) of the first installed system player, or None."""
    for program, options in PLAYERS:
        path = shutil.which(program)
        if path is not None:
            return (path, *options)
    return None


class Speaker:
    """One speaker process: queues per zone, and the task playing each."""

    def __init__(self, args: argparse.Namespace, player: tuple[str, ...] | None, console: Console) -> None:
        self.args = args
        self.player = player
        self.console = console
        self.queues = {zone: AnnouncementQueue() for zone in args.zone}
        self.wake = {zone: trio.Event() for zone in args.zone}
        self.renderer = Renderer(args.audio_dir) if args.source == "local" else None
        self.said = 0
        self._finished = trio.Event()

    async def run(self, device: Any) -> None:
        async with trio.open_nursery() as nursery:
            for zone in self.queues:
                nursery.start_soon(self._play, zone)
            nursery.start_soon(self._receive, device)
            await self._finished.wait()
            nursery.cancel_scope.cancel()

    async def _receive(self, device: Any) -> None:
        async for push in device.pushes():
            if push["type"] != "announce" or push["zone"] not in self.queues:
                continue
            outcome = self.queues[push["zone"]].offer(push)
            self._show(outcome, push)
            self.wake[push["zone"]].set()
        self._finished.set()  # the device stopped for good

    async def _play(self, zone: str) -> None:
        queue = self.queues[zone]
        while True:
            entry = queue.start()
            if entry is None:
                await self.wake[zone].wait()
                self.wake[zone] = trio.Event()
                continue
            try:
                self._show("playing", entry.message)
                await self._say(entry)
            finally:
                queue.done()
            self.said += 1
            if self.args.count is not None and self.said >= self.args.count:
                self._finished.set()
                return

    async def _say(self, entry: Entry) -> None:
        message = entry.message
        try:
            speech = [await self._audio(utterance, url["url"])
                      for utterance, url in zip(utterances_of(message), message["audio"])]
        except (RenderError, SpeakerError, OSError) as exc:
            self.console.print(f"[red]cannot say {message['number']}: {escape(str(exc))}[/]")
            return
        wav = join_wavs(([chime_wav()] if message.get("chime") else []) + speech, repeat=message.get("repeat", 1))
        if self.args.out is not None:
            path = self.args.out / f"{self.said + 1:04d}-{message['number']}-w{message['display']}.wav"
            await trio.to_thread.run_sync(write_atomically, path, wav)
            self._emit({"event": "written", "path": str(path), "seq": entry.seq, "number": message["number"],
                        "window": message["window"], "recall": entry.recall, "bytes": len(wav)},
                       f"  wrote {path}")
        else:
            await play(self.player, wav)

    async def _audio(self, utterance: Any, url: str) -> bytes:
        if self.renderer is not None:
            return await self.renderer.wav(utterance)
        return await fetch(self.args.url, url)

    def _show(self, what: str, message: dict[str, Any]) -> None:
        text = message["text"].get("zh") or next(iter(message["text"].values()))
        recall = f" (recall {message['recall']})" if message["recall"] else ""
        colour = {"playing": "green", "queued": "cyan", "merged": "yellow", "duplicate": "dim"}[what]
        self._emit({"event": what, "seq": message["seq"], "zone": message["zone"], "number": message["number"],
                    "window": message["window"], "recall": message["recall"]},
                   f"[{colour}]{what:>9}[/] {message['zone']}  [bold]{message['number']}[/] -> window "
                   f"{message['display']}{recall}  {escape(text)}")

    def _emit(self, record: dict[str, Any], line: str) -> None:
        if self.args.json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            self.console.print(line)


def join_wavs(parts: list[bytes], *, repeat: int = 1, gap_s: float = GAP_S) -> bytes:
    """One WAV of *parts* (all of one format) with *gap_s* of silence between them, *repeat* times."""
    frames: list[bytes] = []
    params = None
    for part in parts:
        with wave.open(io.BytesIO(part)) as w:
            if params is None:
                params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            elif (w.getnchannels(), w.getsampwidth(), w.getframerate()) != params:
                raise SpeakerError("audio parts differ in format")
            frames.append(w.readframes(w.getnframes()))
    if params is None:
        raise SpeakerError("nothing to say")
    channels, width, rate = params
    gap = b"\x00" * (int(gap_s * rate) * channels * width)
    once = gap.join(frames)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(gap.join([once] * repeat))
    return out.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """*data* at *path*, appearing whole (a temporary file in the same directory, renamed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def play(player: tuple[str, ...] | None, wav: bytes) -> None:
    """Play *wav* through the system *player*, returning when it has been said."""
    assert player is not None
    fd, name = tempfile.mkstemp(suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(wav)
        await trio.run_process([*player, name], check=False)
    finally:
        os.unlink(name)


async def fetch(ws_url: str, path: str) -> bytes:
    """GET *path* from the HTTP side of the server at *ws_url* (same host and port).

    Raises:
        SpeakerError: not a 200 answer.
        OSError: the server cannot be reached.
    """
    parts = urlsplit(ws_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "wss" else 80)
    if parts.scheme == "wss":
        raise SpeakerError("--source server needs a ws:// URL (TLS is terminated in front of the server)")
    connection = h11.Connection(h11.CLIENT)
    with trio.fail_after(FETCH_TIMEOUT_S):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            request = h11.Request(method="GET", target=path, headers=[("host", f"{host}:{port}"),
                                                                      ("connection", "close")])
            await stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
            status, body = 0, bytearray()
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
    if status != 200:
        raise SpeakerError(f"GET {path}: HTTP {status} {bytes(body[:200]).decode(errors='replace').strip()}")
    return bytes(body)
