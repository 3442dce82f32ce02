"""How numbers are read aloud, per language: the ticket digit by digit, the window as a number.

A hall calls "请 A023 号到 15 号窗口办理": the **ticket** is read the way it is printed,
letter by letter and digit by digit (a citizen compares it with the slip in their hand, and
"零二三" cannot be confused with "二十三"), the **window** as a cardinal number (the sign over
the counter says 15; people say 十五). These functions produce the text the speech
synthesiser (espeak-ng) is given, so each reading is also chosen so espeak-ng says it right.

Chinese (``zh``)
    Ticket: letters as they are (espeak-ng's Mandarin voice says "A" as the letter), digits
    零 一 二 三 四 五 六 七 八 九: ``"A023"`` -> ``"A 零 二 三"``. The digit 1 is 一, not 幺:
    幺 (yāo) is radio, telephone and military jargon for telling 一 from 七 over a bad line;
    hall calling systems and the model sentence of the domain say 一, the ticket slip and
    the screens show 1, and a citizen who is not used to 幺 must not miss their turn.
    Window: the cardinal ``"15"`` -> ``"十五"``, ``"2105"`` -> ``"二千一百零五"``,
    ``10`` -> ``十`` (a leading 一十 is dropped, as people say it), ``110`` -> ``一百一十``
    (not leading: the 一 stays), ``1001`` -> ``一千零一`` (one 零 for each run of zeros
    inside), 2 is 二 everywhere (二千, not the colloquial 两千, as announcements do).
English (``en``)
    Ticket: letters, then the digits as words: ``"A023"`` -> ``"A-zero two three"``. The
    hyphen is there for espeak-ng: a lone "A" before a space is read as the article /ə/,
    "A-zero" as the letter /eɪ/ and the digit without a pause.
    Window: how English speakers read counter, gate and room numbers: 1-99 as a number
    (``"15"`` -> ``"fifteen"``), three and four digits as two pairs (``"215"`` -> ``"two
    fifteen"``, ``"2105"`` -> ``"twenty-one oh five"``, ``"1001"`` -> ``"ten oh one"``),
    whole hundreds as hundreds (``"2100"`` -> ``"twenty-one hundred"``), whole thousands as
    thousands (``"2000"`` -> ``"two thousand"``).
Japanese (``ja``)
    espeak-ng's Japanese voice reads kana only (kanji come out as "Chinese letter"), so the
    readings are kana. Ticket: ``"A023"`` -> ``"A ゼロ に さん"``; window: the cardinal in kana
    with the sound changes (``"15"`` -> ``"じゅうご"``, 300 さんびゃく, 600 ろっぴゃく,
    800 はっぴゃく, 3000 さんぜん, 8000 はっせん).
Korean (``ko``)
    Ticket: digits in Sino-Korean, 0 as 공 as digit strings (phone and room numbers) are read:
    ``"A023"`` -> ``"A 공 이 삼"``; window: the Sino-Korean cardinal (``"15"`` -> ``"십오"``,
    ``"2105"`` -> ``"이천백오"``; 십, 백, 천, 만 take no 일 before them).

A window display that is not all digits (``"15B"``) is read like a ticket. Numbers up to
99,999,999 are read as cardinals (万 / 만 groups); longer ones digit by digit.
"""

from __future__ import annotations

from typing import Callable, Final

LANGUAGES: Final = ("zh", "en", "ja", "ko")
MAX_CARDINAL: Final = 99_999_999

# ------------------------------------------------------------------------------ Chinese

_ZH_DIGITS: Final = "零一二三四五六七八九"
_ZH_UNITS: Final = ("", "十", "百", "千")


def _zh_below_10k(n: int) -> str:
    """1..9999 with 零 for each inner run of zeros; a leading 一十 kept (the caller drops it)."""
    out: list[str] = []
    zero = False
    for power in (3, 2, 1, 0):
        digit = n // 10 ** power % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_ZH_DIGITS[digit] + _ZH_UNITS[power])
    return "".join(out)


def zh_cardinal(n: int) -> str:
    """*n* (0..99,999,999) as a Chinese cardinal: ``2105`` -> ``二千一百零五``."""
    _check_cardinal(n)
    if n == 0:
        return "零"
    high, low = divmod(n, 10_000)
    if high:
        text = _zh_below_10k(high) + "万"
        if low:
            text += ("零" if low < 1000 else "") + _zh_below_10k(low)
    else:
        text = _zh_below_10k(low)
    return text[1:] if text.startswith("一十") else text


# ------------------------------------------------------------------------------ English

_EN_DIGITS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_EN_TEENS: Final = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                    "eighteen", "nineteen")
_EN_TENS: Final = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def en_below_100(n: int) -> str:
    """0..99 in words: ``21`` -> ``twenty-one``."""
    if n < 10:
        return _EN_DIGITS[n]
    if n < 20:
        return _EN_TEENS[n - 10]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_DIGITS[ones]}" if ones else "")


def en_window(n: int) -> str:
    """A window number as English speakers read counter and room numbers (see the module)."""
    _check_cardinal(n)
    if n < 100:
        return en_below_100(n)
    if n >= 10_000:
        return " ".join(_EN_DIGITS[int(d)] for d in str(n))
    if n % 1000 == 0:
        return f"{en_below_100(n // 1000)} thousand"
    high, low = divmod(n, 100)
    if low == 0:
        return f"{en_below_100(high)} hundred"
    return f"{en_below_100(high)} {'oh ' + _EN_DIGITS[low] if low < 10 else en_below_100(low)}"


# ------------------------------------------------------------------------------ Japanese

_JA_DIGITS: Final = ("ゼロ", "いち", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう")
_JA_COUNT: Final = ("", "", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう")
# (digit, power) -> the sound-changed form; power 1 = 十, 2 = 百, 3 = 千
_JA_SPECIAL: Final = {(3, 2): "さんびゃく", (6, 2): "ろっぴゃく", (8, 2): "はっぴゃく", (3, 3): "さんぜん",
                      (8, 3): "はっせん"}
_JA_UNITS: Final = ("", "じゅう", "ひゃく", "せん")


def _ja_below_10k(n: int, *, leading_ichi: bool = False) -> str:
    out = []
    for power in (3, 2, 1, 0):
        digit = n // 10 ** power % 10
        if not digit:
            continue
        if power == 0:
            out.append(_JA_DIGITS[digit])
        elif (digit, power) in _JA_SPECIAL:
            out.append(_JA_SPECIAL[digit, power])
        elif digit == 1 and power == 3 and leading_ichi:
            out.append("いっせん")
        else:
            out.append(_JA_COUNT[digit] + _JA_UNITS[power])
    return "".join(out)


def ja_cardinal(n: int) -> str:
    """*n* as a Japanese cardinal in kana: ``15`` -> ``じゅうご``, ``800`` -> ``はっぴゃく``."""
    _check_cardinal(n)
    if n == 0:
        return "ゼロ"
    high, low = divmod(n, 10_000)
    text = (_ja_below_10k(high, leading_ichi=True) + "まん") if high else ""
    return text + _ja_below_10k(low)


# ------------------------------------------------------------------------------ Korean

_KO_DIGITS: Final = ("공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구")
_KO_UNITS: Final = ("", "십", "백", "천")


def _ko_below_10k(n: int) -> str:
    out = []
    for power in (3, 2, 1, 0):
        digit = n // 10 ** power % 10
        if not digit:
            continue
        if power and digit == 1:
            out.append(_KO_UNITS[power])
        else:
            out.append(_KO_DIGITS[digit] + _KO_UNITS[power])
    return "".join(out)


def ko_cardinal(n: int) -> str:
    """*n* as a Sino-Korean cardinal: ``15`` -> ``십오``, ``2105`` -> ``이천백오``."""
    _check_cardinal(n)
    if n == 0:
        return "영"
    high, low = divmod(n, 10_000)
    text = ("만" if high == 1 else _ko_below_10k(high) + "만") if high else ""
    return text + _ko_below_10k(low)


# ------------------------------------------------------------------------------ per language

_DIGIT_WORDS: Final[dict[str, tuple[str, ...]]] = {
    "zh": tuple(_ZH_DIGITS), "en": _EN_DIGITS, "ja": _JA_DIGITS, "ko": _KO_DIGITS,
}
_CARDINALS: Final[dict[str, Callable[[int], str]]] = {
    "zh": zh_cardinal, "en": en_window, "ja": ja_cardinal, "ko": ko_cardinal,
}


def read_ticket(number: str, lang: str) -> str:
    """The ticket *number* as read aloud in *lang*: letters as they are, digits one by one.

    Args:
        number: the printed ticket number, e.g. ``"A023"``.
        lang: ``zh``, ``en``, ``ja`` or ``ko``.

    Raises:
        ValueError: *lang* is not one of :data:`LANGUAGES`.
    """
    words = _digit_words(lang)
    parts: list[str] = []
    letters = ""
    for char in number:
        if char.isdigit() and char.isascii():
            if letters:
                parts.append(letters)
                letters = ""
            parts.append(words[int(char)])
        else:
            letters += char
    if letters:
        parts.append(letters)
    if lang == "en" and len(parts) > 1 and not number[0].isdigit():
        parts[:2] = [f"{parts[0]}-{parts[1]}"]  # "A-zero": a lone "A" is the article to espeak-ng
    return " ".join(parts)


def read_window(display: str, lang: str) -> str:
    """The window's display number as read aloud in *lang*: a cardinal if it is all digits.

    Args:
        display: the number over the counter, e.g. ``"15"`` or ``"2105"``.
        lang: ``zh``, ``en``, ``ja`` or ``ko``.

    Raises:
        ValueError: *lang* is not one of :data:`LANGUAGES`.
    """
    _digit_words(lang)
    if display.isascii() and display.isdigit() and int(display) <= MAX_CARDINAL:
        return _CARDINALS[lang](int(display))
    return read_ticket(display, lang)


def _digit_words(lang: str) -> tuple[str, ...]:
    try:
        return _DIGIT_WORDS[lang]
    except KeyError:
        raise ValueError(f"no reading for language {lang!r} (known: {', '.join(LANGUAGES)})") from None


def _check_cardinal(n: int) -> None:
    if not 0 <= n <= MAX_CARDINAL:
        raise ValueError(f"{n} is outside 0..{MAX_CARDINAL:,}")
