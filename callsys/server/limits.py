"""The server's limits: a message rate per connection, and who may connect at all.

Policy (the numbers are in :mod:`~callsys.server.settings`; docs/protocol.md states it
for clients):

* **Connection caps.** Every TCP connection counts from the moment it is accepted until
  its socket is closed — also while its HTTP upgrade or its ``hello`` is still missing,
  so idle sockets that never finish a handshake fill the caps like any other. The server
  holds at most ``max_connections`` at once, and at most ``max_connections_per_address``
  from one address (IPv6: one /64, which one host can use whole). Addresses in
  ``trusted_proxies`` (a gateway or reverse proxy that many phones come through) are
  exempt from the per-address cap, never from the global one.
* **Devices before phones.** The caps above cannot tell roles apart: a connection counts
  before its ``hello``. Signed-in phones are counted as well, and a phone's ``hello`` is
  refused (``rate_limited``, close 4029, retry after ``retry_after_s``) once
  ``max_phones`` of them are connected, so a storm of phones can never take the last
  ``max_connections - max_phones`` places from the hall's devices.
* **Failed hellos.** A ``hello`` answered with an error (bad token, a token of another
  role, a wrong phone secret, a malformed hello) counts against its address. After
  ``hello_failures`` of them within ``hello_failure_window_s``, the address is refused
  until the oldest of them is that old. Trusted proxies are exempt: one citizen's stale
  phone behind the hall's gateway must not lock every phone out; the gateway sees the
  real client addresses and throttles them itself.
* **Refusals are cheap.** A refused connection is not counted; the server reads its
  first request — a WebSocket upgrade or any HTTP request — (for at most ``REFUSAL_READ_S``),
  answers HTTP 503 with ``Retry-After`` and closes — no session, no hello, no page. Refusals are logged once per address per
  ``refusal_log_interval_s`` with the count of those left unlogged.

Everything here is plain bookkeeping on times passed in (trio's clock in the server), so
tests can drive it with explicit times.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable

import trio

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBucket:
    """Allows *rate* messages per second on average and *burst* at once.

    Args:
        rate: tokens added per second.
        burst: bucket size (and the tokens a new connection starts with).
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = trio.current_time()

    def take(self, now: float | None = None) -> bool:
        """Spend one token at *now* (trio's clock by default); False (and nothing spent) when empty."""
        if now is None:
            now = trio.current_time()
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


# ---------------------------------------------------------------------- addresses


def parse_networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["10.0.0.5", "192.168.8.0/24", "::1"]`` -> networks.

    Raises:
        ValueError: an entry is neither an IP address nor a network (the message names it).
    """
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24)") from None
    return tuple(networks)


def address_key(host: str) -> str:
    """The key *host* is counted under: the IPv4 address, an IPv6 /64, or *host* itself."""
    ip = _ip(host)
    if ip is None:
        return host
    return str(ipaddress.IPv6Network((ip, 64), strict=False)) if ip.version == 6 else str(ip)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address *host* names (an IPv4-mapped IPv6 one as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# ---------------------------------------------------------------------- admission


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection is refused: ``reason`` (``server_full``, ``address_full``,
    ``hello_failures``, ``shutting_down``), the seconds to tell the client to wait, and the
    body of the 503 answer."""

    reason: str
    retry_after_s: int
    message: str


class Admission:
    """Counts open connections and failed hellos; decides whether a new connection is taken.

    Args:
        max_connections: open connections at most.
        max_per_address: open connections from one address at most (not for trusted ones).
        trusted: addresses/networks exempt from the per-address cap and the hello throttle.
        retry_after_s: what a client refused for a full cap is told to wait.
        hello_failures: failed hellos from one address within *hello_window_s* that make
            it refused.
        hello_window_s: how long a failed hello counts.
        max_phones: signed-in phones at most (default: *max_connections*, no reserve).
    """

    def __init__(self, *, max_connections: int, max_per_address: int, trusted: Iterable[str],
                 retry_after_s: int, hello_failures: int, hello_window_s: float,
                 max_phones: int | None = None) -> None:
        self.max_connections = max_connections
        self.max_phones = max_connections if max_phones is None else max_phones
        self.phones = 0  # signed-in phones now
        self.max_per_address = max_per_address
        self.trusted = parse_networks(trusted)
        self.retry_after_s = retry_after_s
        self.hello_failures = hello_failures
        self.hello_window_s = hello_window_s
        self.open = 0  # connections counted now
        self.by_address: dict[str, int] = {}
        self.refused = 0  # connections refused so far
        self._failures: dict[str, deque[float]] = {}  # address -> times of its recent failed hellos
        self._swept = -math.inf

    def is_trusted(self, host: str) -> bool:
        ip = _ip(host)
        return ip is not None and any(ip in net for net in self.trusted)

    def admit(self, host: str, now: float) -> Refusal | None:
        """Count a connection just accepted from *host*, or say why it is refused (then it is not counted)."""
        refusal = self._refusal(host, now)
        if refusal is not None:
            self.refused += 1
            return refusal
        key = address_key(host)
        self.open += 1
        self.by_address[key] = self.by_address.get(key, 0) + 1
        return None

    def release(self, host: str) -> None:
        """A connection counted by :meth:`admit` is closed."""
        key = address_key(host)
        self.open -= 1
        left = self.by_address[key] - 1
        if left:
            self.by_address[key] = left
        else:
            del self.by_address[key]

    def _refusal(self, host: str, now: float) -> Refusal | None:
        if self.open >= self.max_connections:
            return Refusal("server_full", self.retry_after_s,
                           f"the server is at its limit of {self.max_connections} connections")
        if self.is_trusted(host):
            return None
        wait = self.hello_wait(host, now)
        if wait > 0:
            return Refusal("hello_failures", wait, f"too many failed hellos from your address "
                                                   f"({self.hello_failures} within {self.hello_window_s:g} s)")
        if self.by_address.get(address_key(host), 0) >= self.max_per_address:
            return Refusal("address_full", self.retry_after_s,
                           f"too many connections from your address (limit {self.max_per_address})")
        return None

    def join_phone(self) -> Refusal | None:
        """Count a phone that just signed in, or say why it is refused (then it is not counted)."""
        if self.phones >= self.max_phones:
            self.refused += 1
            return Refusal("phones_full", self.retry_after_s,
                           f"the server keeps its remaining connections for the hall's devices "
                           f"({self.max_phones} phones at most)")
        self.phones += 1
        return None

    def phone_left(self) -> None:
        """A phone counted by :meth:`join_phone` is gone."""
        self.phones -= 1

    # ------------------------------------------------------------------ failed hellos

    def hello_failed(self, host: str, now: float) -> None:
        """A hello from *host* was answered with an error (trusted addresses are not counted)."""
        if self.is_trusted(host):
            return
        self._sweep(now)
        key = address_key(host)
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.hello_failures)
        times.append(now)

    def hello_wait(self, host: str, now: float) -> int:
        """Whole seconds until *host* may say hello again; 0 if it may now."""
        times = self._failures.get(address_key(host))
        if times is None or len(times) < self.hello_failures:
            return 0
        return max(0, math.ceil(times[0] + self.hello_window_s - now))

    def _sweep(self, now: float) -> None:
        """Forget addresses whose failures are all out of the window (at most once per window)."""
        if now - self._swept < self.hello_window_s:
            return
        self._swept = now
        horizon = now - self.hello_window_s
        for key in [k for k, times in self._failures.items() if times[-1] <= horizon]:
            del self._failures[key]


class RefusalLog:
    """Which refusals to log: the first per address per *interval_s*, then one line per
    interval carrying the count of refusals left unlogged since the previous line."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._seen: dict[str, list[float | int]] = {}  # address -> [logged at, unlogged since]
        self._swept = -math.inf

    def note(self, host: str, now: float) -> tuple[list[tuple[str, int]], int | None]:
        """A connection from *host* was refused at *now*.

        Returns:
            ``(stale, unlogged)``: addresses whose unlogged refusals should be reported now
            that their interval has passed (address, count), and None to stay quiet about
            this one or the number of refusals of *host* unlogged before it.
        """
        key = address_key(host)
        stale = self._sweep(now, keep=key)
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            seen[1] += 1
            return stale, None
        self._seen[key] = [now, 0]
        return stale, 0 if seen is None else int(seen[1])

    def _sweep(self, now: float, keep: str) -> list[tuple[str, int]]:
        if now - self._swept < self.interval_s:
            return []
        self._swept = now
        stale = [(k, int(s[1])) for k, s in self._seen.items() if now - s[0] >= self.interval_s and k != keep]
        for key, _ in stale:
            del self._seen[key]
        return [(k, n) for k, n in stale if n]
