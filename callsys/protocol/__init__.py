"""The callsys WebSocket protocol, version 1 (documented message by message in docs/protocol.md).

* :mod:`~callsys.protocol.codes` — version, subprotocols, roles, close codes
* :mod:`~callsys.protocol.codec` — msgpack (binary frames) and JSON (text frames)
* :mod:`~callsys.protocol.messages` — per-role message schemas and validation
* :mod:`~callsys.protocol.errors` — one typed error per error code
"""

from .codec import CODECS as CODECS, JSON_CODEC as JSON_CODEC, MSGPACK_CODEC as MSGPACK_CODEC, Codec as Codec
from .codes import (JSON as JSON, MSGPACK as MSGPACK, PATH as PATH, ROLES as ROLES, VERSION as VERSION,
                    CloseCode as CloseCode)
from .errors import (Forbidden as Forbidden, HelloRequired as HelloRequired, HelloThrottled as HelloThrottled,
                     Internal as Internal,
                     InvalidField as InvalidField, Malformed as Malformed, MissingField as MissingField,
                     ProtocolError as ProtocolError, RateLimited as RateLimited, Unauthorized as Unauthorized,
                     Unavailable as Unavailable, UnexpectedHello as UnexpectedHello, UnknownField as UnknownField,
                     UnknownType as UnknownType)
from .messages import (COMMAND_TYPES as COMMAND_TYPES, MESSAGE_TYPES as MESSAGE_TYPES,
                       ROLE_MESSAGES as ROLE_MESSAGES, SERVER_FIELDS as SERVER_FIELDS, Hello as Hello, error as error, ok as ok, parse as parse,
                       parse_hello as parse_hello, request_id as request_id)
