"""Protocol errors: what a client did wrong, as a stable ``code`` plus ``details``.

Each error becomes an ``error`` frame ``{type, id?, code, message, details?}``. Errors
raised while the connection is still unauthenticated also close it, with the close code
in ``close_code`` (see :class:`~callsys.protocol.codes.CloseCode`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CallsysError
from .codes import CloseCode


class ProtocolError(CallsysError):
    """A frame the server cannot accept. The fault is the client's; nothing was executed.

    Args:
        message: a human-readable explanation.
        request_id: the ``id`` of the offending message when it could be read.
        **details: machine-readable facts (the field name, the allowed values...).
    """

    code: ClassVar[str] = "protocol_error"
    close_code: ClassVar[int | None] = None

    def __init__(self, message: str, *, request_id: Any = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.details = details


class Malformed(ProtocolError):
    """The frame is not valid msgpack/JSON, is the wrong frame kind, or is not a map."""

    code = "malformed"


class UnknownType(ProtocolError):
    """The ``type`` is not a message type of this protocol version."""

    code = "unknown_type"


class UnknownField(ProtocolError):
    """The message has a field its type does not define."""

    code = "unknown_field"


class MissingField(ProtocolError):
    """A required field is absent."""

    code = "missing_field"


class InvalidField(ProtocolError):
    """A field has the wrong type or a value outside its domain."""

    code = "invalid_field"


class Forbidden(ProtocolError):
    """The message type exists but the connection's role may not send it."""

    code = "forbidden"


class RateLimited(ProtocolError):
    """The connection sent faster than its rate limit; this message was not executed."""

    code = "rate_limited"


class HelloRequired(ProtocolError):
    """The first message of a connection was not ``hello``. Closes the connection."""

    code = "hello_required"
    close_code = CloseCode.HANDSHAKE_FAILED


class HelloThrottled(RateLimited):
    """Too many failed hellos came from the client's address lately; this one was not checked.
    Closes the connection; ``details.retry_after_s`` says when the address may try again."""

    close_code = CloseCode.HELLO_THROTTLED


class UnexpectedHello(ProtocolError):
    """``hello`` was sent again on an authenticated connection."""

    code = "unexpected_hello"


class Unauthorized(ProtocolError):
    """Unknown token, a token of another role, or a wrong phone secret. Closes the connection."""

    code = "unauthorized"
    close_code = CloseCode.UNAUTHORIZED


class Unavailable(ProtocolError):
    """The server is shutting down and executes no more commands."""

    code = "unavailable"


class Internal(ProtocolError):
    """The server failed on this message (a bug, logged); the hall's state is unchanged."""

    code = "internal"
