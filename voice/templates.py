"""What the speakers say when a window calls a number: the announcement policy.

A hall manager sets it in the hall file's optional ``[voice]`` table (checked when the file
is loaded, see :class:`callsys.hall.Voice`)::

    [voice]
    languages = ["zh", "en"]          # spoken in this order; "ja" and "ko" can be added
    templates = { zh = "请{number}号到{window}号窗口办理" }   # the others keep their defaults
    repeat = 1                        # times each announcement is played (1-5)
    chime = true                      # a two-tone chime before it
    rate = 150                        # words per minute (80-450)
    silent_zones = ["f3-notary"]      # calls shown on screens there, never spoken

* Every call and every recall is announced, in each language of ``languages`` in order,
  after the chime, the whole played ``repeat`` times. A recall says the same words (the
  citizen hears their number again; the screens show the recall count).
* A template holds ``{number}`` (the ticket) and ``{window}`` (the number over the
  counter), nothing else. The **screen text** puts them in as printed ("请 A023 号到 15 号窗口
  办理"); the **spoken text** puts in their readings (:mod:`voice.reading`: the ticket digit
  by digit, the window as a number: "请 A 零 二 三 号到 十五 号窗口办理").
* Japanese templates are written in kana: the speech synthesiser reads no kanji.
* Windows in a silent zone (quiet areas, notary, counselling) are shown on the screens and
  LED strips but never announced: no ``announce`` is pushed for them.

Each spoken text is rendered once per voice and rate (:mod:`voice.render`); its cache key
(:func:`audio_key`) is part of the ``announce`` push, so a player fetches
``/audio/<key>.wav`` or renders the same text itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, Mapping

from callsys.hall import Voice

from .reading import read_ticket, read_window

DEFAULT_TEMPLATES: Final[Mapping[str, str]] = {
    "zh": "请{number}号到{window}号窗口办理",
    "en": "Number {number}, please go to window {window}",
    "ja": "{number}ばんの かた、{window}ばんの まどぐちへ おこしください",
    "ko": "{number}번 고객님, {window}번 창구로 오십시오",
}
# espeak-ng voice per language. Mandarin is "cmn-latn-pinyin", not "cmn": Debian's espeak-ng
# 1.51 "cmn" voice reads many characters (请, 零, 三, 办, ...) as pinyin spelled out in English
# ("qing3" -> "king three"); the pinyin variant says them in Mandarin with their tones.
VOICES: Final[Mapping[str, str]] = {"zh": "cmn-latn-pinyin", "en": "en", "ja": "ja", "ko": "ko"}
AUDIO_URL: Final = "/audio/{key}.wav"
CHIME_URL: Final = "/static/chime.wav"
KEY_HEX_CHARS: Final = 24  # 96 bits of sha256: no collision among a hall's few thousand texts

# languages written without spaces between words: a placeholder gets a space either side
_UNSPACED: Final = frozenset({"zh", "ja"})
_SPACES = re.compile(r"\s+")


def audio_key(spoken: str, voice: str, rate: int) -> str:
    """The cache key of one rendering: a hash of the text, the voice and the rate."""
    digest = hashlib.sha256(f"{voice}\x00{rate}\x00{spoken}".encode()).hexdigest()
    return digest[:KEY_HEX_CHARS]


@dataclass(frozen=True, slots=True)
class Utterance:
    """One language's part of an announcement, as rendered to audio."""

    lang: str
    spoken: str  # the text given to the synthesiser
    voice: str  # espeak-ng voice
    rate: int  # words per minute

    @property
    def key(self) -> str:
        return audio_key(self.spoken, self.voice, self.rate)

    @property
    def url(self) -> str:
        return AUDIO_URL.format(key=self.key)


class Announcements:
    """The announcement texts of one hall (built once from its ``[voice]`` table).

    Args:
        voice: the hall's compiled ``[voice]`` table.
    """

    def __init__(self, voice: Voice) -> None:
        self.voice = voice
        self.templates = {lang: voice.templates.get(lang, DEFAULT_TEMPLATES[lang]) for lang in voice.languages}

    def silent(self, zone: str) -> bool:
        """True if calls in *zone* are never spoken."""
        return zone in self.voice.silent_zones

    def text(self, number: str, window: str) -> dict[str, str]:
        """The screen text per language: ``{"zh": "请 A023 号到 15 号窗口办理", ...}``."""
        return {lang: _fill(template, lang, number, window) for lang, template in self.templates.items()}

    def utterances(self, number: str, window: str) -> list[Utterance]:
        """What is spoken, per language in order."""
        return [
            Utterance(lang, _fill(template, lang, read_ticket(number, lang), read_window(window, lang)),
                      VOICES[lang], self.voice.rate)
            for lang, template in self.templates.items()
        ]

    def fields(self, number: str, window: str) -> dict[str, Any]:
        """The voice fields of an ``announce`` push: text, spoken, audio, chime, repeat."""
        utterances = self.utterances(number, window)
        return {
            "text": self.text(number, window),
            "spoken": {u.lang: u.spoken for u in utterances},
            "audio": [{"lang": u.lang, "url": u.url, "voice": u.voice, "rate": u.rate} for u in utterances],
            "chime": CHIME_URL if self.voice.chime else None,
            "repeat": self.voice.repeat,
        }


def _fill(template: str, lang: str, number: str, window: str) -> str:
    if lang in _UNSPACED:
        number, window = f" {number} ", f" {window} "
    return _SPACES.sub(" ", template.format(number=number, window=window)).strip()


def utterances_of(message: Mapping[str, Any]) -> list[Utterance]:
    """The utterances of an ``announce`` push, in language order (what a player renders itself)."""
    return [Utterance(a["lang"], message["spoken"][a["lang"]], a["voice"], a["rate"]) for a in message["audio"]]
