"""The validator's JSON-RPC 2.0 edge: HTTP ``POST /rpc``, websocket ``GET /ws`` and ``GET /metrics``.

It knows nothing of the node's internals: it calls a :class:`~node.rpc.node_api.NodeApi`
that the node implements, serves each :class:`core.api.Query` it is given as a
method of that name, and maps :mod:`core.errors` classes to JSON-RPC errors in
one place. Binary values (transactions, hashes, public keys) travel as
lower-case **hex** strings without a ``0x`` prefix, in params and results alike.
"""
