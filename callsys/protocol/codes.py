"""Protocol constants: version, subprotocol names, roles and WebSocket close codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

VERSION: Final = 1
MSGPACK: Final = f"callsys.v{VERSION}.msgpack"  # binary frames, for devices
JSON: Final = f"callsys.v{VERSION}.json"  # text frames, for browser pages
PATH: Final = "/ws"
ROLES: Final = ("kiosk", "clerk", "display", "speaker", "manager", "phone")


class CloseCode(IntEnum):
    """Why the server closed a connection (the WebSocket close code)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server is shutting down (in-flight commands were answered first)
    MESSAGE_TOO_BIG = 1009  # a frame exceeded the maximum frame size
    INTERNAL_ERROR = 1011  # the server stopped because its event log failed (fail-stop)
    HANDSHAKE_FAILED = 4000  # the first message was not a valid hello (an error frame came first)
    UNAUTHORIZED = 4001  # bad token, token of another role, bad phone secret (error frame first)
    IDLE_TIMEOUT = 4002  # no message within the idle timeout (no hello within the hello timeout)
    SLOW_CONSUMER = 4008  # the client read too slowly: its send queue overflowed
    REPLACED = 4009  # a newer clerk sign-in took this connection's window over (in-flight commands answered first)
    HELLO_THROTTLED = 4029  # too many failed hellos from the client's address (a rate_limited error comes first)
