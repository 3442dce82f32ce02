"""The real-time server: WebSocket at ``/ws`` (:mod:`callsys.protocol`, docs/protocol.md), HTTP beside it.

* :mod:`~callsys.server.serve` — :func:`serve_callsys`, the server object, fail-stop/shutdown
* :mod:`~callsys.server.session` — one connection: hello, request loop, push writer
* :mod:`~callsys.server._websocket` — wsproto's opening handshake, then lean RFC 6455 framing
  (:mod:`callsys._wsframe`; why: docs/performance.md)
* :mod:`~callsys.server.http` — everything but ``/ws`` on the same port: hypercorn + Starlette
  (pages, static files, ``/api/hall``, ``/healthz``, ``/readyz``)
* :mod:`~callsys.server.handlers` — one ``_handle_<type>`` per message type
* :mod:`~callsys.server.queries` — read-only answers (position, services, window, stats)
* :mod:`~callsys.server.hub` / :mod:`~callsys.server.projections` — durable-event fan-out
* :mod:`~callsys.server.auth` — tokens, phone secrets, subscriptions
* :mod:`~callsys.server.settings` — limits and timeouts; :mod:`~callsys.server.logs` — structured logs
* :mod:`~callsys.server._gc` — the garbage-collector policy of a serving process
"""

from .auth import phone_secret as phone_secret
from .serve import CallsysServer as CallsysServer, ServerError as ServerError, serve_callsys as serve_callsys
from .settings import ServerSettings as ServerSettings
