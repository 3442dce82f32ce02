"""Device tokens: the published samples, real ones, and rewriting a hall file's ``[tokens]``.

Every device but a phone authenticates with a token of its role from the hall file's
``[tokens]`` table. The hall files shipped in ``config/`` carry sample tokens that anyone
can read in this repository; a server started with them is open to anyone who can reach
it, so the server logs a warning naming the roles that still use one
(:func:`sample_token_roles`), and ``callsys config tokens`` generates real ones.

:func:`rewrite_tokens` edits the file as text, so that everything outside the
``[tokens]`` table stays byte for byte as it was (comments, order, line endings): the
lines from the table's header to its last key are replaced by the new keys (comments
between the keys go with them); the header line itself and the comment or blank lines
after the last key (which introduce the next table) are kept. A file without a
``[tokens]`` table gets one appended. The result is parsed again and must equal the original apart from the
tokens, or nothing is written.

API keys of integration clients (``[integrations.<name>]``, :mod:`callsys.api`) work the
same way: the shipped hall files carry a published sample key (:data:`SAMPLE_API_KEYS`,
warned about at start), and ``callsys config api-key FILE NAME`` generates a real one;
:func:`rewrite_api_key` replaces only the ``key = ...`` line of that client's table (or
appends the table), checked the same way.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import tempfile
import tomllib
from pathlib import Path
from typing import Callable, Final, Mapping

from .errors import CallsysError
from .hall import ROLES, Hall

TOKEN_BYTES: Final = 24  # random bytes per generated token (192 bits; 32 URL-safe characters)

# The tokens published in the shipped hall files (config/demo.toml, config/qingdao.toml);
# tests/test_tokens.py keeps this set in step with those files.
SAMPLE_TOKENS: Final = frozenset({
    "demo-kiosk", "demo-clerk", "demo-display", "demo-speaker", "demo-manager",
    "qd-kiosk-demo", "qd-clerk-demo", "qd-display-demo", "qd-speaker-demo", "qd-manager-demo",
})

# The API keys published in the shipped hall files; tests/test_tokens.py keeps this set in step.
SAMPLE_API_KEYS: Final = frozenset({"demo-integration-key", "qd-wechat-demo-key"})
DEFAULT_RATE_PER_S: Final = 50  # requests per second of a new integration client, on average
DEFAULT_BURST: Final = 100  # requests at once of a new integration client

_HEADER = re.compile(r"^[ \t]*\[[ \t]*tokens[ \t]*\][ \t]*(#.*)?$")
_ANY_HEADER = re.compile(r"^[ \t]*\[")
_QUIET = re.compile(r"^[ \t]*(#.*)?$")  # a blank or comment-only line


class TokenFileError(CallsysError):
    """The hall file's tokens cannot be rewritten safely; the file is unchanged. The file's fault."""

    code = "token_file_error"


def sample_token_roles(hall: Hall) -> list[str]:
    """The roles of *hall* that accept one of the published :data:`SAMPLE_TOKENS`."""
    return [role for role in ROLES if hall.tokens.get(role, frozenset()) & SAMPLE_TOKENS]


def sample_api_clients(hall: Hall) -> list[str]:
    """The integration clients of *hall* whose key is one of the published :data:`SAMPLE_API_KEYS`."""
    return [name for name, client in hall.integrations.items() if client.key in SAMPLE_API_KEYS]


def generate_api_key() -> str:
    """A fresh random API key (:data:`TOKEN_BYTES` random bytes, URL-safe)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def api_client_table(hall: Hall, name: str, key: str, newline: str = "\n") -> str:
    """The ``[integrations.<name>]`` table of client *name* with *key* (its other keys as now)."""
    client = hall.integrations.get(name)
    lines = [f"[integrations.{name}]", f"key = {json.dumps(key)}",
             f"rate_per_s = {client.rate_per_s:g}" if client else f"rate_per_s = {DEFAULT_RATE_PER_S}",
             f"burst = {client.burst}" if client else f"burst = {DEFAULT_BURST}"]
    if client and client.webhook_url is not None:
        lines.append(f"webhook_url = {json.dumps(client.webhook_url)}")
    if client and client.webhook_secret is not None:
        lines.append(f"webhook_secret = {json.dumps(client.webhook_secret)}")
    return newline.join(lines) + newline


def rewrite_api_key(text: str, hall: Hall, name: str, key: str, source: str = "<text>") -> str:
    """*text* (a whole hall file) with client *name*'s key replaced by *key*; the client's table
    is appended when the file has none.

    Raises:
        TokenFileError: the client's key is written some other way (an inline table, dotted
            keys), or the result would differ elsewhere.
    """
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    header = re.compile(r"^[ \t]*\[[ \t]*integrations[ \t]*\.[ \t]*" + re.escape(name) + r"[ \t]*\][ \t]*(#.*)?$")
    key_line = re.compile(r"^([ \t]*key[ \t]*=[ \t]*)(\"[^\"]*\"|'[^']*')([ \t]*(#.*)?)$")
    original = _parse(text, source)
    headers = [i for i, line in enumerate(lines) if header.match(line.rstrip("\r\n"))]
    if not headers:
        if name in original.get("integrations", {}):
            raise TokenFileError(f"{source}: client {name!r} is not written as an [integrations.{name}] table; "
                                 "replace it with the table printed by `callsys config api-key`")
        joined = "".join(lines)
        if joined and not joined.endswith("\n"):
            joined += newline
        result = joined + newline + api_client_table(hall, name, key, newline)
    else:
        start = headers[0] + 1
        end = next((i for i in range(start, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines))
        found = [i for i in range(start, end) if key_line.match(lines[i].rstrip("\r\n"))]
        if len(headers) > 1 or len(found) != 1:
            raise TokenFileError(f"{source}: cannot find the one `key = \"...\"` line of [integrations.{name}]")
        i = found[0]
        ending = lines[i][len(lines[i].rstrip("\r\n")):]
        m = key_line.match(lines[i].rstrip("\r\n"))
        lines[i] = m.group(1) + json.dumps(key) + m.group(3) + ending
        result = "".join(lines)
    after = _parse(result, source)
    expected = copy.deepcopy(original)
    expected.setdefault("integrations", {}).setdefault(name, _parse(api_client_table(hall, name, key), source)[
        "integrations"][name])
    expected["integrations"][name]["key"] = key
    if after != expected:
        raise TokenFileError(f"{source}: cannot rewrite the key of [integrations.{name}] without changing other "
                             "keys; paste the table by hand")
    return result


def write_api_key(path: str | Path, hall: Hall, name: str, key: str) -> None:
    """Set client *name*'s API key in the hall file at *path* in place (atomically).

    Raises:
        TokenFileError: see :func:`rewrite_api_key`; the file is unchanged.
    """
    _rewrite_file(path, lambda text, source: rewrite_api_key(text, hall, name, key, source))


def generate_tokens(hall: Hall) -> dict[str, list[str]]:
    """Fresh random tokens for every role: as many as the hall has for it now, at least one."""
    return {role: [secrets.token_urlsafe(TOKEN_BYTES) for _ in range(max(1, len(hall.tokens.get(role, ()))))]
            for role in ROLES}


def tokens_table(tokens: Mapping[str, list[str]], newline: str = "\n") -> str:
    """*tokens* as a TOML ``[tokens]`` table."""
    lines = ["[tokens]"] + [f"{role} = [{', '.join(json.dumps(t) for t in values)}]"
                            for role, values in tokens.items()]
    return newline.join(lines) + newline


def rewrite_tokens(text: str, tokens: Mapping[str, list[str]], source: str = "<text>") -> str:
    """*text* (a whole hall file) with its ``[tokens]`` table holding *tokens*.

    Raises:
        TokenFileError: the tokens are written some other way (an inline table, dotted
            keys, two ``[tokens]`` headers), or the result would differ elsewhere.
    """
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line.rstrip("\r\n"))]
    original = _parse(text, source)
    if not headers:
        if "tokens" in original:
            raise TokenFileError(f"{source}: the tokens are not written as a [tokens] table; "
                                 "replace them with the table printed by `callsys config tokens`")
        joined = "".join(lines)
        if joined and not joined.endswith("\n"):
            joined += newline
        result = joined + newline + tokens_table(tokens, newline)
    elif len(headers) > 1:
        raise TokenFileError(f"{source}: more than one [tokens] header")
    else:
        start = headers[0] + 1
        end = next((i for i in range(start, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines))
        last_key = max((i for i in range(start, end) if not _QUIET.match(lines[i].rstrip("\r\n"))), default=start - 1)
        body = tokens_table(tokens, newline).split(newline, 1)[1]
        if not lines[start - 1].endswith("\n"):
            body = newline + body
        result = "".join(lines[:start]) + body + "".join(lines[last_key + 1:])
    _check(original, _parse(result, source), tokens, source)
    return result


def write_tokens(path: str | Path, tokens: Mapping[str, list[str]]) -> None:
    """Rewrite the ``[tokens]`` table of the hall file at *path* in place (atomically).

    Raises:
        TokenFileError: see :func:`rewrite_tokens`; the file is unchanged.
    """
    _rewrite_file(path, lambda text, source: rewrite_tokens(text, tokens, source))


def _rewrite_file(path: str | Path, rewrite: Callable[[str, str], str]) -> None:
    """Replace the hall file at *path* by ``rewrite(text, source)``, atomically."""
    path = Path(path).resolve()  # through a symlink: rewrite the file, keep the link
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenFileError(f"{path}: not UTF-8") from None
    data = rewrite(text, str(path)).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parse(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TokenFileError(f"{source}: not valid TOML: {exc}") from None


def _check(before: dict, after: dict, tokens: Mapping[str, list[str]], source: str) -> None:
    """The rewritten file must hold exactly *tokens* and be otherwise unchanged."""
    rest_before = {k: v for k, v in before.items() if k != "tokens"}
    rest_after = {k: v for k, v in after.items() if k != "tokens"}
    if rest_before != rest_after or after.get("tokens") != dict(tokens):
        raise TokenFileError(f"{source}: cannot rewrite the [tokens] table without changing other keys "
                             "(is it split or followed by keys of another table?); paste the table by hand")
