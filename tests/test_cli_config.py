"""``callsys config show FILE [--json]``, run through ``callsys.cli.main``."""

from __future__ import annotations

import json

import pytest

from callsys.cli import main

from conftest import CONFIG


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_json_qingdao_has_400_windows(capsys):
    code, out, err = run(capsys, "config", "show", str(CONFIG / "qingdao.toml"), "--json")
    assert (code, err) == (0, "")
    hall = json.loads(out)
    assert hall["id"] == "qingdao"
    assert len(hall["windows"]) == 400
    assert hall["name"]["zh"] == "青岛市民中心"
    assert hall["policy"]["interleave"] == [2, 1]


def test_show_json_demo_round_trips_the_hall(capsys, demo_hall):
    code, out, _ = run(capsys, "config", "show", str(CONFIG / "demo.toml"), "--json")
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(demo_hall.summary()))


@pytest.mark.parametrize("name, windows, title", [("demo", 10, "Demo Service Hall"),
                                                  ("qingdao", 400, "Qingdao Citizen Center")])
def test_show_text_summary(capsys, name, windows, title):
    code, out, err = run(capsys, "config", "show", str(CONFIG / f"{name}.toml"))
    assert (code, err) == (0, "")
    assert title in out
    assert f"{windows} windows" in out
    assert "Hours: Mon" in out and "Policy:" in out


def test_show_bad_file_reports_file_key_and_problem(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    text = (CONFIG / "demo.toml").read_text(encoding="utf-8")
    path.write_text(text.replace('timezone = "Asia/Shanghai"', 'timezone = "Asia/Atlantis"'), encoding="utf-8")
    code, out, err = run(capsys, "config", "show", str(path), "--json")
    assert (code, out) == (2, "")
    assert err.strip() == f"callsys: {path}: hall.timezone: unknown time zone 'Asia/Atlantis'"


def test_show_missing_file(capsys, tmp_path):
    path = tmp_path / "missing.toml"
    code, out, err = run(capsys, "config", "show", str(path))
    assert (code, out) == (2, "")
    assert err.strip() == f"callsys: {path}: file not found"


def test_show_requires_a_file(capsys):
    with pytest.raises(SystemExit) as info:
        main(["config", "show"])
    assert info.value.code == 2
    assert "file" in capsys.readouterr().err


def test_config_show_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "--help"])
    assert info.value.code == 0
    assert "--json" in capsys.readouterr().out
