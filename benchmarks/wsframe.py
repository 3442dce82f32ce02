"""WebSocket framing alone (``callsys._wsframe``): a large frame over many reads, small frames per read.

* ``large_frame_s``: one masked 16 MiB binary frame (``--mib``) fed to a server-side
  ``FrameReader`` in reads of ``--read`` bytes (default 64 KiB, the server's
  ``RECEIVE_BYTES``; smaller reads are what a slow or distant client gives). Linear
  buffering keeps this proportional to the size, whatever the read size; re-joining the
  buffer on every read made it quadratic. ``wsproto_large_frame_s`` is the same bytes
  through wsproto's frame parser (which hands a frame over in pieces; they are joined
  once at the end), for reference.
* ``small_frame_us``: the hot path of ``benchmarks.ingest`` — reads of 4 masked msgpack
  ``take_number`` frames — in microseconds per frame.

Each figure is the best of ``--repeat`` runs (the machine is shared).

    python -m benchmarks.wsframe [--json] [--mib 16] [--read 65536] [--repeat 3]
"""

from __future__ import annotations

import os
import time
from typing import Final

import msgpack
from wsproto.connection import Connection, ConnectionType

from callsys._wsframe import OP_BINARY, FrameReader, frame

from ._report import parser, report, row

SMALL_READS: Final = 20_000  # reads of 4 small frames per small-frame run


def large_frame(size: int, read: int) -> float:
    """Seconds to receive one masked *size*-byte frame in reads of *read* bytes."""
    wire = frame(OP_BINARY, os.urandom(size), masked=True)
    reads = [wire[i:i + read] for i in range(0, len(wire), read)]
    reader = FrameReader(max_message=size)
    start = time.perf_counter()
    out = [item for data in reads for item in reader.feed(data)]
    elapsed = time.perf_counter() - start
    assert len(out) == 1 and len(out[0]) == size
    return elapsed


def wsproto_large_frame(size: int, read: int) -> float:
    """The same through wsproto's parser (the reference an independent implementation gives)."""
    wire = frame(OP_BINARY, os.urandom(size), masked=True)
    reads = [wire[i:i + read] for i in range(0, len(wire), read)]
    conn = Connection(ConnectionType.SERVER)
    start = time.perf_counter()
    parts = []  # wsproto hands a frame over in pieces; the message is joined once, as ours is
    for data in reads:
        conn.receive_data(data)
        parts.extend(event.data for event in conn.events())
    message = b"".join(parts)
    elapsed = time.perf_counter() - start
    assert len(message) == size
    return elapsed


def small_frames() -> float:
    """Microseconds per frame for reads of 4 masked msgpack take_number frames."""
    message = msgpack.packb({"type": "take_number", "id": 12345, "service": "SOC"})
    data = b"".join(frame(OP_BINARY, message, masked=True) for _ in range(4))
    reader = FrameReader(max_message=65536)
    feed = reader.feed
    start = time.perf_counter()
    for _ in range(SMALL_READS):
        feed(data)
    return (time.perf_counter() - start) / (SMALL_READS * 4) * 1e6


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=16, help="size of the large frame in MiB (default: 16)")
    p.add_argument("--read", type=int, default=65536, help="bytes per read of the large frame (default: 65536)")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is reported (default: 3)")
    args = p.parse_args()
    size = args.mib * 2**20
    ours = min(large_frame(size, args.read) for _ in range(args.repeat))
    theirs = min(wsproto_large_frame(size, args.read) for _ in range(args.repeat))
    small = min(small_frames() for _ in range(args.repeat))
    report(
        "WebSocket framing (callsys._wsframe)",
        [row("large_frame_s", ours, "s"), row("wsproto_large_frame_s", theirs, "s"),
         row("small_frame_us", small, "us")],
        args.json,
        notes=[f"large: one masked {args.mib} MiB binary frame in {-(-size // args.read):,} reads of {args.read:,} "
               f"bytes; small: {SMALL_READS:,} reads of 4 masked msgpack take_number frames; best of {args.repeat}"],
    )


if __name__ == "__main__":
    main()
