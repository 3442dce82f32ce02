"""API keys in the hall file: ``[integrations.<name>]``, the published samples and `callsys config api-key`."""

from __future__ import annotations

import logging
import tomllib

import pytest
import trio

from callsys.cli import main
from callsys.errors import ConfigError
from callsys.hall import hall_from_mapping, load_hall, read_toml
from callsys.tokens import SAMPLE_API_KEYS, TokenFileError, rewrite_api_key, sample_api_clients
from conftest import CONFIG
from server_support import captured_log, guard, start_server

SHIPPED = sorted(path.name for path in CONFIG.glob("*.toml"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_api_keys_are_exactly_those_published_in_config(demo_hall, qingdao_hall):
    published = set()
    for name in SHIPPED:
        data = tomllib.loads((CONFIG / name).read_text(encoding="utf-8"))
        published |= {c["key"] for c in data.get("integrations", {}).values()}
    assert SAMPLE_API_KEYS == published
    assert sample_api_clients(demo_hall) == ["demo"] and sample_api_clients(qingdao_hall) == ["wechat"]
    client = qingdao_hall.integrations["wechat"]
    assert (client.rate_per_s, client.burst, client.webhook_url) == (50, 100, None)


@pytest.mark.parametrize("clients, problem", [
    ({"a": {"key": "short"}}, "integrations.a.key"),
    ({"a": {"key": "has spaces in the key"}}, "integrations.a.key"),
    ({"a": {"key": "k" * 20, "rate_per_s": 0}}, "integrations.a.rate_per_s"),
    ({"a": {"key": "k" * 20, "color": "red"}}, "integrations.a.color"),
    ({"Bad Name": {"key": "k" * 20}}, "integrations.Bad Name"),
    ({"a": {"key": "k" * 20}, "b": {"key": "k" * 20}}, "integrations.b.key"),
    ({"a": {"key": "demo-kiosk-token-xx"}}, "integrations.a.key"),
])
def test_bad_integration_tables_name_the_key(clients, problem):
    data = read_toml(CONFIG / "demo.toml")
    data["integrations"] = clients
    data["tokens"]["kiosk"] = ["demo-kiosk-token-xx"]
    with pytest.raises(ConfigError) as caught:
        hall_from_mapping(data, source="x.toml")
    assert problem in str(caught.value)


@pytest.mark.parametrize("clients, warned", [(None, ["demo"]), ({"demo": {"key": "a-real-key-0123456789"}}, [])])
@guard()
async def test_server_warns_at_start_about_sample_api_keys(tmp_path, clients, warned):
    data = read_toml(CONFIG / "demo.toml")
    if clients is not None:
        data["integrations"] = clients
    with captured_log(logging.WARNING) as records:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, hall_from_mapping(data, source="h.toml"), tmp_path / "hall.db")
            server.shutdown()
    lines = [r for r in records if r.getMessage() == "sample_api_keys"]
    assert [r.fields["clients"] for r in lines] == ([warned] if warned else [])
    if warned:
        assert "callsys config api-key" in lines[0].fields["message"]


def test_config_api_key_prints_a_table_with_a_fresh_strong_key(capsys):
    code, out, _ = run(capsys, "config", "api-key", str(CONFIG / "qingdao.toml"), "wechat")
    assert code == 0
    table = tomllib.loads(out)["integrations"]["wechat"]
    assert len(table["key"]) >= 32 and table["key"] not in SAMPLE_API_KEYS
    assert (table["rate_per_s"], table["burst"]) == (50, 100)


@pytest.mark.parametrize("name", ["demo.toml", "qingdao.toml"])
def test_config_api_key_write_changes_only_that_key(capsys, tmp_path, name):
    path = tmp_path / name
    original = (CONFIG / name).read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    client = next(iter(load_hall(path).integrations))
    code, _, err = run(capsys, "config", "api-key", str(path), client, "--write")
    assert code == 0 and "restart" in err
    after = path.read_text(encoding="utf-8")
    changed = [(a, b) for a, b in zip(original.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith("key = ") and len(original) == len(after) - len(
        changed[0][1]) + len(changed[0][0])
    assert sample_api_clients(load_hall(path)) == []


def test_config_api_key_write_appends_a_new_client(capsys, tmp_path):
    path = tmp_path / "demo.toml"
    original = (CONFIG / "demo.toml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    assert run(capsys, "config", "api-key", str(path), "booking-site", "--write")[0] == 0
    after = path.read_text(encoding="utf-8")
    assert after.startswith(original)
    client = load_hall(path).integrations["booking-site"]
    assert (client.rate_per_s, client.burst) == (50, 100) and len(client.key) >= 32


def test_config_api_key_refuses_a_bad_name_and_a_file_it_cannot_edit(capsys, tmp_path, demo_hall):
    code, _, err = run(capsys, "config", "api-key", str(CONFIG / "demo.toml"), "Bad Name")
    assert code == 2 and "a client name is" in err
    text = (CONFIG / "demo.toml").read_text(encoding="utf-8").replace(
        '[integrations.demo]\nkey = "demo-integration-key"', 'integrations.demo.key = "demo-integration-key"\n'
                                                             '[integrations.demo]')
    with pytest.raises(TokenFileError):
        rewrite_api_key(text, demo_hall, "demo", "x" * 32)


def test_config_api_key_help(capsys):
    with pytest.raises(SystemExit):
        main(["config", "api-key", "--help"])
    out = capsys.readouterr().out
    assert "X-API-Key" in out and "--write" in out


def test_integrations_merge_over_a_hall(make_hall):
    hall = make_hall({"integrations": {"site": {"key": "site-key-0123456789", "rate_per_s": 5, "burst": 7}}})
    assert hall.integrations["site"].burst == 7
