"""Frame codecs: msgpack in binary frames, JSON in text frames; one per subprotocol.

Encoding is done once per push per codec (the fan-out sends the same bytes to every
subscriber of that format), so both codecs are plain functions over dicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import msgpack

from .codes import JSON, MSGPACK
from .errors import Malformed

Frame = str | bytes


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _json_decode(frame: Frame) -> Any:
    if not isinstance(frame, str):
        raise Malformed("this connection speaks JSON: send text frames")
    try:
        return json.loads(frame, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"not valid JSON: {exc}") from None


def _msgpack_decode(frame: Frame) -> Any:
    if not isinstance(frame, bytes):
        raise Malformed("this connection speaks msgpack: send binary frames")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise Malformed(f"not valid msgpack: {type(exc).__name__}: {exc}") from None


_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json_encode(message: Mapping[str, Any]) -> str:
    return _json_encoder.encode(message)


_packer = msgpack.Packer(use_bin_type=True)


def _msgpack_encode(message: Mapping[str, Any]) -> bytes:
    return _packer.pack(message)


@dataclass(frozen=True, slots=True)
class Codec:
    """How one subprotocol turns messages into frames and back.

    ``decode`` raises :class:`~callsys.protocol.errors.Malformed` on a frame it cannot read.
    """

    subprotocol: str
    binary: bool
    encode: Callable[[Mapping[str, Any]], Frame]
    decode: Callable[[Frame], Any]


MSGPACK_CODEC = Codec(MSGPACK, True, _msgpack_encode, _msgpack_decode)
JSON_CODEC = Codec(JSON, False, _json_encode, _json_decode)
CODECS: dict[str, Codec] = {c.subprotocol: c for c in (MSGPACK_CODEC, JSON_CODEC)}
