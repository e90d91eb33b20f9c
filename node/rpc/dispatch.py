"""JSON-RPC 2.0 envelope handling, transport-free: bytes in, bytes (or nothing) out.

The HTTP and websocket handlers both call :meth:`Dispatcher.handle`. Rules it
keeps, from the JSON-RPC 2.0 specification:

1. A body that is not JSON is one -32700 error with id null; an empty batch is
   one -32600 error; a batch longer than ``max_batch`` is one -32005 error.
   JSON text is UTF-8 (RFC 8259), and a ``\\uD800``-style escape of a lone
   surrogate is not Unicode text either: both are -32700, so no string that
   cannot be encoded back (an id, a model name, a hospital) gets past here.
2. Each request object is checked (``jsonrpc`` exactly "2.0", string method,
   id a string, number or null, params an array or object, no other members);
   a bad one gets -32600 with its id when the id itself was readable.
3. A notification (no ``id``) is executed but never answered, even on error;
   a batch of only notifications yields no body at all.
4. Batch elements run in order, one after another, so a client's transactions
   with consecutive nonces are admitted in the order it sent them.
5. Errors raised as :mod:`core.errors` classes are sent with their code and
   message; anything else is logged with its traceback and answered -32603
   with a generic message.

Every call (each batch element, and an unparseable body) costs the client one
rate-limit token.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from core.api import NoParams, Params
from core.readauth import AUTH_PARAM, ReadAuth
from core.errors import (
    FbciError, InternalError, InvalidInput, InvalidRequest, LimitExceeded, MethodNotFound, ParseError,
)
from core.wire import to_wire
from node.rpc.admission import Admission
from node.rpc.methods import CallContext, EncodedResult, Method, json_bytes
from node.rpc.openrpc import openrpc_document

log = logging.getLogger(__name__)

_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_ABSENT = object()
INVALID_LABEL = "<invalid>"
UNKNOWN_LABEL = "<unknown>"

RecordCall = Callable[[str, int], None]
"""``record(method_label, code)``: code 0 for success; unknown methods are labelled ``<unknown>``."""


@dataclass(frozen=True)
class _Request:
    id: Any
    method: str
    params: Any
    notification: bool


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """Any string in ``value`` holding a surrogate (json.loads joins escaped pairs, so one left is lone).
    Iterative: the JSON decoder allows nesting deeper than a recursive walk would."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return False


def _parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ParseError("body is not valid JSON: it is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"body is not valid JSON: {type(exc).__name__}") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ParseError("body is not valid JSON: it escapes a lone UTF-16 surrogate, which is not Unicode text")
    return value


def _valid_id(rid: Any) -> bool:
    if rid is None or isinstance(rid, str):
        return True
    if isinstance(rid, bool):
        return False
    return isinstance(rid, int) or (isinstance(rid, float) and math.isfinite(rid))


def _parse_request(obj: Any) -> _Request:
    if not isinstance(obj, dict):
        raise InvalidRequest("a request must be a JSON object")
    rid = obj.get("id", _ABSENT)
    if rid is not _ABSENT and not _valid_id(rid):
        raise InvalidRequest("'id' must be a string, a number or null")
    if obj.get("jsonrpc") != "2.0":
        raise InvalidRequest("'jsonrpc' must be exactly \"2.0\"")
    method = obj.get("method")
    if not isinstance(method, str):
        raise InvalidRequest("'method' must be a string")
    extra = sorted(set(obj) - _MEMBERS)
    if extra:
        raise InvalidRequest(f"unexpected member {extra[0]!r} in the request object")
    params = obj.get("params", _ABSENT)
    if params is not _ABSENT and not isinstance(params, (list, dict)):
        raise InvalidRequest("'params' must be an array or an object")
    return _Request(None if rid is _ABSENT else rid, method, None if params is _ABSENT else params,
                    rid is _ABSENT)


def _readable_id(obj: Any) -> Any:
    rid = obj.get("id") if isinstance(obj, dict) else None
    return rid if _valid_id(rid) else None


def bind_params(method: Method, raw: list[Any] | dict[str, Any] | None) -> Params:
    """Validate by-name or by-position params; the error names the offending param."""
    fields = list(method.params.model_fields)
    if isinstance(raw, list):
        if len(raw) > len(fields):
            raise InvalidInput(f"invalid param 'params': {method.name} takes at most {len(fields)}, got {len(raw)}",
                               data={"param": "params"})
        raw = dict(zip(fields, raw))
    try:
        return method.params.model_validate(raw or {})
    except ValidationError as exc:
        problems = [
            {"param": ".".join(str(p) for p in err["loc"]) or "params", "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        first = problems[0]
        raise InvalidInput(f"invalid param '{first['param']}': {first['message']}",
                           data={"param": first["param"], "errors": problems}) from None


def split_auth(raw: list[Any] | dict[str, Any] | None) -> tuple[list[Any] | dict[str, Any] | None, ReadAuth | None]:
    """By-name params less their ``auth`` member (a signed read request, ``core.readauth``), and it parsed."""
    if not isinstance(raw, dict) or AUTH_PARAM not in raw:
        return raw, None
    rest = {k: v for k, v in raw.items() if k != AUTH_PARAM}
    try:
        return rest, ReadAuth.model_validate(raw[AUTH_PARAM])
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in (AUTH_PARAM, *first["loc"]))
        raise InvalidInput(f"invalid param '{where}': {first['msg']}", data={"param": where}) from None


def _error(rid: Any, exc: FbciError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.to_json(), "id": rid}


def _encode(response: dict[str, Any]) -> bytes:
    """One response object; a result already in JSON text is spliced in, not parsed and encoded again."""
    result = response.get("result")
    if not isinstance(result, EncodedResult):
        return json_bytes(response)
    return b'{"jsonrpc":"2.0","result":' + result.json + b',"id":' + json_bytes(response["id"]) + b"}"


class Dispatcher:
    def __init__(self, methods: dict[str, Method], admission: Admission, *, max_batch: int,
                 record: RecordCall, version: str) -> None:
        discover = Method("rpc_discover", "This OpenRPC document.", NoParams, dict[str, Any], self._discover)
        self.methods = {**methods, discover.name: discover}
        self.admission = admission
        self.max_batch = max_batch
        self.record = record
        self.openrpc = openrpc_document(self.methods.values(), version=version)

    async def _discover(self, params: NoParams, ctx: CallContext) -> dict[str, Any]:
        return self.openrpc

    def error_body(self, exc: FbciError) -> bytes:
        """A single error response with id null, for failures before any request was read."""
        self.record(INVALID_LABEL, exc.code)
        return _encode(_error(None, exc))

    async def handle(self, body: bytes, ctx: CallContext) -> bytes | None:
        """The response body, or ``None`` when every request was a notification."""
        try:
            self.admission.check_client(ctx.client)
            message = _parse_json(body)
        except FbciError as exc:
            return self.error_body(exc)
        if not isinstance(message, list):
            response = await self._call(message, ctx, charged=True)
            return None if response is None else _encode(response)
        if not message:
            return self.error_body(InvalidRequest("empty batch"))
        if len(message) > self.max_batch:
            return self.error_body(LimitExceeded(f"batch of {len(message)} requests; the limit is {self.max_batch}",
                                                 data={"limit": self.max_batch}))
        responses = [await self._call(obj, ctx, charged=i == 0) for i, obj in enumerate(message)]
        answered = [r for r in responses if r is not None]
        return b"[" + b",".join(_encode(r) for r in answered) + b"]" if answered else None

    async def _call(self, obj: Any, ctx: CallContext, *, charged: bool) -> dict[str, Any] | None:
        try:
            request = _parse_request(obj)
        except InvalidRequest as exc:
            self.record(INVALID_LABEL, exc.code)
            return _error(_readable_id(obj), exc)
        method = self.methods.get(request.method)
        label = request.method if method is not None else UNKNOWN_LABEL
        try:
            if not charged:
                self.admission.check_client(ctx.client)
            if method is None:
                raise MethodNotFound(f"no method {request.method[:64]!r}; rpc_discover lists them")
            params, auth = split_auth(request.params)
            call_ctx = ctx if auth is None else replace(ctx, auth=auth)
            value = await method.handler(bind_params(method, params), call_ctx)
            result = value if isinstance(value, EncodedResult) else to_wire(value)
        except FbciError as exc:
            self.record(label, exc.code)
            return None if request.notification else _error(request.id, exc)
        except Exception:
            log.exception("RPC method %s failed", label)
            self.record(label, InternalError.code)
            return None if request.notification else _error(request.id, InternalError("internal error"))
        self.record(label, 0)
        return None if request.notification else {"jsonrpc": "2.0", "result": result, "id": request.id}
