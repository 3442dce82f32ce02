"""The [voice] hall table (callsys.hall) and the announcement texts built from it (voice.templates)."""

from __future__ import annotations

import pytest

from callsys import _schema
from callsys.errors import ConfigError
from callsys.server.projections import Board
from voice import reading
from voice.templates import CHIME_URL, DEFAULT_TEMPLATES, VOICES, Announcements, audio_key, utterances_of

from server_support import client, push_of, guard, start_server


def test_defaults_without_a_voice_table(small_hall):
    voice = small_hall.voice
    assert (voice.languages, dict(voice.templates), voice.repeat, voice.chime, voice.silent_zones) == \
        (("zh", "en"), {}, 1, True, frozenset())
    fields = Announcements(voice).fields("A023", "15")
    assert fields["text"] == {"zh": "请 A023 号到 15 号窗口办理", "en": "Number A023, please go to window 15"}
    assert fields["spoken"] == {"zh": "请 A 零 二 三 号到 十五 号窗口办理",
                                "en": "Number A-zero two three, please go to window fifteen"}
    assert [a["lang"] for a in fields["audio"]] == ["zh", "en"]
    assert fields["audio"][0]["url"] == f"/audio/{audio_key(fields['spoken']['zh'], VOICES['zh'], 150)}.wav"
    assert (fields["chime"], fields["repeat"]) == (CHIME_URL, 1)


def test_every_known_language_has_a_reading_voice_and_default_template():
    assert set(_schema.VOICE_LANGUAGES) == set(reading.LANGUAGES) == set(VOICES) == set(DEFAULT_TEMPLATES)


def test_four_languages_in_order_with_the_halls_own_template(make_hall):
    hall = make_hall({"voice": {"languages": ["ko", "zh", "ja", "en"], "repeat": 2, "chime": False, "rate": 120,
                                "templates": {"zh": "{number}号请到{window}号窗口"}}})
    fields = Announcements(hall.voice).fields("B105", "2105")
    assert list(fields["spoken"]) == ["ko", "zh", "ja", "en"]
    assert fields["spoken"]["zh"] == "B 一 零 五 号请到 二千一百零五 号窗口"
    assert fields["spoken"]["ja"].startswith("B いち ゼロ ご ばんの かた、 にせんひゃくご ばんの")
    assert fields["spoken"]["ko"] == "B 일 공 오번 고객님, 이천백오번 창구로 오십시오"
    assert fields["spoken"]["en"].endswith("window twenty-one oh five")
    assert (fields["chime"], fields["repeat"]) == (None, 2)
    assert {a["rate"] for a in fields["audio"]} == {120}


def test_keys_differ_by_text_voice_and_rate():
    keys = {audio_key("请 A 零 零 一", "cmn-latn-pinyin", 150), audio_key("请 A 零 零 二", "cmn-latn-pinyin", 150),
            audio_key("请 A 零 零 一", "en", 150), audio_key("请 A 零 零 一", "cmn-latn-pinyin", 151)}
    assert len(keys) == 4


def test_a_player_rebuilds_the_utterances_from_the_push(small_hall):
    announcements = Announcements(small_hall.voice)
    message = announcements.fields("A001", "3")
    assert utterances_of(message) == announcements.utterances("A001", "3")


@pytest.mark.parametrize(("voice", "key", "problem"), [
    ({"languages": ["zh", "fr"]}, "voice.languages[1]", "unknown language 'fr' (known: zh, en, ja, ko)"),
    ({"languages": ["zh", "zh"]}, "voice.languages[1]", "language 'zh' is listed twice"),
    ({"languages": []}, "voice.languages", "at least 1 item"),
    ({"templates": {"de": "{number} {window}"}}, "voice.templates.de", "unknown language 'de'"),
    ({"templates": {"zh": "请{number}号办理"}}, "voice.templates.zh", "must contain {window}"),
    ({"templates": {"en": "window {window}"}}, "voice.templates.en", "must contain {number}"),
    ({"templates": {"en": "{number} {window} {name}"}}, "voice.templates.en", "unknown placeholder {name}"),
    ({"templates": {"en": "{number} {window} {0}"}}, "voice.templates.en", "unknown placeholder {0}"),
    ({"templates": {"en": "{number} {window:>4}"}}, "voice.templates.en", "no format spec"),
    ({"templates": {"en": "{number} {window"}}, "voice.templates.en", "not a valid template"),
    ({"repeat": 0}, "voice.repeat", "greater than or equal to 1"),
    ({"repeat": 6}, "voice.repeat", "less than or equal to 5"),
    ({"rate": 20}, "voice.rate", "greater than or equal to 80"),
    ({"silent_zones": ["nowhere"]}, "voice.silent_zones[0]", "unknown zone 'nowhere'"),
    ({"volume": 3}, "voice.volume", "unknown key"),
])
def test_voice_table_mistakes_name_the_key(make_hall, voice, key, problem):
    with pytest.raises(ConfigError) as info:
        make_hall({"voice": voice})
    assert info.value.key == key
    assert problem in str(info.value)


def test_shipped_halls_voice_tables(qingdao_hall, demo_hall):
    assert qingdao_hall.voice.languages == ("zh", "en")
    assert demo_hall.voice.languages == ("zh", "en", "ja", "ko")
    for hall in (qingdao_hall, demo_hall):
        Announcements(hall.voice).fields("A023", hall.windows[-1].display)


def test_board_announce_is_none_in_a_silent_zone(make_hall):
    from callsys import events as ev
    from callsys.engine import QueueEngine

    hall = make_hall({"voice": {"silent_zones": ["main"]}})
    board = Board(hall, QueueEngine(hall))
    prepared = []
    board.prepare = prepared.append
    called = ev.TicketCalled(at=1.0, ticket=1, number="A001", service="A", window=1, by_number=False)
    assert board.announce(called, 1) is None and prepared == []
    loud = Board(make_hall(), QueueEngine(make_hall()))
    loud.prepare = prepared.append
    message = loud.announce(called, 1)
    assert message["spoken"]["zh"] == "请 A 零 零 一 号到 一 号窗口办理" and prepared == [message]


@guard()
async def test_speakers_get_spoken_texts_and_nothing_from_a_silent_zone(nursery, demo_hall, tmp_path):
    from callsys.hall import hall_from_mapping, read_toml

    from conftest import CONFIG, merged

    raw = merged(read_toml(CONFIG / "demo.toml"), {"voice": {"silent_zones": ["social"]}})
    hall = hall_from_mapping(raw, source="demo-silent.toml")
    server = await start_server(nursery, hall, tmp_path / "hall.db")
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=10) as quiet, \
            client(server, "clerk", window=2) as loud, \
            client(server, "speaker", subscribe={"zones": ["social", "universal"]}) as speaker, \
            client(server, "display", subscribe={"zones": ["social"]}) as display:
        await kiosk.request("take_number", service="CIVIL")
        await quiet.request("open_window")
        await quiet.request("call_next")
        assert (await push_of(display, "window_update"))["event"] == "opened"
        assert (await push_of(display, "window_update"))["number"] == "E001"  # the screen shows the call
        await kiosk.request("take_number", service="BIZ")
        await loud.request("open_window")
        await loud.request("call_next")
        announce = await speaker.next_push()  # the silent window's call never came
        assert (announce["window"], announce["number"]) == (2, "A001")
        assert announce["spoken"]["zh"] == "请 A 零 零 一 号到 二 号窗口办理"
        assert [a["lang"] for a in announce["audio"]] == list(demo_hall.voice.languages)
    server.shutdown()
