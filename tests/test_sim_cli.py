"""``callsys sim run`` and ``callsys sim plan`` from the command line."""

from __future__ import annotations

import json

import pytest

from callsys.cli import main
from sim.scenario import SCENARIO_DIR

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sim_run_writes_json_and_charts(tmp_path, capsys):
    assert main(["sim", "run", "demo", "--out", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert printed == saved
    assert saved["scenario"] == "demo" and saved["flow"]["served"] > 300
    assert set(saved["waits"]["by_channel"]) == {"kiosk", "qr", "appointment"}
    assert len(saved["heatmap"]["values"]) == 2 and len(saved["heatmap"]["values"][0]) == 24
    for name in ("queue", "waits", "services", "punctuality", "heatmap", "utilisation"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_sim_run_prints_tables_and_replications(tmp_path, capsys):
    assert main(["sim", "run", "demo", "--out", str(tmp_path), "--replications", "3", "--no-charts"]) == 0
    out = capsys.readouterr().out
    for text in ("Waits by channel", "Waits by service", "Zones", "Little's law", "P(wait>0)",
                 "3 replications (seeds 7–9): mean ± 95 % half-width (Student's t)"):
        assert text in out
    saved = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert [r["seed"] for r in saved["replications"]["runs"]] == [7, 8, 9]
    assert 0 < saved["waits"]["all"]["p_wait"] < 1
    reps = saved["replications"]
    assert set(reps["by_service"]) == set(saved["waits"]["by_service"])
    assert reps["p_wait"]["ci95"] > 0 and all(s["p_wait"]["mean"] is not None for s in reps["by_service"].values())
    assert not list(tmp_path.glob("*.png"))


def test_sim_run_of_mmc_compares_with_erlang_c(tmp_path, capsys):
    assert main(["sim", "run", "mmc", "--days", "5", "--out", str(tmp_path), "--no-charts"]) == 0
    out = capsys.readouterr().out
    assert "Erlang C (M/M/2" in out and "P(wait>0) 0.450, simulated" in out


def test_sim_plan_prints_and_writes_the_plan(tmp_path, capsys):
    assert main(["sim", "plan", "demo", "--target", "p90 wait <= 20 min", "--out", str(tmp_path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["met"] and plan["target"] == "p90 wait <= 20 min"
    assert json.loads((tmp_path / "plan" / "plan.json").read_text(encoding="utf-8")) == plan


def test_unknown_scenario_and_bad_target_are_reported(capsys):
    assert main(["sim", "run", "no-such-scenario"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["sim", "plan", "demo", "--target", "soon"]) == 2
    assert "cannot read 'soon'" in capsys.readouterr().err


@pytest.mark.parametrize("args, problem", [
    (["sim", "run", "mmc", "--replications", "0"], "must be >= 1, got 0"),
    (["sim", "run", "mmc", "--seed", "-1"], "must be >= 0, got -1"),
    (["sim", "run", "mmc", "--days", "100000"], "must be <= 3650, got 100000"),
    (["sim", "run", "mmc", "--visitors", "nan"], "not a finite number"),
    (["sim", "run", "mmc", "--top", "0"], "must be >= 1, got 0"),
    (["sim", "plan", "demo", "--target", "p90 wait <= 15 min", "--max-scale", "0"], "must be >= 1, got 0"),
])
def test_out_of_range_options_are_one_line_usage_errors(args, problem, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and problem in err and "Traceback" not in err


@pytest.mark.parametrize("target, problem", [
    ("within target >= 150 %", "at most 100 %"),
    ("p90 wait <= 0 min", "above 0"),
])
def test_impossible_targets_are_refused(target, problem, capsys):
    assert main(["sim", "plan", "demo", "--target", target]) == 2
    assert problem in capsys.readouterr().err


def test_the_benchmark_prints_only_its_json_rows():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "benchmarks.sim", "--json", "--scenario", "demo", "--repeat", "1",
                          "--replications", "2", "--live-seconds", "0", "--eta-scenario", "demo",
                          "--eta-others", "mmc", "--eta-visitors", "300", "--plan-scenario", "demo",
                          "--plan-windows", "10", "--plan-replications", "2", "--regulate-scenario", "demo",
                          "--regulate-replications", "1"], capture_output=True, text=True, check=True)
    rows = {r["metric"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"qingdao_day_s", "qingdao_visitors", "qingdao_commands_per_s", "erlang_c_rel_err",
                         "eta_mae_min", "eta_p90_abs_err_min", "eta_mae_min_mmc", "eta_p90_abs_err_min_mmc",
                         "peak_told_early_share", "plan_weekday_400_p90_min", "weekday_p90_static_min",
                         "weekday_p90_regulated_min", "weekday_within_target_static", "weekday_within_target_regulated"}
    assert rows["weekday_p90_regulated_min"]["target"] == "<= 15" and rows["weekday_p90_static_min"]["value"] >= 0
    assert rows["peak_told_early_share"]["unit"] == "share" and rows["peak_told_early_share"]["target"] is None
    assert rows["eta_mae_min"]["target"] == "<= 3" and rows["eta_mae_min_mmc"]["target"] is None
    assert 0 <= rows["eta_mae_min"]["value"] <= rows["eta_p90_abs_err_min"]["value"] * 10
    assert rows["qingdao_day_s"]["target"] == "<= 10" and rows["qingdao_day_s"]["value"] > 0
    assert rows["erlang_c_rel_err"]["unit"] == "fraction" and 0 <= rows["erlang_c_rel_err"]["value"] < 1
    assert rows["plan_weekday_400_p90_min"]["target"] == "<= 15" and rows["plan_weekday_400_p90_min"]["value"] > 0
    assert all(set(r) == {"metric", "value", "unit", "target"} for r in rows.values())


def test_a_service_no_window_serves_is_warned_about(tmp_path, capsys):
    hall = (SCENARIO_DIR.parent.parent / "config" / "demo.toml").read_text(encoding="utf-8")
    # no window serves PERMIT: the universal windows serve BIZ only, the business ones drop it
    lines = [line.replace('["*"]', '["BIZ"]').replace(', "PERMIT"', "") if line.startswith("skills") else line
             for line in hall.splitlines()]
    (tmp_path / "hall.toml").write_text("\n".join(lines), encoding="utf-8")
    scenario = (SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8").replace(
        'hall = "../../config/demo.toml"', 'hall = "hall.toml"')
    (tmp_path / "s.toml").write_text(scenario, encoding="utf-8")
    assert main(["sim", "run", str(tmp_path / "s.toml"), "--days", "1", "--no-charts", "--json",
                 "--out", str(tmp_path / "out")]) == 0
    assert "callsys: warning: no window serves PERMIT" in capsys.readouterr().err
