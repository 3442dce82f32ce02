"""Per-connection rate limiting: a token bucket on trio's clock."""

from __future__ import annotations

import trio


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
