"""Announcement audio: text to WAV through pyttsx3 (espeak-ng), off the trio thread, cached.

Rendering policy:

* **One speech thread per process, owning the one pyttsx3 engine.** pyttsx3 engines are
  not thread-safe, and with espeak-ng there can be only one per process at all: the
  espeak-ng library is process-global and pyttsx3's espeak driver registers *the* synth
  callback of the library when an engine is built, so a second engine silently takes the
  audio of the first (measured: with two engines, the first one's ``save_to_file`` writes
  no file and reports success). So every :class:`Renderer` of the process feeds one
  daemon thread through a queue; the trio side never blocks, it waits on a
  :class:`trio.Event` that the thread sets through the run's trio token. A render takes
  10-20 ms (espeak-ng is fast; pyttsx3's loop polls every 10 ms).
* **Cache in memory and on disk**, keyed by :func:`voice.templates.audio_key` (text,
  voice, rate): an LRU of WAV bytes bounded by :data:`MEMORY_CACHE_BYTES`, then
  ``<directory>/<key>.wav`` written atomically (a temporary file in the same directory,
  then ``os.replace``), so a crash never leaves half a WAV behind and a restarted server
  serves yesterday's renders at once. The disk cache is bounded too
  (:data:`DISK_CACHE_BYTES`; the oldest renders go first): nearly every call is a new text
  (~350 KB of zh + en audio), ~10 GB on a busy day of the flagship hall if nothing went.
* **One render per key**: a request for a key that is being rendered waits for that render.
* **The server renders in a speech process** (:class:`SpeechProcess`, one pyttsx3 engine
  in a child process, niced): espeak-ng calls back into Python for every chunk of audio,
  so an in-process engine takes the GIL from the event loop ~40 times per text and adds
  milliseconds to every call on a busy hall (measured with ``benchmarks.call_latency``).
  The speech thread then only waits on a pipe. Tools (``callsys speaker``) and tests
  render in-process (:func:`espeak_synthesise`).
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # noqa: F401 (its exit hook is registered before ours)
import os
import queue
import tempfile
import threading
import wave
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final

import trio

from callsys.errors import CallsysError

from .templates import Utterance

MEMORY_CACHE_BYTES: Final = 64 * 2**20  # 64 MiB: ~400 two-language announcements of ~150 KiB each
DISK_CACHE_BYTES: Final = 2**30  # 1 GiB: the last ~3,000 two-language announcements
DEFAULT_DIRECTORY: Final = Path("var/audio")
# Renders queued ahead of demand at most: ~1 s of the speech thread (~40 texts/s). A hall
# calls ~1-3 times a second; a burst beyond this (a load test calling hundreds a second)
# is rendered when a speaker asks for it instead of keeping a core busy with texts that
# nobody may fetch.
PREPARE_BACKLOG: Final = 32

Synthesise = Callable[[Utterance, Path], None]


class RenderError(CallsysError):
    """The speech synthesiser could not render a text. The fault is the environment's
    (espeak-ng missing or a voice not installed)."""

    code = "render_error"


def espeak_synthesise(utterance: Utterance, path: Path) -> None:
    """Render *utterance* to a WAV file at *path* with the process's pyttsx3 engine.

    Runs on the speech thread only (see the module docstring).

    Raises:
        RenderError: espeak-ng has no such voice, or wrote no audio.
    """
    engine, voices, espeak = _engine()
    if utterance.voice not in voices:
        raise RenderError(f"espeak-ng has no voice {utterance.voice!r} (for {utterance.lang}); "
                          "see `espeak-ng --voices`")
    engine.setProperty("voice", utterance.voice)
    engine.setProperty("rate", utterance.rate)
    for _ in range(SYNTH_ATTEMPTS):
        # espeak-ng runs its own synthesis thread here (pyttsx3 starts it in retrieval mode): a
        # rate change is queued there, so without waiting for it a render may still use the
        # previous rate (measured: 1 render in 4 came out at the wrong speed).
        espeak.Synchronize()
        engine.save_to_file(utterance.spoken, str(path))
        engine.runAndWait()
        espeak.Synchronize()
        if _audio_frames(path) > 0:
            return
    raise RenderError(f"espeak-ng wrote no audio for {utterance.lang} voice {utterance.voice!r}")


SYNTH_ATTEMPTS: Final = 3  # espeak-ng now and then writes a header and no samples (seen in the suite, ~1 in 1,000)


def _audio_frames(path: Path) -> int:
    """The sample frames of the WAV file at *path* (0: missing, empty or not a WAV)."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes()
    except (FileNotFoundError, EOFError, wave.Error):
        return 0


SPEECH_NICENESS: Final = 5  # the speech process yields the CPU to the server's call path


class SpeechProcess:
    """A :data:`Synthesise` that renders in a child process with its own pyttsx3 engine.

    Called from the speech thread only (one job at a time). The child starts on first use
    (or :meth:`start`) and again if it died; a render it fails is a :class:`RenderError`.
    """

    def __init__(self) -> None:
        self._process: Any = None
        self._pipe: Any = None

    def start(self) -> None:
        """Start the child now (it takes ~0.3 s to load pyttsx3), so the first call is warm."""
        if self._process is not None and self._process.is_alive():
            return
        context = multiprocessing.get_context("spawn")  # never fork a process running trio
        with _STARTING:
            if _EXITING:
                raise RenderError("the process is exiting")
            self._pipe, child = context.Pipe()
            self._process = context.Process(target=_speech_process, args=(child,), name="callsys-speech",
                                            daemon=True)
            self._process.start()
            child.close()

    def __call__(self, utterance: Utterance, path: Path) -> None:
        for attempt in (1, 2):
            self.start()
            try:
                self._pipe.send((utterance.lang, utterance.spoken, utterance.voice, utterance.rate, str(path)))
                error = self._pipe.recv()
                break
            except (EOFError, OSError) as exc:  # the child died: start another, once
                self._process = None
                if attempt == 2:
                    raise RenderError(f"the speech process died: {exc}") from exc
        if error is not None:
            raise RenderError(error)

    def close(self) -> None:
        if self._process is not None:
            self._pipe.close()  # the child sees EOF and exits
            self._process.join(timeout=5)
            self._process = None


_STARTING = threading.Lock()


_EXITING = False  # set at exit: no more speech processes


def _wait_for_starts() -> None:
    global _EXITING
    with _STARTING:
        _EXITING = True


# Registered after multiprocessing's own exit hook (imported first), so it runs before it
# (LIFO): a process exiting while the speech thread is in SpeechProcess.start lets the
# start finish before the child is terminated, and no start begins afterwards (a daemon
# thread spawning during finalisation never writes the child's spawn data: the child
# dies reading it, with a traceback).
atexit.register(_wait_for_starts)


def _speech_process(pipe: Any) -> None:
    """The child of :class:`SpeechProcess`: render each job with :func:`espeak_synthesise`."""
    os.nice(SPEECH_NICENESS)
    while True:
        try:
            lang, spoken, voice, rate, path = pipe.recv()
        except EOFError:
            return
        try:
            espeak_synthesise(Utterance(lang, spoken, voice, rate), Path(path))
            pipe.send(None)
        except Exception as exc:
            pipe.send(str(exc) if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}")


_ENGINE: tuple[Any, frozenset[str], Any] | None = None


def _engine() -> tuple[Any, frozenset[str], Any]:
    """The process's pyttsx3 engine, the voice names espeak-ng accepts, the espeak binding."""
    global _ENGINE
    if _ENGINE is None:
        try:
            import pyttsx3
            import pyttsx3.drivers.espeak as espeak_driver
            from pyttsx3.drivers import _espeak

            # The driver prints "Audio saved to ..." for every file; silence that module's print only.
            espeak_driver.print = lambda *args, **kwargs: None  # type: ignore[attr-defined]
            engine = pyttsx3.init("espeak")
        except Exception as exc:
            raise RenderError(f"cannot start pyttsx3 with espeak-ng: {exc} (install espeak-ng)") from exc
        names = set()
        for voice in engine.getProperty("voices"):
            names.update((voice.id, voice.id.rsplit("/", 1)[-1], *voice.languages))
        _ENGINE = engine, frozenset(names), _espeak
        atexit.register(_drop_engine)
    return _ENGINE


def _drop_engine() -> None:
    """Release the engine while the interpreter is whole: pyttsx3's finaliser fails if it
    runs during the interpreter's teardown ("Exception ignored in DriverProxy.__del__")."""
    global _ENGINE
    _ENGINE = None


# ------------------------------------------------------------------------------ the speech thread

_Job = tuple[Callable[[], bytes], Callable[[bytes | BaseException], None]]


class _SpeechThread:
    """The process's one speech thread: runs jobs in order, hands each result to its callback."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="callsys-speech", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            work, done = self.jobs.get()
            try:
                result: bytes | BaseException = work()
            except BaseException as exc:  # handed to the waiting task, which raises it
                result = exc
            done(result)


_THREAD: _SpeechThread | None = None
_THREAD_LOCK = threading.Lock()


def speech_thread() -> threading.Thread:
    """The process's speech thread (started on first use)."""
    return _speech().thread


def _speech() -> _SpeechThread:
    global _THREAD
    with _THREAD_LOCK:
        if _THREAD is None:
            _THREAD = _SpeechThread()
        return _THREAD


# ------------------------------------------------------------------------------ renderer


@dataclass(frozen=True, slots=True)
class RendererStatistics:
    renders: int  # texts synthesised
    memory_hits: int
    disk_hits: int
    joined: int  # requests that waited for a render already running
    skipped: int  # prepares not started: PREPARE_BACKLOG renders were running (rendered on request)
    memory_items: int
    memory_bytes: int


class _Render:
    """A render in flight: the waiters' event and, once set, its outcome."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: bytes | BaseException | None = None


class Renderer:
    """WAV bytes for utterances: memory cache, disk cache, then the speech thread.

    Use from one trio run (the one that first calls it).

    Args:
        directory: where rendered WAVs are kept (``<directory>/<key>.wav``); None keeps them
            in memory only.
        memory_bytes: the memory cache's bound (least recently used WAVs go first).
        disk_bytes: the disk cache's bound (the oldest renders go first).
        synthesise: renders one utterance to a WAV file (the tests count and inspect it).
    """

    def __init__(self, directory: str | Path | None = DEFAULT_DIRECTORY, *,
                 memory_bytes: int = MEMORY_CACHE_BYTES, disk_bytes: int = DISK_CACHE_BYTES,
                 synthesise: Synthesise = espeak_synthesise) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self._disk: OrderedDict[str, int] | None = None  # key -> bytes, oldest first (speech thread only)
        self._disk_size = 0
        self.synthesise = synthesise
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_size = 0
        self._running: dict[str, _Render] = {}
        self._token: trio.lowlevel.TrioToken | None = None
        self._renders = self._memory_hits = self._disk_hits = self._joined = self._skipped = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def warm(self) -> None:
        """Get the synthesiser ready (start a :class:`SpeechProcess`) on the speech thread;
        returns at once. Called when a speaker connects, so the first call is not cold."""
        start = getattr(self.synthesise, "start", None)
        if start is not None:
            _speech().jobs.put((start, lambda result: None))

    def close(self) -> None:
        """Stop the synthesiser's process, if it has one, after the renders queued (returns at once)."""
        close = getattr(self.synthesise, "close", None)
        if close is not None:
            _speech().jobs.put((close, lambda result: None))

    def path(self, key: str) -> Path | None:
        """Where the WAV of *key* is kept on disk (None without a directory)."""
        return self.directory / f"{key}.wav" if self.directory is not None else None

    def cached(self, key: str) -> bytes | None:
        """The WAV of *key* if it is in memory (no I/O)."""
        data = self._memory.get(key)
        if data is not None:
            self._memory.move_to_end(key)
            self._memory_hits += 1
        return data

    def prepare(self, utterance: Utterance) -> None:
        """Start rendering *utterance* unless it is in memory or running; never blocks and
        touches no disk (it runs in the commit task): the speech thread reads a WAV already
        on disk instead of rendering it again."""
        key = utterance.key
        if key in self._memory or key in self._running:
            return
        if len(self._running) >= PREPARE_BACKLOG:
            self._skipped += 1
            return
        self._start(utterance)

    async def wav(self, utterance: Utterance) -> bytes:
        """The WAV bytes of *utterance*: from memory, from disk, or rendered now.

        Raises:
            RenderError: the synthesiser failed (every waiter of that render gets it).
        """
        key = utterance.key
        data = self.cached(key)
        if data is not None:
            return data
        if key not in self._running:
            data = await self.from_disk(key)
            if data is None:  # while the disk was read, a render may have finished or started
                data = self.cached(key)
            if data is not None:
                return data
            if key not in self._running:
                self._start(utterance)
        else:
            self._joined += 1
        return await self._wait(key)

    async def from_disk(self, key: str) -> bytes | None:
        """The WAV of *key* from the disk cache (read in a worker thread), or None."""
        path = self.path(key)
        if path is None:
            return None
        try:
            data = await trio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            return None
        self._disk_hits += 1
        self._remember(key, data)
        return data

    def statistics(self) -> RendererStatistics:
        return RendererStatistics(self._renders, self._memory_hits, self._disk_hits, self._joined,
                                  self._skipped, len(self._memory), self._memory_size)

    # -------------------------------------------------------------------- internals

    def _start(self, utterance: Utterance) -> None:
        if self._token is None:
            self._token = trio.lowlevel.current_trio_token()
        key = utterance.key
        render = self._running[key] = _Render()
        token = self._token

        def done(result: bytes | BaseException) -> None:
            try:
                token.run_sync_soon(self._finish, key, render, result)
            except trio.RunFinishedError:
                pass  # the trio run is over: nobody is waiting

        _speech().jobs.put((lambda: self._render_file(utterance), done))

    def _render_file(self, utterance: Utterance) -> bytes:
        """On the speech thread: the WAV already on disk, else synthesise into a temporary
        file and publish it atomically."""
        directory = self.directory
        if directory is not None:
            try:
                data = (directory / f"{utterance.key}.wav").read_bytes()
            except FileNotFoundError:
                pass
            else:
                self._disk_hits += 1
                return data
        self._renders += 1
        fd, name = tempfile.mkstemp(suffix=".tmp", prefix=f"{utterance.key}.", dir=directory)
        os.close(fd)
        tmp = Path(name)
        try:
            tmp.unlink()  # the synthesiser creates it; its absence afterwards means it wrote nothing
            self.synthesise(utterance, tmp)
            data = tmp.read_bytes()
            if directory is not None:
                os.replace(tmp, directory / f"{utterance.key}.wav")
                self._on_disk(utterance.key, len(data))
            return data
        finally:
            tmp.unlink(missing_ok=True)

    def _on_disk(self, key: str, size: int) -> None:
        """On the speech thread: count a new file; delete the oldest while over :attr:`disk_bytes`."""
        assert self.directory is not None
        if self._disk is None:  # the first render: take stock of what earlier runs left
            files = sorted(self.directory.glob("*.wav"), key=lambda p: p.stat().st_mtime)
            self._disk = OrderedDict((p.stem, p.stat().st_size) for p in files)
            self._disk_size = sum(self._disk.values())
        self._disk_size += size - self._disk.pop(key, 0)
        self._disk[key] = size
        while self._disk_size > self.disk_bytes and len(self._disk) > 1:
            old, old_size = self._disk.popitem(last=False)
            (self.directory / f"{old}.wav").unlink(missing_ok=True)
            self._disk_size -= old_size

    def _finish(self, key: str, render: _Render, result: bytes | BaseException) -> None:
        """Back on the trio thread: remember the WAV and wake the waiters."""
        del self._running[key]
        if isinstance(result, bytes):
            self._remember(key, result)
        render.result = result
        render.done.set()

    async def _wait(self, key: str) -> bytes:
        render = self._running[key]
        await render.done.wait()
        result = render.result
        if isinstance(result, BaseException):
            if isinstance(result, RenderError):
                raise result
            raise RenderError(f"rendering failed: {type(result).__name__}: {result}") from result
        assert result is not None
        return result

    def _remember(self, key: str, data: bytes) -> None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return
        self._memory[key] = data
        self._memory_size += len(data)
        while self._memory_size > self.memory_bytes and len(self._memory) > 1:
            _, old = self._memory.popitem(last=False)
            self._memory_size -= len(old)
