"""Structured logs: one line per connection open/close and per rejected message.

Lines are ``key=value`` pairs (or JSON objects with ``--log-format json``) on the stdlib
``logging`` logger ``callsys.server``; accepted commands are not logged on the hot path.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

logger = logging.getLogger("callsys.server")


def log(level: int, event: str, **fields: Any) -> None:
    """Log *event* with *fields* as structured data (cheap when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}",
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    out.update((k, v) for k, v in getattr(record, "fields", {}).items() if v is not None)
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False, default=str)


def configure(level: str = "info", fmt: str = "kv") -> None:
    """Send callsys logs to stderr as key=value (*fmt* ``"kv"``) or JSON lines (``"json"``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger("callsys")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
