"""An echo server on callsys's own WebSocket layer, for the Autobahn|Testsuite fuzzing client.

The conformance suite's ``fuzzingclient`` offers no subprotocol and cannot send a
``hello``, so it cannot talk to ``callsys serve``. This server uses the very classes
``callsys serve`` uses (:mod:`callsys.server._websocket`: wsproto's opening handshake, then
:mod:`callsys._wsframe`) and the same connection life as :class:`callsys.server.session.Session`
— read every message of one socket read, answer them in one write, and on the end of input
close with ``CLOSE_TIMEOUT_S`` as the bound — but echoes every message back instead of
serving the protocol. It is not part of ``make test``; ``tests/test_websocket_conformance.py``
holds the frame-level tests that are.

Running the suite (it needs Python 2.7; see ``docs/performance.md`` for the results)::

    python -m benchmarks.autobahn_echo --port 9001 &
    virtualenv -p python2.7 /tmp/autobahn/env       # virtualenv<20.22 can still make 2.7 envs
    /tmp/autobahn/env/bin/pip install autobahntestsuite
    cd /tmp/autobahn && env/bin/wstest -m fuzzingclient -s fuzzingclient.json

with ``fuzzingclient.json``::

    {"outdir": "./reports", "servers": [{"agent": "callsys", "url": "ws://127.0.0.1:9001"}],
     "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"], "exclude-cases": [],
     "exclude-agent-cases": {}}

The verdicts are in ``reports/index.json`` (and ``index.html``).
"""

from __future__ import annotations

import argparse
from typing import Final

import trio

from callsys.server import _websocket
from callsys.server.http import read_opening
from callsys.server.settings import CLOSE_TIMEOUT_S

MAX_MESSAGE: Final = 16 * 2**20  # bytes (characters for text): Autobahn's cases 1-7 and 10 stay below


async def echo(stream: trio.SocketStream) -> None:
    """One connection: the handshake, then every message back until the client closes or fails."""
    opening = await read_opening(stream)
    if opening is None:
        return
    try:
        handshake, request = await _websocket.upgrade_request(stream, opening.data)
    except _websocket.HandshakeFailed:
        return
    subprotocol = request.subprotocols[0] if request.subprotocols else None
    ws = await _websocket.accept(stream, handshake, subprotocol, max_message=MAX_MESSAGE)
    try:
        while True:
            await ws.send(await ws.receive())
    except _websocket.ConnectionClosed:
        pass
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await ws.aclose(1000, "bye")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=9001, help="port to listen on (default: 9001)")
    args = p.parse_args()
    print(f"echoing on ws://{args.host}:{args.port}", flush=True)
    trio.run(lambda: trio.serve_tcp(echo, args.port, host=args.host))


if __name__ == "__main__":
    main()
