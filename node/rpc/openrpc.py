"""The OpenRPC document served by ``rpc_discover``, generated from the method table.

Nothing here is written by hand per method: names, summaries, param schemas
(from the pydantic params models, in positional order) and result schemas
(from the result types) all come from :mod:`node.rpc.methods`, so the document
cannot drift from what the server validates. Every error class a client can
receive is listed under ``components.errors`` with its stable code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from core.errors import ERRORS_BY_REASON
from node.rpc.methods import Method

OPENRPC_VERSION = "1.3.2"
_REF = "#/components/schemas/{model}"

DESCRIPTION = (
    "JSON-RPC 2.0 over HTTP POST /rpc (batches and notifications supported) and over the websocket GET /ws "
    "(which adds subscribe/unsubscribe). Params may be given by name (object) or by position (array, in the "
    "order listed). All binary values - transactions, hashes, public keys - are lower-case hex strings without "
    "a 0x prefix. Errors carry data.reason, a stable slug; see components.errors."
)


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


def openrpc_document(methods: Iterable[Method], *, version: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    entries = [
        {
            "name": m.name,
            "summary": m.summary,
            "paramStructure": "either",
            "params": _params(m, defs),
            "result": {"name": f"{m.name}_result", "schema": _schema(m.result, defs)},
        }
        for m in sorted(methods, key=lambda m: m.name)
    ]
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
