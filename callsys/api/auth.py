"""Who may call the API, how often, and what an ``Idempotency-Key`` becomes.

* An integration client (a booking platform, a WeChat mini-program's backend) sends its key
  from the hall file's ``[integrations.<name>]`` in the ``X-API-Key`` header; no key or an
  unknown one is ``unauthorized`` (401). Keys are compared by their SHA-256 digest, so the
  lookup takes the same time whichever key is tried.
* Each client has its own token bucket (:class:`~callsys.server.limits.TokenBucket`, the
  WebSocket connections' too): ``rate_per_s`` on average, ``burst`` at once; over it the
  answer is ``rate_limited`` (429) with ``Retry-After``, and nothing is executed.
* The public endpoints (a phone on site with the door code, the QR look-up) have no key:
  they are limited per client address (an IPv6 /64 counts as one), generously, since a hall's
  guest Wi-Fi puts every phone behind one address (``ServerSettings.api_public_rate_per_s``, ``api_public_burst``).
* ``Idempotency-Key: <text>`` becomes the engine command's key: ``api:`` + a SHA-256 of the
  client's name and the text (:func:`command_key`), so two clients choosing the same text
  never collide and any length fits :data:`callsys.commands.MAX_KEY`. The door-code path
  namespaces by the door code instead of a client.

A client that booked a ticket may read, reschedule and cancel it with its key during this
run of the server; anyone holding the ticket's ``secret`` (in every ticket object, given only
to whoever took or booked it) may too, in any run — after a restart that is how a client
acts on a booking it made before.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Final, Mapping

from ..commands import MAX_KEY
from ..hall import Integration
from ..server.limits import TokenBucket, address_key
from ..server.settings import API_PUBLIC_BURST, API_PUBLIC_RATE_PER_S
from .errors import ApiError

MAX_ADDRESSES: Final = 50_000  # addresses whose public buckets are kept before the oldest are forgotten
MAX_IDEMPOTENCY_KEY: Final = 256  # characters of an Idempotency-Key header


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(slots=True)
class Caller:
    """Who sent a request: an integration client, or a phone through a public endpoint.

    Attributes:
        name: the client's name, or ``"public"``.
        client: the integration, or None for a public caller.
    """

    name: str
    client: Integration | None = None


PUBLIC: Final = Caller("public")


@dataclass
class Gate:
    """The API's keys and rate limits (one per server).

    Args:
        integrations: the hall's clients by name.
        public_rate_per_s: requests per second per address on the public endpoints.
        public_burst: requests at once per address on the public endpoints.
    """

    integrations: Mapping[str, Integration]
    public_rate_per_s: float = API_PUBLIC_RATE_PER_S
    public_burst: int = API_PUBLIC_BURST
    owners: dict[int, str] = field(default_factory=dict)  # ticket -> the client that took or booked it (this run)
    _by_digest: dict[bytes, Caller] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _public: dict[str, TokenBucket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for client in self.integrations.values():
            self._by_digest[_digest(client.key)] = Caller(client.name, client)

    def client(self, key: str | None) -> Caller:
        """The client whose API key is *key*, rate limit taken.

        Raises:
            ApiError: ``unauthorized`` (no or unknown key), ``rate_limited``.
        """
        if not key:
            raise ApiError("unauthorized", "send your API key in the X-API-Key header")
        digest = _digest(key)
        caller = next((c for d, c in self._by_digest.items() if hmac.compare_digest(d, digest)), None)
        if caller is None:
            raise ApiError("unauthorized", "unknown API key")
        client = caller.client
        assert client is not None
        bucket = self._buckets.get(caller.name)
        if bucket is None:
            bucket = self._buckets[caller.name] = TokenBucket(client.rate_per_s, client.burst)
        _take(bucket, f"client {caller.name!r}")
        return caller

    def public(self, host: str) -> Caller:
        """A caller of a public endpoint from *host*, its address's rate limit taken.

        Raises:
            ApiError: ``rate_limited``.
        """
        key = address_key(host)
        bucket = self._public.get(key)
        if bucket is None:
            if len(self._public) >= MAX_ADDRESSES:  # forget the oldest half (dicts keep insertion order)
                for old in list(self._public)[: MAX_ADDRESSES // 2]:
                    del self._public[old]
            bucket = self._public[key] = TokenBucket(self.public_rate_per_s, self.public_burst)
        _take(bucket, "your address")
        return PUBLIC

    def may_see(self, caller: Caller, ticket: int) -> bool:
        """*caller* took or booked *ticket* (in this run)."""
        return caller.client is not None and self.owners.get(ticket) == caller.name


def _take(bucket: TokenBucket, who: str) -> None:
    if not bucket.take():
        raise ApiError("rate_limited", f"too many requests from {who}: at most {bucket.rate:g}/s "
                                       f"on average, {bucket.burst:g} at once",
                       retry_after_s=1.0 / bucket.rate, rate_per_s=bucket.rate, burst=bucket.burst)


def command_key(namespace: str, idempotency_key: str | None) -> str | None:
    """The engine command key for *idempotency_key* sent by *namespace* (None: no key).

    Raises:
        ApiError: ``invalid_request`` (empty, too long, or not printable ASCII).
    """
    if idempotency_key is None:
        return None
    if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable() \
            or not idempotency_key.isascii():
        raise ApiError("invalid_request", f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII "
                                          "characters", field="header.Idempotency-Key", reason="invalid")
    digest = hashlib.sha256(f"{namespace}\0{idempotency_key}".encode()).hexdigest()
    return ("api:" + digest)[:MAX_KEY]

