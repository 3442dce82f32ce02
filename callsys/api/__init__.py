"""The integration API over HTTP (``/api/v1``): see :mod:`callsys.api.app`.

Modules: :mod:`.app` the app and its endpoints, :mod:`.models` the request and response
bodies, :mod:`.auth` API keys, rate limits and idempotency keys, :mod:`.errors` the error answers.
"""

from .app import BASE, build_api
from .errors import outer_not_found

__all__ = ["BASE", "build_api", "outer_not_found"]
