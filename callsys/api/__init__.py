"""The integration API over HTTP (``/api/v1``): see :mod:`callsys.api.app`.

Modules: :mod:`.app` the app and its endpoints, :mod:`.models` the request and response
bodies, :mod:`.auth` API keys, rate limits and idempotency keys, :mod:`.errors` the error answers.
"""

from .app import BASE, build_api

__all__ = ["BASE", "build_api"]
