"""A standby forwards the API's commands to the hall's owner (Redis store, :mod:`callsys.server.standby`).

On a standby every request runs through the API as usual first: authentication, the rate
limits of its client or address, validation. A request that gets as far as executing a
command meets :meth:`CallsysServer.execute <callsys.server.serve.CallsysServer.execute>`'s
``unavailable`` answer (503, ``details.owner_url``); this middleware then sends the same
request (method, path, query, body, headers) to the owner's HTTP port — the advertised
WebSocket URL with ``http`` for ``ws`` and without its ``/ws`` — with ``X-Forwarded-For``
naming the client, and answers with the owner's response, status and body unchanged. So an
integration, a kiosk or a phone may use any process of the hall, as on the WebSocket.

The owner counts a forwarded request under the client's address when the standby's address
is one of its ``trusted_proxies`` (loopback by default; list the standbys' addresses on
other machines): the per-address limits, and the idempotency namespace of a door-code
ticket, then match a request sent to the owner directly.

If the owner cannot be reached or gives no answer within :data:`FORWARD_TIMEOUT_S` (it died:
a standby takes over within seconds), the standby's own 503 stands (``Retry-After``,
``details.retry``): the client retries with the same ``Idempotency-Key``, which executes the
command once. Reads (``GET``) are never forwarded: they are answered from the standby's
followed state.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import h11
import trio

if TYPE_CHECKING:
    from ..server.serve import CallsysServer

FORWARD_TIMEOUT_S: Final = 5.0  # seconds for the owner's whole answer (a durable command takes milliseconds)
MAX_ANSWER_BYTES: Final = 1 << 20  # an API answer is a few kB; more is not the owner
READ_BYTES: Final = 65536
WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Not passed on: this hop's connection headers, and the body length h11 sets itself.
HOP_HEADERS: Final = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host",
                                b"upgrade", b"te", b"trailer", b"proxy-connection"})


class ForwardToOwner:
    """ASGI middleware around the API app (see the module docstring)."""

    def __init__(self, app: Any, server: "CallsysServer") -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES or self.server.owning:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        answer = _Captured()
        await self.app(scope, _replay(body), answer.send)
        owner = self.server.owner_url
        if not answer.standby_refusal() or owner is None:
            await answer.replay(send)
            return
        try:
            with trio.fail_after(FORWARD_TIMEOUT_S):
                status, headers, content = await forward(owner, scope, body)
        except (OSError, trio.TooSlowError, h11.ProtocolError, ValueError):
            await answer.replay(send)  # the owner is gone: retry here after the takeover
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def forward(owner_url: str, scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Send the request of *scope* with *body* to the owner at *owner_url* (its WebSocket URL);
    its ``(status, headers, body)``."""
    url = urlsplit(owner_url)
    if url.scheme not in ("ws", "wss") or url.hostname is None:
        raise ValueError(f"not a WebSocket URL: {owner_url!r}")
    base = url.path[: -len("/ws")] if url.path.endswith("/ws") else url.path.rstrip("/")
    target = base.encode() + scope.get("raw_path", scope["path"].encode())
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    client = scope.get("client")
    headers = [(name, value) for name, value in scope["headers"] if name.lower() not in HOP_HEADERS]
    if client is not None:
        prior = [v for n, v in headers if n.lower() == b"x-forwarded-for"]
        headers = [(n, v) for n, v in headers if n.lower() != b"x-forwarded-for"]
        chain = b", ".join([*prior, client[0].encode()])
        headers.append((b"x-forwarded-for", chain))
    headers += [(b"host", url.netloc.encode()), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]
    port = url.port or (443 if url.scheme == "wss" else 80)
    stream: trio.abc.Stream = await trio.open_tcp_stream(url.hostname, port)
    if url.scheme == "wss":
        stream = trio.SSLStream(stream, _tls(), server_hostname=url.hostname)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        await stream.send_all(conn.send(h11.Request(method=scope["method"], target=target, headers=headers))
                              + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        response: h11.Response | None = None
        content = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(READ_BYTES))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                content += event.data
                if len(content) > MAX_ANSWER_BYTES:
                    raise ValueError("the owner's answer is too long")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    if response is None:
        raise ValueError("the owner closed without an answer")
    kept = [(n, v) for n, v in response.headers if n.lower() not in HOP_HEADERS]
    return response.status_code, kept, bytes(content)


class _Captured:
    """An answer held back until we know whether it is the standby's refusal."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def send(self, message: dict) -> None:
        self.messages.append(message)

    def standby_refusal(self) -> bool:
        """The answer is :meth:`CallsysServer.execute`'s ``unavailable`` naming the owner."""
        start = next((m for m in self.messages if m["type"] == "http.response.start"), None)
        if start is None or start["status"] != 503:
            return False
        body = b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return False
        return error.get("code") == "unavailable" and "owner_url" in (error.get("details") or {})

    async def replay(self, send: Any) -> None:
        for message in self.messages:
            await send(message)


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await trio.sleep_forever()  # the app does not ask again once it has the body

    return receive


def _tls() -> Any:
    import ssl

    return ssl.create_default_context()
