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
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import tomllib
from pathlib import Path
from typing import Final, Mapping

from .errors import CallsysError
from .hall import ROLES, Hall

TOKEN_BYTES: Final = 24  # random bytes per generated token (192 bits; 32 URL-safe characters)

# The tokens published in the shipped hall files (config/demo.toml, config/qingdao.toml);
# tests/test_tokens.py keeps this set in step with those files.
SAMPLE_TOKENS: Final = frozenset({
    "demo-kiosk", "demo-clerk", "demo-display", "demo-speaker", "demo-manager",
    "qd-kiosk-demo", "qd-clerk-demo", "qd-display-demo", "qd-speaker-demo", "qd-manager-demo",
})

_HEADER = re.compile(r"^[ \t]*\[[ \t]*tokens[ \t]*\][ \t]*(#.*)?$")
_ANY_HEADER = re.compile(r"^[ \t]*\[")
_QUIET = re.compile(r"^[ \t]*(#.*)?$")  # a blank or comment-only line


class TokenFileError(CallsysError):
    """The hall file's tokens cannot be rewritten safely; the file is unchanged. The file's fault."""

    code = "token_file_error"


def sample_token_roles(hall: Hall) -> list[str]:
    """The roles of *hall* that accept one of the published :data:`SAMPLE_TOKENS`."""
    return [role for role in ROLES if hall.tokens.get(role, frozenset()) & SAMPLE_TOKENS]


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
    path = Path(path).resolve()  # through a symlink: rewrite the file, keep the link
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenFileError(f"{path}: not UTF-8") from None
    data = rewrite_tokens(text, tokens, str(path)).encode("utf-8")
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
