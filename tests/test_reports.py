"""Reports rebuilt from the event log (callsys.reports, `callsys report`, GET /api/v1/reports) and the
ratings fold (callsys.ratings), checked against a simulated day whose figures the simulator knows."""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import trio

from callsys import commands as cmd, events as ev
from callsys.cli import main
from callsys.client import RequestFailed
from callsys.errors import InvalidArgument
from callsys.log import open_journal
from callsys.ratings import Ratings
from callsys.hall import hall_from_mapping, read_toml
from callsys.reports import MAX_DAYS, HallMismatch, period, report_from_log
from callsys.reports.cli import read_report
from sim.runner import Simulation
from sim.scenario import SCENARIO_DIR, Scenario, scenario_from_mapping
from sim.tracker import Tracker
from api_support import KEY, api, api_server, error_of, hall_with_clients  # noqa: F401
from redis_support import redis_server, redis_url  # noqa: F401
from server_support import START, client, guard, start_server

DAY = date(2026, 11, 25)  # the demo scenario's Wednesday
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Recorder(Tracker):
    """The simulator's tracker that also keeps every engine event, in order (what a server logs)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.events: list[ev.Event] = []

    def observe(self, events: list[ev.Event]) -> None:
        self.events.extend(events)
        super().observe(events)


@dataclass
class Day:
    scenario: Scenario
    summary: dict[str, Any]
    events: list[ev.Event]
    bad_served: int  # citizens served who rated "bad", from the simulator's own citizens


@pytest.fixture(scope="module")
def day() -> Day:
    """The demo hall's Wednesday, busy enough to queue (600 visitors), every citizen who gives up
    cancelling (a silent leaver is, to the log, a waiting ticket: see callsys.reports)."""
    data = tomllib.loads((SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8"))
    data["arrivals"] |= {"visitors": 600}
    data["citizens"] |= {"silent_abandon": 0.0, "patience_mean_min": 40}
    scenario = scenario_from_mapping(data, source="demo-report.toml", base=SCENARIO_DIR)
    recorder = Recorder(scenario.hall, scenario.start + scenario.warmup_s)
    sim = Simulation(scenario, seed=11, tracker=recorder)
    summary = sim.run()
    served = {t for t, r in recorder.tickets.items() if r.outcome == "served"}
    bad = sum(1 for c in sim.citizens if c.ticket in served and c.rating == "bad")
    return Day(scenario, summary, recorder.events, bad)


async def write_store(url: str, day: Day) -> None:
    async with open_journal(url, day.scenario.hall, snapshot_on_close=False) as journal:
        await journal.commit(day.events)


def check_against_simulator(figures: dict[str, Any], day: Day) -> None:
    s = day.summary
    assert s["flow"]["abandoned"] > 0 and s["waits"]["all"]["p90_min"] > 1  # the day queued and people gave up
    for key in ("all", "by_channel", "by_service"):
        assert figures["waits"][key] == s["waits"][key], key
    t = figures["tickets"]
    assert t["queued"] == s["flow"]["queued"]
    assert t["by_channel"] == {c: v["queued"] for c, v in s["waits"]["by_channel"].items()}
    assert t["by_service"] == {c: v["queued"] for c, v in s["waits"]["by_service"].items()}
    o = t["outcomes"]
    assert o["served"] == s["flow"]["served"]
    assert o["no_show"] == s["flow"]["no_show_called"]
    assert o["cancelled"] == s["flow"]["abandoned"] + s["flow"]["cancelled"]  # gave up = cancelled, in the log
    assert figures["heatmap"] == s["heatmap"]
    r = figures["ratings"]["all"]
    assert r["good"] + r["bad"] == s["flow"]["served"] and r["unrated"] == 0
    assert r["bad"] == day.bad_served == len(figures["ratings"]["alerts"]) > 0
    assert sum(w["good"] + w["bad"] for w in figures["ratings"]["by_window"]) == s["flow"]["served"]
    # the simulator signs clerk "W<n>" in at window n: each clerk's figures are their window's
    assert figures["ratings"]["clerks_identified"] is True
    assert [{**c, "clerk": None, "window": int(c["clerk"][1:])} for c in figures["ratings"]["by_clerk"]] \
        == sorted([{**w, "clerk": None} for w in figures["ratings"]["by_window"]], key=lambda w: f"W{w['window']}")
    assert all(a["clerk"] == f"W{a['window']}" for a in figures["ratings"]["alerts"])
    assert sum(h["tickets"] for h in figures["hours"]) == t["queued"]
    assert figures["busiest"][0]["tickets"] == max(h["tickets"] for h in figures["hours"])
    assert figures["service_time"]["all"]["served"] == s["flow"]["served"]
    assert 0 < figures["service_time"]["all"]["p50_min"] <= figures["service_time"]["all"]["p90_min"]


async def test_a_simulated_day_from_a_file_store_gives_the_simulators_figures(day, tmp_path):
    await write_store(f"file:{tmp_path}/hall.db", day)
    report = await read_report(f"file:{tmp_path}/hall.db", day.scenario.hall, period(day.scenario.hall, DAY))
    check_against_simulator(report.figures(), day)


async def test_a_simulated_day_from_a_redis_store_gives_the_same_figures(day, tmp_path, redis_url):
    await write_store(redis_url, day)
    await write_store(f"file:{tmp_path}/hall.db", day)
    hall, when = day.scenario.hall, period(day.scenario.hall, DAY)
    from_redis = (await read_report(redis_url, hall, when)).figures()
    check_against_simulator(from_redis, day)
    assert from_redis == (await read_report(f"file:{tmp_path}/hall.db", hall, when)).figures()


async def test_a_day_without_events_and_a_range_around_the_day(day, tmp_path):
    url = f"file:{tmp_path}/hall.db"
    await write_store(url, day)
    hall = day.scenario.hall
    before = (await read_report(url, hall, period(hall, date(2026, 11, 24)))).figures()
    assert before["tickets"]["queued"] == 0 and before["waits"]["all"]["called"] == 0
    assert before["ratings"]["alerts"] == [] and before["busiest"] == []
    three = (await read_report(url, hall, period(hall, date(2026, 11, 24), date(2026, 11, 26)))).figures()
    one = (await read_report(url, hall, period(hall, DAY))).figures()
    assert three["days"] == 3 and three["tickets"] == one["tickets"] and three["waits"] == one["waits"]
    # the heatmap is a mean over the days: the same day among three empty-ish ones is a third
    flat = [v for row in three["heatmap"]["values"] for v in row]
    assert flat == pytest.approx([v / 3 for row in one["heatmap"]["values"] for v in row], abs=2e-3)


def test_a_period_that_ends_before_it_starts_or_is_too_long_is_refused(day):
    hall = day.scenario.hall
    with pytest.raises(InvalidArgument, match="ends .* before it starts"):
        period(hall, DAY, date(2026, 11, 24))
    with pytest.raises(InvalidArgument, match=f"at most {MAX_DAYS} days"):
        period(hall, date(2025, 1, 1), date(2026, 1, 2))
    for first, last in ((date(9999, 12, 31), None), (date(1, 1, 1), None), (DAY, date(2100, 1, 1))):
        with pytest.raises(InvalidArgument, match="a report covers days from 1970-01-02 to 2099-12-31"):
            period(hall, first, last)
    assert period(hall, DAY).end - period(hall, DAY).start == 86400


def test_cli_prints_tables_and_writes_csv_and_png(day, tmp_path, capsys):
    trio.run(write_store, f"file:{tmp_path}/hall.db", day)
    argv = ["report", "--store", f"file:{tmp_path}/hall.db", "--hall", str(day.scenario.hall.source),
            "--date", DAY.isoformat()]
    assert main(argv + ["--csv", str(tmp_path / "csv"), "--charts", str(tmp_path / "png")]) == 0
    out = capsys.readouterr().out
    assert f"Report {day.scenario.hall.id}, {DAY}" in out and "Ratings by window" in out
    assert "Ratings by clerk" in out and "│ W1 " in out
    assert main(argv + ["--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    check_against_simulator(figures, day)
    with (tmp_path / "csv" / "waits.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["group"] == "all" and int(rows[0]["queued"]) == figures["tickets"]["queued"]
    assert float(rows[0]["p90_min"]) == pytest.approx(figures["waits"]["all"]["p90_min"])
    with (tmp_path / "csv" / "heatmap.csv").open(encoding="utf-8") as f:
        heat = list(csv.reader(f))
    assert heat[0] == ["zone", *(f"{h:02d}" for h in range(24))]
    assert [r[0] for r in heat[1:]] == figures["heatmap"]["zones"]
    with (tmp_path / "csv" / "alerts.csv").open(encoding="utf-8") as f:
        alerts = list(csv.DictReader(f))
    assert [int(a["ticket"]) for a in alerts] == [a["ticket"] for a in figures["ratings"]["alerts"]]
    assert [a["clerk"] for a in alerts] == [f"W{a['window']}" for a in alerts]
    with (tmp_path / "csv" / "clerks.csv").open(encoding="utf-8") as f:
        clerks = list(csv.DictReader(f))
    assert [(c["clerk"], int(c["good"]), int(c["bad"])) for c in clerks] \
        == [(c["clerk"], c["good"], c["bad"]) for c in figures["ratings"]["by_clerk"]]
    for name in ("heatmap", "hours", "waits", "services", "ratings"):
        assert (tmp_path / "png" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC, name


def test_cli_bad_dates_are_one_line_errors(day, tmp_path, capsys):
    trio.run(write_store, f"file:{tmp_path}/hall.db", day)
    base = ["report", "--store", f"file:{tmp_path}/hall.db", "--hall", str(day.scenario.hall.source)]
    with pytest.raises(SystemExit) as exit_:
        main(base + ["--date", "2026-13-01"])
    assert exit_.value.code == 2 and "not a date YYYY-MM-DD: '2026-13-01'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--from", "2026-11-24"])
    assert "give --date D, or --from D1 --to D2" in capsys.readouterr().err
    assert main(base + ["--from", "2026-11-25", "--to", "2026-11-24"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callsys: the period ends (2026-11-24) before it starts") and "Traceback" not in err
    assert main(["report", "--store", f"file:{tmp_path}/none.db", "--hall", str(day.scenario.hall.source),
                 "--date", DAY.isoformat()]) == 2
    assert "there is no store at" in capsys.readouterr().err


def test_ratings_fold_counts_per_window_and_alerts_on_bad():
    ratings = Ratings()
    events = [
        ev.TicketCalled(10.0, 1, 3, "A001", "SOC", False), ev.ServiceStarted(20.0, 1, 3),
        ev.ServiceFinished(100.0, 1, 3, "good", 5, "A1024"),
        ev.TicketCalled(110.0, 2, 3, "A002", "SOC", False), ev.ServiceFinished(200.0, 2, 3, "bad", 1, "B2048"),
        ev.TicketCalled(120.0, 3, 4, "B001", "MED", False), ev.ServiceFinished(210.0, 3, 4, None, None, "A1024"),
        ev.TicketCalled(130.0, 4, 4, "B002", "MED", False), ev.ServiceFinished(220.0, 4, 4, "good", None),  # anonymous
    ]
    alerts = [ratings.apply(e) for e in events]
    assert [a for a in alerts if a is not None] == ratings.alerts
    (alert,) = ratings.alerts
    assert alert.to_dict() == {"at": 200.0, "ticket": 2, "number": "A002", "window": 3, "clerk": "B2048",
                               "score": 1}
    assert ratings.windows[3].to_dict() == {"window": 3, "clerk": None, "good": 1, "bad": 1, "unrated": 0,
                                            "good_share": 0.5, "scored": 2, "mean_score": 3.0}
    assert ratings.windows[4].unrated == 1 and ratings.windows[4].good_share == 1.0
    # per clerk: A1024 served at windows 3 and 4; the anonymous service counts for its window only
    assert ratings.to_dict()["by_clerk"] == [
        {"window": None, "clerk": "A1024", "good": 1, "bad": 0, "unrated": 1, "good_share": 1.0, "scored": 1,
         "mean_score": 5.0},
        {"window": None, "clerk": "B2048", "good": 0, "bad": 1, "unrated": 0, "good_share": 0.0, "scored": 1,
         "mean_score": 1.0}]
    assert ratings.to_dict()["clerks_identified"] is True
    total = ratings.total()
    assert (total.good, total.bad, total.unrated) == (2, 1, 1)
    later = Ratings(since=150.0)  # a period starting later: the first finish is not counted
    for e in events:
        later.apply(e)
    assert later.windows[3].good == 0 and later.windows[3].bad == 1


async def test_http_report_answers_the_same_figures_as_the_log(api_server):
    server = api_server
    hall = server.hall
    async with api(server) as http:
        for _ in range(3):
            assert (await http.post("/tickets", json={"service": "SOC"})).status_code == 201
    now = server.clock.now()
    window = next(w.id for w in hall.windows if "SOC" in w.skills)
    for command in (cmd.OpenWindow(now, window), cmd.CallNext(now, window), cmd.StartService(now, window),
                    cmd.FinishService(now, window, rating="bad", score=2)):
        await server.execute(command)[1].wait()
    today = hall.local_time(now).date()
    async with api(server) as http:
        answer = await http.get("/reports", params={"date": today.isoformat()})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        doc = (await http.get("/openapi.json")).json()
        error_of(await http.get("/reports", params={"date": "2026-02-30"}), 422, "invalid_request")
        error_of(await http.get("/reports"), 422, "invalid_request")
        error_of(await http.get("/reports", params={"date": today.isoformat(), "to": "2000-01-01"}), 400,
                 "invalid_argument")
    expected = (await report_from_log(server.journal.log, hall, period(hall, today))).figures()
    assert body == json.loads(json.dumps(expected))
    assert body["tickets"]["queued"] == 3 and body["tickets"]["outcomes"]["served"] == 1
    (alert,) = body["ratings"]["alerts"]
    assert alert["window"] == window and alert["score"] == 2 and alert["number"] is not None
    assert "/reports" in doc["paths"] and "ReportOut" in doc["components"]["schemas"]
    assert START.date() == today


@guard()
async def test_manager_ratings_query_alerts_on_bad_and_survives_a_restart(demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, store)
        async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk, \
                client(server, "manager") as manager:
            for _ in range(3):
                await kiosk.request("take_number", service="SOC")
            await clerk.request("open_window")
            for rating, score in (("good", 5), ("bad", 1), (None, None)):
                await clerk.request("call_next")
                await clerk.request("finish", rating=rating, score=score)
            first = await manager.request("ratings")
        server.shutdown()
    assert first["by_window"] == [{"window": 7, "clerk": None, "good": 1, "bad": 1, "unrated": 1, "good_share": 0.5,
                                   "scored": 2, "mean_score": 3.0}]
    (alert,) = first["alerts"]
    assert (alert["number"], alert["window"], alert["score"]) == ("C002", 7, 1)
    assert first["clerks_identified"] is False and first["all"]["bad"] == 1
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, store)  # recovered: seeded from the state
        async with client(server, "manager") as manager, client(server, "clerk", window=7) as clerk:
            assert await manager.request("ratings") == first
            with pytest.raises(RequestFailed, match="forbidden: this role may not send .ratings."):
                await clerk.request("ratings")  # a manager's query only
            await manager.request("reset_day")
            assert (await manager.request("ratings"))["alerts"] == []  # the night's reset starts the day again
        server.shutdown()


@guard()
async def test_a_clerk_signs_in_with_a_staff_id_and_a_bad_rating_names_them(demo_hall, tmp_path):
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, tmp_path / "hall.db")
        async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk, \
                client(server, "manager") as manager:
            for _ in range(2):
                await kiosk.request("take_number", service="SOC")
            with pytest.raises(RequestFailed) as refused:
                await clerk.request("open_window", clerk="A1024 " * 6)
            assert refused.value.code == "invalid_argument" and "clerk" in refused.value.message
            with pytest.raises(RequestFailed) as refused:
                await clerk.request("open_window", clerk=1024)
            assert refused.value.code == "invalid_field"
            opened = await clerk.request("open_window", clerk="A1024")
            assert opened["events"][0] == {"kind": "window_opened", "at": opened["events"][0]["at"], "window": 7,
                                           "clerk": "A1024"}
            assert (await clerk.request("window"))["clerk"] == "A1024"
            for rating, score in (("good", 5), ("bad", 1)):
                await clerk.request("call_next")
                done = await clerk.request("finish", rating=rating, score=score)
                assert done["events"][0]["clerk"] == "A1024"
            ratings = await manager.request("ratings")
            cockpit = await manager.request("cockpit", follow=False)
        server.shutdown()
    assert ratings["clerks_identified"] is True
    assert ratings["by_clerk"] == [{"window": None, "clerk": "A1024", "good": 1, "bad": 1, "unrated": 0,
                                    "good_share": 0.5, "scored": 2, "mean_score": 3.0}]
    (alert,) = ratings["alerts"]
    assert (alert["number"], alert["window"], alert["clerk"]) == ("C002", 7, "A1024")
    (shown,) = [a for a in cockpit["alerts"] if a["kind"] == "bad_rating"]
    assert (shown["number"], shown["window"], shown["clerk"]) == ("C002", 7, "A1024")
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, tmp_path / "hall.db")  # recovered: seeded from the state
        async with client(server, "manager") as manager:
            assert await manager.request("ratings") == ratings
        server.shutdown()


async def test_reading_stops_at_the_first_day_reset_after_the_period(day, tmp_path):
    url = f"file:{tmp_path}/hall.db"
    assert isinstance(day.events[-1], ev.DayReset) and day.events[-1].at >= period(day.scenario.hall, DAY).end
    # after the night's reset, a record the fold could not take (a call of a ticket never issued, stamped
    # inside the period): read, it would raise; the report must have stopped before it
    stray = ev.TicketCalled(period(day.scenario.hall, DAY).start + 3600, 10**9, 1, "X999", "SOC", False)
    async with open_journal(url, day.scenario.hall, snapshot_on_close=False) as journal:
        await journal.commit([*day.events, stray])
    report = await read_report(url, day.scenario.hall, period(day.scenario.hall, DAY))
    assert report.complete and report.events == len(day.events) - 1  # all but the reset, which is past the end
    check_against_simulator(report.figures(), day)


async def test_a_hall_file_that_did_not_write_the_store_is_a_clear_error(day, tmp_path):
    url = f"file:{tmp_path}/hall.db"
    await write_store(url, day)
    data = read_toml(day.scenario.hall.source)
    data["window_blocks"][0]["count"] -= 1  # the same hall id, window 4 gone
    edited = hall_from_mapping(data, source="edited.toml")
    with pytest.raises(HallMismatch, match=r"names 4, which hall file edited.toml does not have .* is it the hall "
                                           r"file that wrote this store, unchanged\?"):
        await read_report(url, edited, period(edited, DAY))


async def test_two_simulated_days_as_a_range_and_day_by_day(tmp_path):
    data = tomllib.loads((SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8"))
    data["scenario"] |= {"days": 2}
    data["arrivals"] |= {"visitors": 300}
    data["citizens"] |= {"silent_abandon": 0.0}
    scenario = scenario_from_mapping(data, source="demo-2days.toml", base=SCENARIO_DIR)
    recorder = Recorder(scenario.hall, scenario.start + scenario.warmup_s)
    summary = Simulation(scenario, seed=5, tracker=recorder).run()
    url = f"file:{tmp_path}/hall.db"
    async with open_journal(url, scenario.hall, snapshot_on_close=False) as journal:
        await journal.commit(recorder.events)
    hall, second = scenario.hall, date(2026, 11, 26)
    both = (await read_report(url, hall, period(hall, DAY, second))).figures()
    for key in ("all", "by_channel", "by_service"):
        assert both["waits"][key] == summary["waits"][key], key
    assert both["heatmap"] == summary["heatmap"]  # a mean over the two days, as the simulator's
    assert both["tickets"]["queued"] == summary["flow"]["queued"]
    days = [(await read_report(url, hall, period(hall, d))).figures() for d in (DAY, second)]
    assert all(d["tickets"]["queued"] > 0 for d in days)
    assert sum(d["tickets"]["queued"] for d in days) == both["tickets"]["queued"]
    assert sum(d["ratings"]["all"]["bad"] for d in days) == both["ratings"]["all"]["bad"]
    assert [h["tickets"] for h in both["hours"]] == [a["tickets"] + b["tickets"]
                                                       for a, b in zip(days[0]["hours"], days[1]["hours"])]
