"""The validator's JSON-RPC 2.0 edge: HTTP ``POST /rpc``, websocket ``GET /ws`` and ``GET /metrics``.

It knows nothing of the node's internals: it calls a :class:`~node.rpc.api.NodeApi`
that the node implements, and maps :mod:`core.errors` classes to JSON-RPC
errors in one place. Binary values (transactions, hashes, public keys) travel
as lower-case **hex** strings without a ``0x`` prefix, in params and results
alike.
"""

from node.rpc.api import AccountInfo, AlertQuery, NodeApi, NodeStatus, TxCommitResult
from node.rpc.server import RpcLimits, create_app, start_rpc_server
from node.rpc.subscriptions import TOPICS, EventHub

__all__ = [
    "TOPICS", "AccountInfo", "AlertQuery", "EventHub", "NodeApi", "NodeStatus", "RpcLimits",
    "TxCommitResult", "create_app", "start_rpc_server",
]
