"""Server settings: every limit and timeout of the server (WebSocket and HTTP), with its unit.

The connection limits are sized for the flagship hall: 400 windows (a clerk console, an
LED strip and their share of TVs and speakers: ~1,000 devices) and ~10,000 phones
following their tickets at the busiest hour: ~11,000. ``MAX_CONNECTIONS`` leaves 80 %
headroom over that (a reconnect storm briefly holds a device's old and new sockets); an
idle connection costs ~15 KiB, so a full server holds ~300 MiB of connections.
``MAX_CONNECTIONS_PER_ADDRESS`` is 1 % of it: far more than one device or one
carrier-grade NAT needs, far less than one host would need to fill the server. Phones
reaching the server through one gateway (a reverse proxy, the hall's Wi-Fi NAT) would hit
it, so the gateway's address goes into ``trusted_proxies``; loopback is trusted by
default (a local reverse proxy, the simulator, benchmarks on the same machine).

**Devices before phones.** The caps are counted at accept, before anyone says who they
are. A reconnect storm without a restart (the hall's network drops and comes back) holds
every client's old socket until its idle timeout while the new ones arrive: ~22,000, more
than ``MAX_CONNECTIONS``, and whoever comes first would get in. So signed-in phones may
hold at most ``PHONE_SHARE`` of ``MAX_CONNECTIONS`` (16,000: still 60 % over the busiest
hour's phones); a phone saying hello beyond that is turned away for ``RETRY_AFTER_S``
while clerks, displays, speakers, kiosks and managers are admitted up to the cap. (After
a restart the old sockets are gone: 11,000 fit and nothing is refused.)
"""

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
FANOUT_SLICE: Final = 128  # pushes the fan-out writes before letting other tasks (a clerk's reply) run
QUEUE_PUSH_INTERVAL_S: Final = 1.0  # seconds between two queue_update pushes to one connection, at least
SHUTDOWN_GRACE_S: Final = 5.0  # seconds connections get to drain on shutdown
CLOSE_TIMEOUT_S: Final = 2.0  # seconds to wait for a client to answer a close frame
HANDSHAKE_TIMEOUT_S: Final = 10.0  # seconds from TCP accept to the head of the first request (upgrade or HTTP)
MAX_CONNECTIONS: Final = 20_000  # open TCP connections, counted from accept to close
PHONE_SHARE: Final = 0.8  # fraction of MAX_CONNECTIONS signed-in phones may hold; the rest is kept for devices
MAX_CONNECTIONS_PER_ADDRESS: Final = 200  # open TCP connections from one address (IPv6: one /64)
TRUSTED_PROXIES: Final = ("127.0.0.0/8", "::1")  # addresses/networks exempt from per-address limits
RETRY_AFTER_S: Final = 30  # seconds a refused client is told to wait (Retry-After) when a cap is full
HELLO_FAILURES: Final = 10  # failed hellos from one address within HELLO_FAILURE_WINDOW_S before it is refused
HELLO_FAILURE_WINDOW_S: Final = 60.0  # seconds a failed hello counts against its address
REFUSAL_LOG_INTERVAL_S: Final = 60.0  # seconds between two log lines about refusals of one address
HTTP_KEEP_ALIVE_S: Final = 5.0  # seconds an idle HTTP (not WebSocket) connection is kept open for its next request
HTTP_MAX_REQUESTS: Final = 1000  # HTTP requests served on one connection before it is closed (a page load is ~10)
# The public API endpoints (door code, QR look-up) per client address: generous, since a hall's
# guest Wi-Fi puts every phone behind one address (callsys.api.auth).
API_PUBLIC_RATE_PER_S: Final = 2.0  # requests per second per address, on average
API_PUBLIC_BURST: Final = 60  # requests at once per address
REFUSAL_READ_S: Final = 2.0  # seconds a refused connection gets to send its request before it is dropped
WEBHOOK_RETRY_FIRST_S: Final = 1.0  # seconds before a failed webhook delivery is retried; doubled per failure
WEBHOOK_RETRY_MAX_S: Final = 300.0  # the longest wait between two attempts of one webhook delivery (seconds)
WEBHOOK_TIMEOUT_S: Final = 10.0  # seconds one webhook delivery may take (connect, send, answer)


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
    queue_push_interval_s: float = QUEUE_PUSH_INTERVAL_S
    fanout_slice: int = FANOUT_SLICE
    webhook_retry_first_s: float = WEBHOOK_RETRY_FIRST_S  # see server/webhooks.py
    webhook_retry_max_s: float = WEBHOOK_RETRY_MAX_S
    webhook_timeout_s: float = WEBHOOK_TIMEOUT_S
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_address: int = MAX_CONNECTIONS_PER_ADDRESS
    phone_share: float = PHONE_SHARE  # of max_connections, for signed-in phones
    trusted_proxies: tuple[str, ...] = TRUSTED_PROXIES  # IP addresses or networks ("10.0.0.0/24")
    retry_after_s: int = RETRY_AFTER_S
    hello_failures: int = HELLO_FAILURES
    hello_failure_window_s: float = HELLO_FAILURE_WINDOW_S
    refusal_log_interval_s: float = REFUSAL_LOG_INTERVAL_S
    http_keep_alive_s: float = HTTP_KEEP_ALIVE_S
    http_max_requests: int = HTTP_MAX_REQUESTS
    api_public_rate_per_s: float = API_PUBLIC_RATE_PER_S
    api_public_burst: int = API_PUBLIC_BURST
    manage_gc: bool = False  # tune the process's garbage collector for serving (see server/_gc.py)

    def limits(self) -> dict[str, float]:
        """The limits a client should know, as sent in ``welcome``."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "rate_per_s": self.rate_per_s,
            "rate_burst": self.rate_burst,
            "idle_timeout_s": self.idle_timeout_s,
        }
