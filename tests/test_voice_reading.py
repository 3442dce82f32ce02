"""How tickets and windows are read aloud (voice.reading): many fixed numbers, and every
window id 1..9999 read and parsed back by an independent reader."""

import pytest
from hypothesis import given, strategies as st

from voice.reading import (LANGUAGES, MAX_CARDINAL, en_window, ja_cardinal, ko_cardinal, read_ticket, read_window,
                           zh_cardinal)

ZH = {
    1: "一", 2: "二", 9: "九", 10: "十", 11: "十一", 15: "十五", 19: "十九", 20: "二十", 21: "二十一", 99: "九十九",
    100: "一百", 101: "一百零一", 105: "一百零五", 110: "一百一十", 111: "一百一十一", 115: "一百一十五", 200: "二百",
    250: "二百五十", 999: "九百九十九", 1000: "一千", 1001: "一千零一", 1010: "一千零一十", 1011: "一千零一十一",
    1100: "一千一百", 1101: "一千一百零一", 1234: "一千二百三十四", 2000: "二千", 2005: "二千零五",
    2105: "二千一百零五", 4017: "四千零一十七", 9999: "九千九百九十九", 10000: "一万", 10001: "一万零一",
    10010: "一万零一十", 10100: "一万零一百", 11000: "一万一千", 100000: "十万", 100500: "十万零五百",
    110000: "十一万", 1000000: "一百万", 20030405: "二千零三万零四百零五", 0: "零",
}
EN = {
    1: "one", 7: "seven", 10: "ten", 13: "thirteen", 15: "fifteen", 20: "twenty", 21: "twenty-one",
    99: "ninety-nine", 100: "one hundred", 101: "one oh one", 110: "one ten", 215: "two fifteen",
    900: "nine hundred", 1000: "one thousand", 1001: "ten oh one", 1010: "ten ten", 1100: "eleven hundred",
    2000: "two thousand", 2100: "twenty-one hundred", 2105: "twenty-one oh five", 4017: "forty seventeen",
    9999: "ninety-nine ninety-nine", 10000: "one zero zero zero zero",
}
JA = {
    1: "いち", 10: "じゅう", 15: "じゅうご", 20: "にじゅう", 100: "ひゃく", 300: "さんびゃく", 600: "ろっぴゃく",
    800: "はっぴゃく", 1000: "せん", 3000: "さんぜん", 8000: "はっせん", 2105: "にせんひゃくご", 10000: "いちまん",
    10_000_000: "いっせんまん",
}
KO = {
    1: "일", 10: "십", 15: "십오", 20: "이십", 100: "백", 110: "백십", 1000: "천", 1001: "천일", 2105: "이천백오",
    10000: "만", 20000: "이만", 4017: "사천십칠",
}


@pytest.mark.parametrize(("n", "text"), ZH.items())
def test_zh_cardinal(n, text):
    assert zh_cardinal(n) == text


@pytest.mark.parametrize(("n", "text"), EN.items())
def test_en_window(n, text):
    assert en_window(n) == text


@pytest.mark.parametrize(("n", "text"), JA.items())
def test_ja_cardinal(n, text):
    assert ja_cardinal(n) == text


@pytest.mark.parametrize(("n", "text"), KO.items())
def test_ko_cardinal(n, text):
    assert ko_cardinal(n) == text


@pytest.mark.parametrize(("lang", "a023", "ab105"), [
    ("zh", "A 零 二 三", "AB 一 零 五"),
    ("en", "A-zero two three", "AB-one zero five"),
    ("ja", "A ゼロ に さん", "AB いち ゼロ ご"),
    ("ko", "A 공 이 삼", "AB 일 공 오"),
])
def test_ticket_letter_by_letter_digit_by_digit(lang, a023, ab105):
    assert read_ticket("A023", lang) == a023
    assert read_ticket("AB105", lang) == ab105


def test_one_is_yi_not_yao():
    assert read_ticket("B111", "zh") == "B 一 一 一"
    assert "幺" not in read_window("11", "zh") + read_ticket("A101", "zh")


def test_window_display_not_all_digits_is_spelled():
    assert read_window("15B", "zh") == "一 五 B"
    assert read_window("15", "zh") == "十五"
    assert read_window("2105", "en") == "twenty-one oh five"


def test_unknown_language_and_out_of_range_are_clear_errors():
    with pytest.raises(ValueError, match="no reading for language 'fr'"):
        read_ticket("A001", "fr")
    with pytest.raises(ValueError, match="no reading for language 'fr'"):
        read_window("15", "fr")
    with pytest.raises(ValueError, match="outside"):
        zh_cardinal(MAX_CARDINAL + 1)
    assert read_window(str(MAX_CARDINAL + 1), "zh") == " ".join("一零零零零零零零零")


# ---------------------------------------------------------------- independent readers back

_ZH_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")}
_ZH_UNIT = {"十": 10, "百": 100, "千": 1000}


def parse_zh(text: str) -> int:
    total = section = digit = 0
    for char in text:
        if char in _ZH_DIGIT:
            digit = _ZH_DIGIT[char]
        elif char in _ZH_UNIT:
            section += (digit or 1) * _ZH_UNIT[char]
            digit = 0
        elif char == "万":
            total += (section + digit) * 10_000
            section = digit = 0
        else:
            raise AssertionError(f"unexpected {char!r} in {text!r}")
    return total + section + digit


_EN_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_EN_WORDS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})


def _en_pair(text: str) -> int:
    return sum(_EN_WORDS[w] for w in text.split("-"))


def parse_en(text: str) -> int:
    words = text.split()
    if len(words) == 1:
        return _en_pair(words[0])
    if words[1] == "thousand":
        return _en_pair(words[0]) * 1000
    if words[1] == "hundred":
        return _en_pair(words[0]) * 100
    if words[1] == "oh":
        return _en_pair(words[0]) * 100 + _EN_WORDS[words[2]]
    return _en_pair(words[0]) * 100 + _en_pair(words[1])


def test_every_window_id_1_to_9999_reads_and_round_trips():
    for n in range(1, 10_000):
        assert parse_zh(read_window(str(n), "zh")) == n
        assert parse_en(read_window(str(n), "en")) == n
        for lang in ("ja", "ko"):
            assert read_window(str(n), lang)


@given(st.integers(1, MAX_CARDINAL))
def test_zh_cardinal_round_trips_up_to_a_hundred_million(n):
    text = zh_cardinal(n)
    assert parse_zh(text) == n
    assert "零零" not in text and not text.endswith("零")


@given(st.from_regex(r"\A[A-Z]{1,2}[0-9]{1,6}\Z"), st.sampled_from(LANGUAGES))
def test_ticket_reading_has_one_word_per_digit(number, lang):
    spoken = read_ticket(number, lang)
    digits = sum(c.isdigit() for c in number)
    words = spoken.replace("-", " ").split()
    assert len(words) == digits + 1
    assert spoken.startswith(number.rstrip("0123456789"))
