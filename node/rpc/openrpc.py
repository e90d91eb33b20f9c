"""The OpenRPC document served by ``rpc_discover``, generated from the method table.

Nothing here is written by hand per method: names, summaries, param schemas
(from the pydantic params models, in positional order) and result schemas
(from the result types) all come from :mod:`node.rpc.methods`, so the document
cannot drift from what the server validates. Every error class a client can
receive is listed under ``components.errors`` with its stable code.

Each read says who may make it (``x-access``: ``private`` as this node's
genesis policy sets it, and the ``roles`` it admits). A private read takes its
params by name only, plus ``auth``, the signed read request
(:class:`core.readauth.ReadAuth`): it cannot travel by position, so the
document says ``paramStructure: by-name`` and lists ``auth`` as a required
param with its schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from core.errors import ERRORS_BY_REASON
from core.readauth import AUTH_PARAM, READ_KIND, ReadAuth
from node.rpc.methods import Method

OPENRPC_VERSION = "1.3.2"
_REF = "#/components/schemas/{model}"

DESCRIPTION = (
    "JSON-RPC 2.0 over HTTP POST /rpc (batches and notifications supported) and over the websocket GET /ws "
    "(which adds subscribe/unsubscribe). Params may be given by name (object) or by position (array, in the "
    "order listed). All binary values - transactions, hashes, public keys - are lower-case hex strings without "
    "a 0x prefix. Errors carry data.reason, a stable slug; see components.errors. A read marked x-access.private "
    "is answered only for a signed request: its by-name params carry 'auth' = {key, timestamp_ms (Unix ms, within "
    "30 s of the node's clock), nonce (16 random bytes, never reused), signature}, the signature Ed25519 over "
    f"msgpack [key, timestamp_ms, nonce, sha256(msgpack [method, params])] in the domain (chain id, '{READ_KIND}'), "
    "params being every param of the method's own model (defaults included, 'prove' and 'auth' excluded); see "
    "core/readauth.py. Every private read and every refusal is audited on the validator that served it."
)
AUTH_DESCRIPTION = ("the signed read request (core.readauth.ReadAuth): this read is private on this chain; "
                    "by name only")


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(tp).json_schema(mode="serialization", ref_template=_REF)
    defs.update(schema.pop("$defs", {}))
    return schema


def _params(method: Method, defs: dict[str, Any]) -> list[dict[str, Any]]:
    model_schema = method.params.model_json_schema(mode="validation", ref_template=_REF)
    defs.update(model_schema.pop("$defs", {}))
    properties = model_schema.get("properties", {})
    required = set(model_schema.get("required", ()))
    params = []
    for name in method.params.model_fields:
        prop = dict(properties[name])
        descriptor: dict[str, Any] = {"name": name, "required": name in required}
        if "description" in prop:
            descriptor["description"] = prop.pop("description")
        descriptor["schema"] = prop
        params.append(descriptor)
    return params


def _entry(m: Method, defs: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": m.name, "summary": m.summary, "paramStructure": "either",
                             "params": _params(m, defs),
                             "result": {"name": f"{m.name}_result", "schema": _schema(m.result, defs)}}
    if m.access is None:
        return entry
    entry["x-access"] = {"private": m.access.private, "roles": sorted(m.access.roles)}
    if m.access.private:
        entry["paramStructure"] = "by-name"
        entry["params"].append({"name": AUTH_PARAM, "required": True, "description": AUTH_DESCRIPTION,
                                "schema": _schema(ReadAuth, defs)})
    return entry


def openrpc_document(methods: Iterable[Method], *, version: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    entries = [_entry(m, defs) for m in sorted(methods, key=lambda m: m.name)]
    errors = {
        cls.__name__: {"code": cls.code, "message": cls.reason, "data": {"description": (cls.__doc__ or "").strip()}}
        for cls in ERRORS_BY_REASON.values()
    }
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": "fbci validator JSON-RPC", "version": version, "description": DESCRIPTION},
        "methods": entries,
        "components": {"schemas": defs, "errors": errors},
    }
