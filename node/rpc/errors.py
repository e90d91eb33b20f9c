"""The JSON-RPC 2.0 protocol errors, which only the RPC edge can raise.

Application errors live in :mod:`core.errors`; these four are the spec's
envelope-level codes (invalid params is :class:`core.errors.InvalidInput`,
-32602). They subclass :class:`~core.errors.FbciError` so the server renders
every error with the same ``to_json`` and the client maps codes back with one
table.
"""

from __future__ import annotations

from core.errors import ALL_ERRORS, FbciError


class ParseError(FbciError):
    """The body is not valid JSON."""

    code = -32700
    reason = "parse_error"


class InvalidRequest(FbciError):
    """Valid JSON that is not a JSON-RPC 2.0 request object."""

    code = -32600
    reason = "invalid_request"


class MethodNotFound(FbciError):
    code = -32601
    reason = "method_not_found"


class InternalError(FbciError):
    """A bug on our side; the message is generic and the traceback stays in the server log."""

    code = -32603
    reason = "internal_error"


RPC_ERRORS: tuple[type[FbciError], ...] = (ParseError, InvalidRequest, MethodNotFound, InternalError)

#: Every error class a client can receive, keyed by its unique ``reason`` slug.
ERRORS_BY_REASON: dict[str, type[FbciError]] = {cls.reason: cls for cls in (*ALL_ERRORS, *RPC_ERRORS)}

#: Codes are shared by a class and its refinements (-32602 by ``InvalidInput`` and
#: ``DecodeError``); for a code alone the most general class, listed first, wins.
ERRORS_BY_CODE: dict[int, type[FbciError]] = {}
for _cls in (*ALL_ERRORS, *RPC_ERRORS):
    ERRORS_BY_CODE.setdefault(_cls.code, _cls)
