"""A lean kiosk load client for the ingest benchmark: real WebSocket, real msgpack, less Python.

:mod:`callsys.client` (trio-websocket, a reader and a writer task per connection, an event
per request) spends ~140 us of CPU per request; on a 2-core machine that shares its cores
with the server, the load generator would eat the core the server needs. This client is
to the server what ``wrk`` is to a web server: one task per connection, the opening
handshake by wsproto, masked binary frames (:mod:`callsys._wsframe`), every request of a
connection written together, every reply decoded and checked (an ``ok`` with the ticket,
matched to its request by ``id``).
"""

from __future__ import annotations

import random
import secrets
from typing import Any
from urllib.parse import urlsplit

import msgpack
import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.handshake import H11Handshake

from callsys._wsframe import OP_PONG, Close, FrameError, FrameReader, Ping, close_frame, frame, mask
from callsys.protocol import MSGPACK

RECEIVE_BYTES = 65536
MAX_MESSAGE = 1 << 20


class KioskError(Exception):
    """The server refused the connection, a request, or broke the protocol."""


class Kiosk:
    """One kiosk connection. Requests carry ids; :attr:`sent` maps each id to its send time."""

    def __init__(self, stream: trio.SocketStream, trailing: bytes, services: list[str], *, keyed: bool = True) -> None:
        self.stream = stream
        self.services = services
        self.keyed = keyed  # each request with an idempotency key, as callsys.client's devices send them
        self._prefix = secrets.token_hex(8)
        self.sent: dict[int, float] = {}
        self.rejected: dict[str, int] = {}
        self.closed: str | None = None  # why the server closed it, in a :func:`closed_loop` that drops closed ones
        self._reader = FrameReader(max_message=MAX_MESSAGE, client_frames=False)
        self._pending = [trailing] if trailing else []
        self._next = 0
        self._packer = msgpack.Packer()
        self._keys = random.Random(len(trailing))

    @classmethod
    async def connect(cls, url: str, token: str, services: list[str], *, keyed: bool = True) -> "Kiosk":
        parts = urlsplit(url)
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        handshake = H11Handshake(ConnectionType.CLIENT)
        await stream.send_all(handshake.send(Request(host=parts.netloc, target=parts.path, subprotocols=[MSGPACK])))
        while True:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise KioskError("the server closed during the handshake")
            handshake.receive_data(data)
            event = next(handshake.events(), None)
            if isinstance(event, RejectConnection):
                raise KioskError(f"handshake refused: HTTP {event.status_code}")
            if isinstance(event, AcceptConnection):
                break
        kiosk = cls(stream, bytes(handshake._h11_connection.trailing_data[0]), services, keyed=keyed)  # noqa: SLF001
        await kiosk._write(frame(0x2, msgpack.packb({"type": "hello", "role": "kiosk", "token": token}), masked=True))
        welcome = (await kiosk.receive())[0]
        if welcome.get("type") != "welcome":
            raise KioskError(f"hello refused: {welcome}")
        return kiosk

    def request_frames(self, n: int, now: float) -> bytes:
        """*n* take-number requests, framed for one write, stamped as sent at *now*.

        Masking keys come from a seeded PRNG, not ``os.urandom`` (a system call per frame):
        unpredictable keys protect proxies from cache poisoning, which a load generator
        on loopback need not do; the frames are otherwise what any client sends.
        """
        frames = []
        keys = self._keys
        for _ in range(n):
            rid = self._next
            self._next += 1
            self.sent[rid] = now
            service = self.services[rid % len(self.services)]
            request = {"type": "take_number", "id": rid, "service": service}
            if self.keyed:
                request["key"] = f"{self._prefix}-{rid}"
            payload = self._packer.pack(request)
            key = keys.getrandbits(32).to_bytes(4, "little")
            frames.append(bytes((0x82, 0x80 | len(payload))) + key + mask(payload, key))  # requests are < 126 bytes
        return b"".join(frames)

    async def send_requests(self, n: int, now: float) -> None:
        await self._write(self.request_frames(n, now))

    async def receive(self) -> list[dict[str, Any]]:
        """The next decoded messages from the server (at least one)."""
        while True:
            data = self._pending.pop() if self._pending else await self.stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise KioskError("the server closed the connection")
            messages = []
            for item in self._reader.feed(data):
                if type(item) is bytes:
                    messages.append(msgpack.unpackb(item))
                elif isinstance(item, Ping):
                    await self._write(frame(OP_PONG, item.payload, masked=True))
                elif isinstance(item, (Close, FrameError)):
                    raise KioskError(f"closed by the server: {item}")
            if messages:
                return messages

    def latencies(self, replies: list[dict[str, Any]], now: float) -> list[float]:
        """Seconds from send to *now* of the *replies* that issued a ticket (rejections counted apart)."""
        out = []
        for reply in replies:
            sent, accepted = self.acknowledged(reply)
            if accepted:
                out.append(now - sent)
        return out

    def acknowledged(self, reply: dict[str, Any]) -> tuple[float, bool]:
        """(send time, accepted) of the request *reply* answers.

        Raises:
            KioskError: the reply matches no request, or is neither a ticket nor an error.
        """
        sent = self.sent.pop(reply.get("id"), None)
        if sent is None:
            raise KioskError(f"a reply to no request: {reply}")
        if reply["type"] == "ok" and type(reply["result"].get("number")) is str:
            return sent, True
        if reply["type"] == "error":
            self.rejected[reply["code"]] = self.rejected.get(reply["code"], 0) + 1
            return sent, False
        raise KioskError(f"not a ticket: {reply}")

    async def aclose(self) -> None:
        try:
            await self._write(close_frame(1000, "bye", masked=True))
        finally:
            await trio.aclose_forcefully(self.stream)

    async def _write(self, data: bytes) -> None:
        await self.stream.send_all(data)



async def closed_loop(kiosks: list[Kiosk], seconds: float, pipeline: int, *,
                      drop_closed: bool = False) -> tuple[int, float, list[float]]:
    """(acks, elapsed s, latencies s) with *pipeline* requests in flight per connection: one
    new request per answer, all in one write, until *seconds* have passed.

    With *drop_closed*, a connection the server closes (e.g. its hall's server stopped: it lost
    the hall's lease) drops out of the loop, the reason in ``kiosk.closed``, and the others go
    on; without it, the :class:`KioskError` ends the run.
    """
    acks = 0
    latencies: list[float] = []
    start = trio.current_time()
    deadline = start + seconds

    async def connection(kiosk: Kiosk) -> None:
        nonlocal acks
        if kiosk.closed:
            return
        await kiosk.send_requests(pipeline, trio.current_time())
        outstanding = pipeline
        while outstanding:
            try:
                replies = await kiosk.receive()
            except KioskError as exc:
                if not drop_closed:
                    raise
                kiosk.closed = str(exc)
                return
            now = trio.current_time()
            accepted = kiosk.latencies(replies, now)
            acks += len(accepted)
            latencies.extend(accepted)
            outstanding -= len(replies)
            if now < deadline:
                await kiosk.send_requests(len(replies), now)
                outstanding += len(replies)

    async with trio.open_nursery() as nursery:
        for kiosk in kiosks:
            nursery.start_soon(connection, kiosk)
    return acks, trio.current_time() - start, latencies
