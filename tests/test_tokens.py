"""Device tokens: the server warns about the published sample tokens, and
``callsys config tokens`` generates real ones (printed, or written into the hall file with
every byte outside its ``[tokens]`` table unchanged)."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest
import trio

from callsys.cli import main
from callsys.hall import ROLES, load_hall
from callsys.tokens import SAMPLE_TOKENS, TokenFileError, rewrite_tokens, sample_token_roles
from conftest import CONFIG
from server_support import captured_log, guard, start_server

# every hall file shipped in config/ (a network file, config/baoan.toml, has its tokens in [defaults.tokens])
SHIPPED = sorted(path.name for path in CONFIG.glob("*.toml")
                 if "network" not in tomllib.loads(path.read_text(encoding="utf-8")))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def shipped_tokens(name: str) -> set[str]:
    data = tomllib.loads((CONFIG / name).read_text(encoding="utf-8"))
    return {t for tokens in data.get("tokens", {}).values() for t in tokens}


# ---------------------------------------------------------------------- the warning


def test_sample_tokens_are_exactly_those_published_in_config():
    assert SAMPLE_TOKENS == set().union(*(shipped_tokens(name) for name in SHIPPED))
    assert {"demo.toml", "qingdao.toml"} <= set(SHIPPED)


def test_sample_token_roles(demo_hall, qingdao_hall, make_hall):
    assert sample_token_roles(demo_hall) == sample_token_roles(qingdao_hall) == list(ROLES)
    assert sample_token_roles(make_hall()) == []
    mixed = make_hall({"tokens": {"kiosk": ["k1"], "clerk": ["c1", "qd-clerk-demo"], "manager": ["m1"]}})
    assert sample_token_roles(mixed) == ["clerk"]


@pytest.fixture
def warnings_logged():
    with captured_log(logging.WARNING) as records:
        yield records


@pytest.mark.parametrize("tokens, roles", [
    (None, list(ROLES)),
    ({"kiosk": ["demo-kiosk"], "clerk": ["a-real-clerk-token"]}, ["kiosk"]),
    ({"kiosk": ["a-real-kiosk-token"]}, []),
])
@guard()
async def test_server_warns_once_at_start_naming_roles_with_sample_tokens(tmp_path, warnings_logged, tokens, roles):
    path = tmp_path / "hall.toml"
    text = (CONFIG / "demo.toml").read_text(encoding="utf-8")
    if tokens is not None:
        text = rewrite_tokens(text, tokens)
    path.write_text(text, encoding="utf-8")
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, load_hall(path), tmp_path / "hall.db")
        server.shutdown()
    lines = [r for r in warnings_logged if r.getMessage() == "sample_tokens"]
    assert [(r.levelno, r.fields["roles"]) for r in lines] == ([(logging.WARNING, roles)] if roles else [])
    if roles:
        assert lines[0].fields["hall_file"] == str(path) and "callsys config tokens" in lines[0].fields["message"]


# ---------------------------------------------------------------------- callsys config tokens


def test_config_tokens_prints_a_table_of_fresh_strong_tokens(capsys):
    code, out, err = run(capsys, "config", "tokens", str(CONFIG / "demo.toml"))
    assert (code, err) == (0, "")
    tokens = tomllib.loads(out)["tokens"]
    assert list(tokens) == list(ROLES) and all(len(t) == 1 for t in tokens.values())
    flat = [t for ts in tokens.values() for t in ts]
    assert len(set(flat)) == 5 and all(len(t) >= 32 for t in flat) and not set(flat) & SAMPLE_TOKENS
    _, again, _ = run(capsys, "config", "tokens", str(CONFIG / "demo.toml"))
    assert not set(flat) & {t for ts in tomllib.loads(again)["tokens"].values() for t in ts}


@pytest.mark.parametrize("name", SHIPPED)
def test_config_tokens_write_changes_only_the_tokens_table(capsys, tmp_path, name):
    original = (CONFIG / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(original)
    code, out, err = run(capsys, "config", "tokens", str(path), "--write")
    assert (code, out) == (0, "") and "wrote new tokens" in err
    written = path.read_bytes()
    if b"[tokens]" not in original:  # appended
        assert written.startswith(original) and tomllib.loads(written[len(original):].decode())["tokens"]
    else:
        before, after = original.decode().splitlines(keepends=True), written.decode().splitlines(keepends=True)
        def is_key(line: str) -> bool:
            return line.split(" = ")[0] in ROLES

        assert [line for line in after if not is_key(line)] == [line for line in before if not is_key(line)]
        assert sum(map(is_key, after)) == 5 and not set(filter(is_key, after)) & set(before)
    hall = load_hall(path)
    assert hall.summary() | {"tokens": None, "source": None} == load_hall(CONFIG / name).summary() | {
        "tokens": None, "source": None}
    assert sample_token_roles(hall) == [] and all(len(hall.tokens[role]) == 1 for role in ROLES)


def test_rewrite_keeps_every_byte_outside_the_table():
    text = ("# hall\r\n[hall]\r\nid = \"x\"\r\n\r\n[tokens]   # replace me\r\n"
            "kiosk = [\r\n  \"a\",\r\n  \"b\",\r\n]\r\n"
            "# a note inside\r\nclerk = [\"c\"]\r\n\r\n# the windows follow\r\n[[windows]]\r\nid = 1\r\n")
    tokens = {"kiosk": ["K1", "K2"], "clerk": ["C"], "display": ["D"], "speaker": ["S"], "manager": ["M"]}
    result = rewrite_tokens(text, tokens)
    assert result == ("# hall\r\n[hall]\r\nid = \"x\"\r\n\r\n[tokens]   # replace me\r\n"
                      "kiosk = [\"K1\", \"K2\"]\r\nclerk = [\"C\"]\r\ndisplay = [\"D\"]\r\nspeaker = [\"S\"]\r\n"
                      "manager = [\"M\"]\r\n\r\n# the windows follow\r\n[[windows]]\r\nid = 1\r\n")


def test_rewrite_appends_a_table_when_there_is_none():
    tokens = {role: [role.upper()] for role in ROLES}
    assert rewrite_tokens("[hall]\nid = \"x\"", tokens) == (
        "[hall]\nid = \"x\"\n\n[tokens]\n" + "".join(f'{r} = ["{r.upper()}"]\n' for r in ROLES))


@pytest.mark.parametrize("text, problem", [
    ('tokens = {kiosk = ["a"]}\n[hall]\nid = "x"\n', "not written as a [tokens] table"),
    ('tokens.kiosk = ["a"]\n', "not written as a [tokens] table"),
    ('note = """\n[tokens]\n"""\n[tokens]\nkiosk = ["a"]\n', "more than one [tokens] header"),
    ('[tokens]\nkiosk = ["a"]\n[tokens.extra]\nx = 1\n', "without changing other keys"),
    ('[tokens\n', "not valid TOML"),
])
def test_rewrite_refuses_what_it_cannot_edit_safely(text, problem):
    with pytest.raises(TokenFileError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        rewrite_tokens(text, {role: ["x"] for role in ROLES}, "f.toml")


def test_config_tokens_write_leaves_a_file_it_cannot_edit_unchanged(capsys, tmp_path):
    path = tmp_path / "inline.toml"
    text = (CONFIG / "demo.toml").read_text(encoding="utf-8")
    inline = text[:text.index("[tokens]")].replace("[hall]", 'tokens = {kiosk = ["k"]}\n\n[hall]', 1)
    path.write_text(inline, encoding="utf-8")
    assert load_hall(path).tokens["kiosk"] == {"k"}
    code, out, err = run(capsys, "config", "tokens", str(path), "--write")
    assert (code, out) == (2, "") and "not written as a [tokens] table" in err
    assert path.read_text(encoding="utf-8") == inline
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_config_tokens_reports_a_bad_hall_file(capsys, tmp_path):
    code, out, err = run(capsys, "config", "tokens", str(tmp_path / "missing.toml"), "--write")
    assert (code, out) == (2, "") and err.strip() == f"callsys: {tmp_path / 'missing.toml'}: file not found"


def test_config_tokens_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["config", "tokens", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--write" in out and "[tokens]" in out and "every byte outside that table" in out.replace("\n", " ")
