"""The server's side of the voice: start rendering an announcement when its push is built,
serve the audio by key (``GET /audio/<key>.wav``, :mod:`voice.http`)."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final, Mapping

from .render import DEFAULT_DIRECTORY, Renderer, SpeechProcess
from .templates import KEY_HEX_CHARS, Utterance, utterances_of

KNOWN_KEYS: Final = 10_000  # utterances remembered by key, to render on request (a busy day's calls)
_KEY = re.compile(rf"[0-9a-f]{{{KEY_HEX_CHARS}}}")


def audio_directory(store: str) -> Path:
    """Where a server keeps its rendered audio: ``audio/`` next to a ``file:`` store."""
    scheme, _, rest = store.partition(":")
    return Path(rest).parent / "audio" if scheme == "file" and rest else DEFAULT_DIRECTORY


class Announcer:
    """Renders the audio of ``announce`` pushes and hands it out by key.

    Args:
        renderer: the cache and speech thread the audio comes from.
    """

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._known: OrderedDict[str, Utterance] = OrderedDict()

    @classmethod
    def for_store(cls, store: str) -> "Announcer":
        """An announcer caching its audio next to the event *store* (see :func:`audio_directory`)."""
        return cls(Renderer(audio_directory(store), synthesise=SpeechProcess()))

    def warm(self) -> None:
        """A speaker is listening: get the synthesiser ready (returns at once)."""
        self.renderer.warm()

    def close(self) -> None:
        """The server stops: let the synthesiser go (returns at once)."""
        self.renderer.close()

    def prepare(self, message: Mapping[str, Any]) -> None:
        """Start rendering the audio of an ``announce`` push; returns at once (trio thread)."""
        for utterance in utterances_of(message):
            key = utterance.key
            self._known[key] = utterance
            self._known.move_to_end(key)
            if len(self._known) > KNOWN_KEYS:
                self._known.popitem(last=False)
            self.renderer.prepare(utterance)

    async def wav(self, key: str) -> bytes | None:
        """The WAV of *key*, waiting for its render if it is running; None for an unknown key.

        Raises:
            RenderError: the render of a known key failed.
        """
        if not _KEY.fullmatch(key):
            return None  # also keeps the key a plain file name
        data = self.renderer.cached(key)
        if data is not None:
            return data
        utterance = self._known.get(key)
        if utterance is not None:
            return await self.renderer.wav(utterance)
        return await self.renderer.from_disk(key)
