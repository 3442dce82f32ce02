"""Server settings: every limit and timeout of the WebSocket server, with its unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8700
MAX_FRAME_BYTES: Final = 64 * 1024  # bytes per frame (characters for JSON text frames)
RATE_PER_S: Final = 200.0  # messages per second a connection may send, sustained
RATE_BURST: Final = 400  # messages a connection may send at once after being quiet
IDLE_TIMEOUT_S: Final = 120.0  # seconds without any message from the client before closing
HELLO_TIMEOUT_S: Final = 10.0  # seconds to send hello after the WebSocket handshake
OUTBOX_FRAMES: Final = 4096  # frames queued to one client before it counts as a slow consumer
MAX_IN_FLIGHT: Final = 64  # commands of one connection awaiting durability at once
PHONE_REFRESH_S: Final = 5.0  # seconds between position refreshes pushed to phones
SHUTDOWN_GRACE_S: Final = 5.0  # seconds connections get to drain on shutdown
CLOSE_TIMEOUT_S: Final = 2.0  # seconds to wait for a client to answer a close frame


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerSettings:
    """Limits and timeouts of :func:`~callsys.server.serve_callsys` (defaults above)."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    rate_per_s: float = RATE_PER_S
    rate_burst: int = RATE_BURST
    idle_timeout_s: float = IDLE_TIMEOUT_S
    hello_timeout_s: float = HELLO_TIMEOUT_S
    outbox_frames: int = OUTBOX_FRAMES
    max_in_flight: int = MAX_IN_FLIGHT
    phone_refresh_s: float = PHONE_REFRESH_S
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    manage_gc: bool = False  # tune the process's garbage collector for serving (see server/_gc.py)

    def limits(self) -> dict[str, float]:
        """The limits a client should know, as sent in ``welcome``."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "rate_per_s": self.rate_per_s,
            "rate_burst": self.rate_burst,
            "idle_timeout_s": self.idle_timeout_s,
        }
