"""Writing many WebSocket frames with one system call.

trio-websocket sends each message with its own ``send_all``; a busy connection (pipelined
acknowledgements, bursts of pushes) would pay a system call per frame. :func:`send_frames`
frames a whole batch with the connection's wsproto and writes it at once, under the
connection's own send lock, exactly as trio-websocket's ``_send`` does for one frame — so
it interleaves safely with the library's own pongs and close frames. It relies on three
attributes of ``WebSocketConnection`` (``_wsproto``, ``_stream``, ``_stream_lock``),
unchanged from trio-websocket 0.11 to 0.12; every server test runs through it.
"""

from __future__ import annotations

from typing import Any, Final, Sequence

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import BytesMessage, TextMessage


WRITE_BATCH: Final = 256  # frames written with one system call at most


def take_ready(receive: trio.MemoryReceiveChannel[Any], first: Any, limit: int = WRITE_BATCH) -> list[Any]:
    """*first* plus the frames already waiting in *receive* (up to *limit* in all), without blocking."""
    batch = [first]
    while len(batch) < limit:
        try:
            batch.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return batch


async def send_frames(ws: WebSocketConnection, frames: Sequence[str | bytes]) -> None:
    """Send *frames* (bytes -> binary, str -> text messages) in one write.

    Raises:
        ConnectionClosed: the connection is closed or broke while writing.
    """
    if ws.closed is not None:
        raise ConnectionClosed(ws.closed)
    proto = ws._wsproto
    data = b"".join(proto.send(BytesMessage(f) if isinstance(f, bytes) else TextMessage(f)) for f in frames)
    async with ws._stream_lock:
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            raise ConnectionClosed(ws.closed) from None
