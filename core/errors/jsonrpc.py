"""The JSON-RPC 2.0 envelope errors: only the RPC edge raises them."""

from __future__ import annotations

from core.errors.base import FbciError


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
